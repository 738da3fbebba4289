"""What the live benchmark and the soak count, kept apart from the network so that unit
tests can feed it synthetic messages (tests/unit/test_bench_accounting.py).

Every reading the load generator sends carries its identity and send time in its ``id``
(``{device}.{seq}.{sentUs}``, see :func:`reading_id`), so a browser can tell from the id
alone which device sent it, which of that device's readings it is and when it was sent;
latency is then browser receive time minus device send time, both from ``time.time()``
on one machine.

Per browser, a :class:`ConnectionLedger` keeps a byte per sent reading (how often it
arrived), the messages received per wall-clock second and the out-of-order count; latency
goes into :class:`LatencyHistogram`, counts per whole millisecond, which stay small at
millions of readings and merge across processes.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BATCH_TYPE = "sensor:readings:batch"


# --- reading ids ------------------------------------------------------------------------


def reading_id(device: int, seq: int, sent_at: float) -> str:
    """``{device}.{seq}.{sentUs}``: fits the contract's id charset and 128 chars."""
    return f"{device}.{seq}.{round(sent_at * 1_000_000)}"


# Cached: each of a run's browsers parses the same ids and times (the load driver shares
# the stack's two cores, so what it spends is taken from the stack).
@functools.lru_cache(maxsize=1 << 16)
def parse_reading_id(value: str) -> tuple[int, int, float] | None:
    """(device, seq, sent_at) of an id made by :func:`reading_id`; None for any other id."""
    parts = value.split(".")
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), int(parts[1]), int(parts[2]) / 1_000_000
    except ValueError:
        return None


@functools.lru_cache(maxsize=1 << 16)
def parse_time(value: str) -> float:
    """Epoch seconds of a contract time (ISO-8601 UTC with ``Z``)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- latency ----------------------------------------------------------------------------


@dataclass
class LatencyHistogram:
    """Latencies counted per whole millisecond (negative clock skew counts as 0)."""

    counts: Counter[int] = field(default_factory=Counter)

    def add(self, seconds: float, times: int = 1) -> None:
        self.counts[max(0, int(seconds * 1000))] += times

    def merge(self, other: LatencyHistogram) -> None:
        self.counts.update(other.counts)

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile in seconds (q in 0..100); None when empty."""
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(q / 100 * total))
        seen = 0
        for millis in sorted(self.counts):
            seen += self.counts[millis]
            if seen >= rank:
                return millis / 1000
        raise AssertionError("unreachable: rank <= total")  # pragma: no cover

    @property
    def max(self) -> float | None:
        return max(self.counts) / 1000 if self.counts else None


def merge_histograms(histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
    merged = LatencyHistogram()
    for histogram in histograms:
        merged.merge(histogram)
    return merged


# --- per connection ---------------------------------------------------------------------


class ClientDedupe:
    """The browser client's de-duplication (web/sensor-stream-client.js): the ids of the
    newest ``capacity`` readings, oldest forgotten first."""

    def __init__(self, capacity: int = 5000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def is_new(self, value: str) -> bool:
        if value in self._seen:
            return False
        self._seen[value] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True


@dataclass
class ConnectionSummary:
    """What one browser got, against what its org was sent."""

    name: str
    expected: int
    received: int  # deliveries of expected readings, repeats included
    missing: int
    duplicated: int  # deliveries beyond the first of a reading
    duplicated_after_dedupe: int  # repeats that the client's de-duplication let through
    out_of_order: int
    foreign: int  # readings of ids this run never sent to the connection's org
    replayed: int  # readings that came in messages marked "replay"
    messages: int
    max_messages_per_second: int
    reconnects: int = 0
    # The first few missing readings, as (device, seq).
    missing_examples: list[tuple[int, int]] = field(default_factory=list)


class ConnectionLedger:
    """Everything one browser received, counted as it arrives (:meth:`record_message`)."""

    def __init__(self, name: str, devices: Iterable[int], *, dedupe_capacity: int = 5000) -> None:
        self.name = name
        # device -> one byte per seq: how often that reading arrived (saturates at 255).
        self._arrivals: dict[int, bytearray] = {device: bytearray() for device in devices}
        self.latency = LatencyHistogram()
        # The latency in three parts (the server's clocks are this machine's): device ->
        # the reading's receivedAt (IoT Core's timestamp), -> the tick that sent it (the
        # batch's serverTime), -> the browser.
        self.to_received = LatencyHistogram()
        self.waiting_for_tick = LatencyHistogram()
        self.tick_to_browser = LatencyHistogram()
        # Latency by the second (epoch, whole) in which the reading was sent.
        self.latency_by_sent_second: dict[int, LatencyHistogram] = {}
        self.messages_by_second: Counter[int] = Counter()
        self.out_of_order = 0
        self.foreign = 0
        self.replayed = 0
        self.reconnects = 0
        self.duplicated_after_dedupe = 0
        self._dedupe = ClientDedupe(dedupe_capacity)
        self.newest_seen: float | None = None
        self.last_message_at: float | None = None

    def record_message(self, message: Mapping[str, Any], received_at: float) -> int:
        """Count one server message received at ``received_at``; returns the readings in it."""
        if message.get("type") != BATCH_TYPE:
            return 0
        self.messages_by_second[int(received_at)] += 1
        self.last_message_at = received_at
        replay = message.get("replay") is True
        count = 0
        for batch in message.get("batches", []):
            previous_recorded: str | None = None
            for reading in batch.get("readings", []):
                count += 1
                recorded = reading.get("recordedAt", "")
                # Same format and zone everywhere: string order is time order.
                if previous_recorded is not None and recorded < previous_recorded:
                    self.out_of_order += 1
                previous_recorded = recorded
                self._record_reading(reading, received_at, replay, message.get("serverTime"))
        return count

    def _record_reading(
        self, reading: Mapping[str, Any], received_at: float, replay: bool, server_time: Any = None
    ) -> None:
        value = str(reading.get("id", ""))
        if replay:
            self.replayed += 1
        passed_dedupe = self._dedupe.is_new(value)
        if passed_dedupe:
            self._note_newest(reading)
        parsed = parse_reading_id(value)
        arrivals = self._arrivals.get(parsed[0]) if parsed else None
        if parsed is None or arrivals is None:
            self.foreign += 1
            return
        _, seq, sent_at = parsed
        if seq >= len(arrivals):
            arrivals.extend(bytes(seq + 1 - len(arrivals)))
        if arrivals[seq] < 255:
            arrivals[seq] += 1
        if arrivals[seq] == 1:
            latency = received_at - sent_at
            self.latency.add(latency)
            with contextlib.suppress(KeyError, ValueError):
                at_server = parse_time(str(reading["receivedAt"]))
                tick = parse_time(str(server_time))
                self.to_received.add(at_server - sent_at)
                self.waiting_for_tick.add(tick - at_server)
                self.tick_to_browser.add(received_at - tick)
            by_second = self.latency_by_sent_second.get(int(sent_at))
            if by_second is None:
                by_second = self.latency_by_sent_second[int(sent_at)] = LatencyHistogram()
            by_second.add(latency)
        elif passed_dedupe:
            # A repeat the application sees again: the dedupe window had forgotten the id.
            self.duplicated_after_dedupe += 1

    def _note_newest(self, reading: Mapping[str, Any]) -> None:
        """Where a resume starts, as the browser client computes it: the earlier of
        ``recordedAt`` and ``receivedAt`` of the newest reading seen."""
        times = []
        for key in ("recordedAt", "receivedAt"):
            try:
                times.append(parse_time(str(reading[key])))
            except (KeyError, ValueError):
                continue
        if times:
            seen = min(times)
            if self.newest_seen is None or seen > self.newest_seen:
                self.newest_seen = seen

    def complete(self, sent: Mapping[int, int]) -> bool:
        """True when every reading in ``sent`` (device -> readings sent) has arrived."""
        for device, arrivals in self._arrivals.items():
            count = sent.get(device, 0)
            if count and (len(arrivals) < count or 0 in arrivals[:count]):
                return False
        return True

    def missing_count(self, sent: Mapping[int, int]) -> int:
        missing = 0
        for device, arrivals in self._arrivals.items():
            count = sent.get(device, 0)
            window = arrivals[:count]
            missing += count - len(window) + window.count(0)
        return missing

    def missing_readings(self, sent: Mapping[int, int], limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` (device, seq) of readings sent but never received."""
        found: list[tuple[int, int]] = []
        for device in sorted(self._arrivals):
            arrivals = self._arrivals[device]
            for seq in range(sent.get(device, 0)):
                if seq >= len(arrivals) or arrivals[seq] == 0:
                    found.append((device, seq))
                    if len(found) >= limit:
                        return found
        return found

    def summary(self, sent: Mapping[int, int], examples: int = 5) -> ConnectionSummary:
        expected = received = duplicated = 0
        for device, arrivals in self._arrivals.items():
            count = sent.get(device, 0)
            expected += count
            for times in arrivals[:count]:
                received += times
                duplicated += max(0, times - 1)
        return ConnectionSummary(
            name=self.name,
            expected=expected,
            received=received,
            missing=self.missing_count(sent),
            duplicated=duplicated,
            duplicated_after_dedupe=self.duplicated_after_dedupe,
            out_of_order=self.out_of_order,
            foreign=self.foreign,
            replayed=self.replayed,
            messages=sum(self.messages_by_second.values()),
            max_messages_per_second=max(self.messages_by_second.values(), default=0),
            reconnects=self.reconnects,
            missing_examples=self.missing_readings(sent, examples),
        )


# --- run-wide figures -------------------------------------------------------------------


def latency_by_period_second(
    by_sent_second: Mapping[int, LatencyHistogram], origin: float, period: float
) -> dict[int, LatencyHistogram]:
    """Regroup latency by second of a repeating period (e.g. the flush's minute) that
    started at ``origin``: bucket k holds readings sent k..k+1 s into a period."""
    buckets: dict[int, LatencyHistogram] = {}
    slots = max(1, math.ceil(period))
    for second, histogram in by_sent_second.items():
        slot = int((second - origin) % period) % slots
        buckets.setdefault(slot, LatencyHistogram()).merge(histogram)
    return buckets


def latency_by_window(
    by_sent_second: Mapping[int, LatencyHistogram], start: float, window: float
) -> list[tuple[float, LatencyHistogram]]:
    """Latency by consecutive windows of sending (offset of the window's start, histogram)."""
    grouped: dict[int, LatencyHistogram] = {}
    for second, histogram in by_sent_second.items():
        index = max(0, int((second - start) // window))
        grouped.setdefault(index, LatencyHistogram()).merge(histogram)
    return [(index * window, grouped[index]) for index in sorted(grouped)]


def merge_by_second(maps: Iterable[Mapping[int, LatencyHistogram]]) -> dict[int, LatencyHistogram]:
    merged: dict[int, LatencyHistogram] = {}
    for mapping in maps:
        for second, histogram in mapping.items():
            merged.setdefault(second, LatencyHistogram()).merge(histogram)
    return merged
