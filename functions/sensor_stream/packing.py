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
# Arrival slots a second, for a live tick's order (arrival_order): its first messages post
# ~1/N of a tick's posting time apart from its last, so a reading waits at most that much
# longer than one that arrived with it; each unit heads a batch in up to N slots a message.
ARRIVAL_SLOTS_PER_SECOND = 4
ARRIVAL_ORDER_MAX_SECONDS = 2
# format_time's "YYYY-MM-DDTHH:MM:SS" before ".mmmZ"
_SECOND_CHARS = 19


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


def pack_batches(
    readings: Iterable[PackedReading], *, server_time: datetime, replay: bool = False
) -> list[bytes]:
    """Readings grouped per unit (units in id order within a message), each unit's
    readings ordered by ``recordedAt``, each reading once, in as few messages as fit under
    the frame limit. A live tick that takes several messages sends the readings that
    arrived first in the first ones (``arrival_order``); a replay goes unit by unit."""
    per_unit: dict[str, dict[tuple[str, str], PackedReading]] = defaultdict(dict)
    for reading in readings:
        per_unit[reading.unit_id].setdefault((reading.recorded_at, reading.reading_id), reading)
    units = [[unit[key] for key in sorted(unit)] for _, unit in sorted(per_unit.items())]
    head = (
        _PREFIX + json.dumps(format_time(server_time)) + (',"replay":true' if replay else "") + ',"batches":['
    )
    sequence = list(itertools.chain.from_iterable(units)) if replay else arrival_order(units)
    return _fill_messages(sequence, head)


def arrival_order(units: list[list[PackedReading]]) -> list[PackedReading]:
    """A tick's readings oldest-arrived first, a slot of ARRIVAL_SLOTS_PER_SECOND at a time
    (units in id order within a slot): the readings that waited longest for their second
    to end go in a tick's first messages, the ones that arrived last in its last, so that
    no unit's readings always wait for the others' messages. Each unit keeps its
    ``recordedAt`` order: a reading recorded before one of a later slot moves to that slot.
    Readings spanning more than ARRIVAL_ORDER_MAX_SECONDS of arrival (a lane catching up)
    go unit by unit: the fewest unit headers, so the fewest bytes."""
    flat = list(itertools.chain.from_iterable(units))
    if len({reading.received_at[:_SECOND_CHARS] for reading in flat}) > ARRIVAL_ORDER_MAX_SECONDS:
        return flat
    slots: list[tuple[str, int]] = []
    for unit in units:
        latest = ("", 0)
        for reading in unit:
            latest = max(latest, _arrival_slot(reading.received_at))
            slots.append(latest)
    order = sorted(range(len(flat)), key=slots.__getitem__)  # stable: unit, then recordedAt
    return [flat[index] for index in order]


def _arrival_slot(received_at: str) -> tuple[str, int]:
    """format_time text -> (its second, which slot of it), from the tenths digit."""
    tenths = received_at[_SECOND_CHARS + 1 : _SECOND_CHARS + 2]
    slot = int(tenths) * ARRIVAL_SLOTS_PER_SECOND // 10 if tenths.isdigit() else 0
    return received_at[:_SECOND_CHARS], slot


def _fill_messages(sequence: list[PackedReading], head: str) -> list[bytes]:
    """The readings in this order, each message filled before the next is started; a unit
    appears once in a message (its readings in sequence order), units in id order."""
    head_bytes = len(head.encode()) + 2  # "]}"
    messages: list[bytes] = []
    current: dict[str, list[str]] = {}
    size = head_bytes

    def close_message() -> None:
        nonlocal current, size
        if current:
            batches = [
                # Unit ids are ASCII identifiers: their JSON is themselves in quotes.
                _unit_batch('{"unitId":' + json.dumps(unit_id) + ',"readings":[', texts)
                for unit_id, texts in sorted(current.items())
            ]
            messages.append((head + ",".join(batches) + "]}").encode())
        current, size = {}, head_bytes

    for reading in sequence:
        text_bytes = len(reading.text.encode()) + 1
        texts = current.get(reading.unit_id)
        added = text_bytes if texts is not None else text_bytes + _unit_overhead(reading.unit_id)
        if size + added > MAX_MESSAGE_BYTES and current:
            close_message()
            texts, added = None, text_bytes + _unit_overhead(reading.unit_id)
        if texts is None:
            texts = current[reading.unit_id] = []
        texts.append(reading.text)
        size += added
    close_message()
    return messages


def _unit_overhead(unit_id: str) -> int:
    """A unit's '{"unitId":...,"readings":[' and its tail, with the comma before it."""
    return len('{"unitId":,"readings":[') + len(json.dumps(unit_id).encode()) + _UNIT_TAIL_BYTES


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
        self._packed: dict[tuple[int, ...], tuple[list[list[PackedReading]], list[bytes]]] = {}

    def pack(self, parts: list[list[PackedReading]], server_time: datetime) -> list[bytes]:
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
