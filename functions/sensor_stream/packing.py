"""``sensor:readings:batch`` messages assembled from readings' stored JSON texts, so that a
tick serialises nothing per connection: each reading's text is written by ingest once and
copied into every message that carries it."""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .gateway import MAX_MESSAGE_BYTES
from .models import Reading, format_time

_PREFIX = '{"type":"sensor:readings:batch","serverTime":'
# '],"count":N}' and the comma before the next unit, with room for a 5-digit count.
_UNIT_TAIL_BYTES = 24


def _unit_batch(unit_head: str, texts: list[str]) -> str:
    return unit_head + ",".join(texts) + '],"count":' + str(len(texts)) + "}"


@dataclass(frozen=True, slots=True)
class PackedReading:
    """A reading as the flush moves it: routing fields and its wire text."""

    unit_id: str
    site_id: str | None
    recorded_at: str  # format_time texts: string order is time order
    received_at: str
    reading_id: str
    text: str

    @classmethod
    def from_text(cls, text: str) -> PackedReading:
        """From a stored reading's JSON (raises ValueError/KeyError/TypeError if it is not one)."""
        document = json.loads(text)
        site_id = document.get("siteId")
        fields = (document["unitId"], document["recordedAt"], document["receivedAt"], document["id"])
        if not all(isinstance(field, str) for field in fields) or not isinstance(site_id, str | None):
            raise TypeError("not a stored reading")
        return cls(fields[0], site_id, fields[1], fields[2], fields[3], text)

    @classmethod
    def from_reading(cls, reading: Reading) -> PackedReading:
        return cls(
            reading.unit_id,
            reading.site_id,
            format_time(reading.recorded_at),
            format_time(reading.received_at),
            reading.id,
            reading.to_json(),
        )


class PackedMessages(list[bytes]):
    """``pack_batches``' messages, with the readings they carry in message order (each
    once) and, for each message, how many of those it and the ones before it hold: what a
    post that sent some of them still owes is known without reading them back."""

    __slots__ = ("ends", "readings")

    def __init__(self, messages: list[bytes], readings: list[PackedReading], ends: list[int]) -> None:
        super().__init__(messages)
        self.readings = readings
        self.ends = ends

    def readings_after(self, sent: int) -> list[PackedReading]:
        """The readings of the messages after the first ``sent``."""
        return self.readings[self.ends[sent - 1] :] if sent else self.readings


def pack_batches(
    readings: Iterable[PackedReading], *, server_time: datetime, replay: bool = False
) -> PackedMessages:
    """Readings grouped per unit (units in id order), each unit's readings ordered by
    ``recordedAt``, each reading once, in as few messages as fit under the frame limit."""
    per_unit: dict[str, dict[tuple[str, str], PackedReading]] = defaultdict(dict)
    for reading in readings:
        per_unit[reading.unit_id].setdefault((reading.recorded_at, reading.reading_id), reading)
    head = (
        _PREFIX + json.dumps(format_time(server_time)) + (',"replay":true' if replay else "") + ',"batches":['
    )
    head_bytes = len(head.encode())
    messages: list[bytes] = []
    in_order: list[PackedReading] = []
    ends: list[int] = []
    batches: list[str] = []
    size = head_bytes + 2  # "]}"

    def close_message() -> None:
        nonlocal batches, size
        if batches:
            messages.append((head + ",".join(batches) + "]}").encode())
            ends.append(len(in_order))  # the reading that did not fit is not in yet
        batches, size = [], head_bytes + 2

    for unit_id in sorted(per_unit):
        unit = per_unit[unit_id]
        # Unit ids are ASCII identifiers: their JSON is themselves in quotes.
        unit_head = '{"unitId":' + json.dumps(unit_id) + ',"readings":['
        current: list[str] = []
        current_bytes = 0
        for key in sorted(unit):
            text = unit[key].text
            text_bytes = len(text.encode()) + 1
            unit_overhead = len(unit_head) + _UNIT_TAIL_BYTES + (1 if batches else 0)
            if size + unit_overhead + current_bytes + text_bytes > MAX_MESSAGE_BYTES and (current or batches):
                if current:
                    batches.append(_unit_batch(unit_head, current))
                    size += len(unit_head) + current_bytes + _UNIT_TAIL_BYTES
                    current, current_bytes = [], 0
                close_message()
            current.append(text)
            current_bytes += text_bytes
            in_order.append(unit[key])
        if current:
            batches.append(_unit_batch(unit_head, current))
            size += len(unit_head) + current_bytes + _UNIT_TAIL_BYTES
    close_message()
    return PackedMessages(messages, in_order, ends)


class TickPacking:
    """``pack_batches`` once per distinct parcel of a tick: the connections that want the
    same readings (every whole-org subscriber of an org, and lanes behind alike) post the
    same bytes, so they are built once, not once per connection. A parcel is the lists
    delivered to its lane, each a tick's list that lanes share and nobody changes, so it
    is known by their identities (not by its readings': lanes far behind hold tens of
    thousands). Thread-safe; what it holds is dropped when the tick's server time changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server_time: datetime | None = None
        # The value keeps the lists alive, so no identity is reused while it is a key.
        self._packed: dict[tuple[int, ...], tuple[list[list[PackedReading]], PackedMessages]] = {}

    def pack(self, parts: list[list[PackedReading]], server_time: datetime) -> PackedMessages:
        key = tuple(map(id, parts))
        with self._lock:
            if server_time != self._server_time:
                self._packed.clear()
                self._server_time = server_time
            hit = self._packed.get(key)
        if hit is not None:
            return hit[1]
        messages = pack_batches(itertools.chain.from_iterable(parts), server_time=server_time)
        with self._lock:
            if server_time == self._server_time:
                self._packed[key] = (list(parts), messages)
        return messages
