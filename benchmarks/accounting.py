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

import functools
import math
import operator
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

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
        self.counts[_millis(seconds)] += times

    def merge(self, other: LatencyHistogram) -> None:
        self.counts.update(other.counts)

    def merge_counts(self, counts: Mapping[int, int]) -> None:
        self.counts.update(counts)

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


# --- one message, parsed once for every browser that receives it -------------------------


@dataclass(frozen=True)
class ReadingFacts:
    """One reading of a message as the ledger needs it, parsed once."""

    value: str  # its id
    parsed: tuple[int, int, float] | None  # (device, seq, sent_at); None: not this run's
    at_server: float | None  # receivedAt
    seen: float | None  # where a resume would start: min(recordedAt, receivedAt)


@dataclass(frozen=True)
class DeviceSeqs:
    """One device's readings in a message: their sequence numbers."""

    device: int
    seqs: tuple[int, ...]
    pick: Callable[[bytearray], tuple[int, ...]]  # a ledger's arrivals at those numbers

    @classmethod
    def of(cls, device: int, seqs: list[int]) -> DeviceSeqs:
        # itemgetter of one index returns the item itself, of two or more a tuple.
        return cls(device, tuple(seqs), operator.itemgetter(*seqs, seqs[0]))


@dataclass(frozen=True)
class FreshRun:
    """What a message adds to a ledger that has seen none of its readings, precomputed for
    a message of this run's readings, none repeated, all with the server's times. Most
    messages of a run qualify; a ledger that has none of them yet takes them whole."""

    seqs: tuple[DeviceSeqs, ...]
    ids: tuple[str, ...]  # in the message's order (the client forgets the oldest first)
    sent_by_second: tuple[tuple[int, tuple[float, ...]], ...]  # sent_at grouped by whole second
    to_received: Counter[int]  # device -> receivedAt, per millisecond
    waiting_for_tick: Counter[int]  # receivedAt -> the tick's serverTime, per millisecond
    newest_seen: float | None


@dataclass(frozen=True)
class MessageDigest:
    """A server message as every ledger reads it (:func:`digest_message`)."""

    type: str | None
    error_code: str | None
    replay: bool
    server_time: float | None
    readings: tuple[ReadingFacts, ...]
    out_of_order: int  # readings earlier (recordedAt) than the one before them in their batch
    fresh: FreshRun | None


def _time_or_none(value: Any) -> float | None:
    try:
        return parse_time(str(value)) if value is not None else None
    except ValueError:
        return None


def _millis(seconds: float) -> int:
    return max(0, int(seconds * 1000))


def digest_of(message: Mapping[str, Any]) -> MessageDigest:
    """The facts of a parsed server message that each browser's ledger counts."""
    error = message.get("error")
    error_code = error.get("code") if isinstance(error, Mapping) else None
    server_time = _time_or_none(message.get("serverTime")) if "serverTime" in message else None
    facts: list[ReadingFacts] = []
    out_of_order = 0
    if message.get("type") == BATCH_TYPE:
        for batch in message.get("batches", []):
            previous_recorded: str | None = None
            for reading in batch.get("readings", []):
                recorded = reading.get("recordedAt", "")
                # Same format and zone everywhere: string order is time order.
                if previous_recorded is not None and recorded < previous_recorded:
                    out_of_order += 1
                previous_recorded = recorded
                value = str(reading.get("id", ""))
                at_server = _time_or_none(reading.get("receivedAt"))
                times = [t for t in (_time_or_none(reading.get("recordedAt")), at_server) if t is not None]
                seen = min(times) if times else None
                facts.append(ReadingFacts(value, parse_reading_id(value), at_server, seen))
    readings = tuple(facts)
    return MessageDigest(
        type=message.get("type"),
        error_code=error_code,
        replay=message.get("replay") is True,
        server_time=server_time,
        readings=readings,
        out_of_order=out_of_order,
        fresh=_fresh_run(readings, server_time),
    )


def _fresh_run(readings: tuple[ReadingFacts, ...], server_time: float | None) -> FreshRun | None:
    if not readings or server_time is None:
        return None
    by_device: dict[int, list[int]] = {}
    to_received: Counter[int] = Counter()
    waiting: Counter[int] = Counter()
    by_second: dict[int, list[float]] = {}
    for reading in readings:
        if reading.parsed is None or reading.at_server is None:
            return None
        device, seq, sent_at = reading.parsed
        by_device.setdefault(device, []).append(seq)
        to_received[_millis(reading.at_server - sent_at)] += 1
        waiting[_millis(server_time - reading.at_server)] += 1
        by_second.setdefault(int(sent_at), []).append(sent_at)
    ids = tuple(reading.value for reading in readings)
    if len(set(ids)) != len(ids):
        return None
    seen = [reading.seen for reading in readings if reading.seen is not None]
    return FreshRun(
        seqs=tuple(DeviceSeqs.of(device, numbers) for device, numbers in by_device.items()),
        ids=ids,
        sent_by_second=tuple((second, tuple(sent)) for second, sent in by_second.items()),
        to_received=to_received,
        waiting_for_tick=waiting,
        newest_seen=max(seen) if seen else None,
    )


# A few ticks' worth of distinct messages (each ~30 KB of text held as the key).
@functools.lru_cache(maxsize=256)
def digest_message(raw: str | bytes) -> MessageDigest:
    """:func:`digest_of` the message's JSON, once per distinct message: a tick posts the
    same bytes to every connection that wants the same readings, so a run's browsers
    mostly receive the same messages (the load driver shares the stack's two cores)."""
    return digest_of(orjson.loads(raw))


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

    def none_seen(self, values: Iterable[str]) -> bool:
        """Whether every one of ``values`` would be new (nothing is remembered)."""
        return self._seen.keys().isdisjoint(values)

    def remember(self, values: Iterable[str]) -> None:
        """:meth:`is_new` for each of ``values``, all known to be new and distinct."""
        seen = self._seen
        seen.update(dict.fromkeys(values))
        while len(seen) > self.capacity:
            seen.popitem(last=False)


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
        # Batches held by :meth:`hold`, counted at :meth:`settle`; readings delivered so far
        # (held or counted, repeats included), to tell cheaply that some are still missing.
        self._held: list[tuple[MessageDigest, float]] = []
        self._deliveries = 0

    def hold(self, digest: MessageDigest, received_at: float) -> None:
        """:meth:`record`, later: the message is kept and counted at :meth:`settle` (which
        every figure of the ledger calls first). While the devices send, counting 200
        browsers' deliveries took a fifth of a core from the stack it measures, on the
        same two cores; the receive time is the one given here, so the figures are the same."""
        if digest.type != BATCH_TYPE:
            return
        self._held.append((digest, received_at))
        self._deliveries += len(digest.readings)

    def settle(self) -> None:
        """Count every held message, in the order they arrived."""
        held, self._held = self._held, []
        for digest, received_at in held:
            self._count(digest, received_at)

    def record_message(self, message: Mapping[str, Any], received_at: float) -> int:
        """Count one server message received at ``received_at``; returns the readings in it."""
        return self.record(digest_of(message), received_at)

    def record(self, digest: MessageDigest, received_at: float) -> int:
        """:meth:`record_message` for a message already digested (:func:`digest_message`)."""
        if digest.type != BATCH_TYPE:
            return 0
        self.settle()
        self._deliveries += len(digest.readings)
        return self._count(digest, received_at)

    def _count(self, digest: MessageDigest, received_at: float) -> int:
        self.messages_by_second[int(received_at)] += 1
        self.last_message_at = received_at
        self.out_of_order += digest.out_of_order
        if digest.replay:
            self.replayed += len(digest.readings)
        fresh = digest.fresh
        if fresh is not None and self._all_new(fresh):
            self._record_fresh(fresh, received_at, digest.server_time)
        else:
            for reading in digest.readings:
                self._record_reading(reading, received_at, digest.server_time)
        return len(digest.readings)

    def _all_new(self, fresh: FreshRun) -> bool:
        """Whether none of the message's readings has arrived before (nor is remembered by
        the client's de-duplication), and all are of this connection's devices."""
        for device in fresh.seqs:
            arrivals = self._arrivals.get(device.device)
            if arrivals is None:
                return False
            last = max(device.seqs)
            if last >= len(arrivals):  # 0: not arrived yet, as past the end
                arrivals.extend(bytes(last + 1 - len(arrivals)))
            if any(device.pick(arrivals)):
                return False
        return self._dedupe.none_seen(fresh.ids)

    def _record_fresh(self, fresh: FreshRun, received_at: float, server_time: float | None) -> None:
        """The per-reading path's outcome for a message of first arrivals, taken whole."""
        for device in fresh.seqs:
            arrivals = self._arrivals[device.device]  # long enough: _all_new extended it
            for seq in device.seqs:
                arrivals[seq] = 1
        self._dedupe.remember(fresh.ids)
        self._note_newest(fresh.newest_seen)
        for second, sent in fresh.sent_by_second:
            millis = [int((received_at - sent_at) * 1000) for sent_at in sent]
            if min(millis) < 0:  # clock skew: counted as 0, as LatencyHistogram.add does
                millis = [max(0, value) for value in millis]
            self.latency.counts.update(millis)
            by_second = self.latency_by_sent_second.get(second)
            if by_second is None:
                by_second = self.latency_by_sent_second[second] = LatencyHistogram()
            by_second.counts.update(millis)
        self.to_received.merge_counts(fresh.to_received)
        self.waiting_for_tick.merge_counts(fresh.waiting_for_tick)
        if server_time is not None:
            self.tick_to_browser.add(received_at - server_time, sum(fresh.to_received.values()))

    def _record_reading(self, reading: ReadingFacts, received_at: float, server_time: float | None) -> None:
        value = reading.value
        passed_dedupe = self._dedupe.is_new(value)
        if passed_dedupe:
            self._note_newest(reading.seen)
        parsed = reading.parsed
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
            if reading.at_server is not None and server_time is not None:
                self.to_received.add(reading.at_server - sent_at)
                self.waiting_for_tick.add(server_time - reading.at_server)
                self.tick_to_browser.add(received_at - server_time)
            by_second = self.latency_by_sent_second.get(int(sent_at))
            if by_second is None:
                by_second = self.latency_by_sent_second[int(sent_at)] = LatencyHistogram()
            by_second.add(latency)
        elif passed_dedupe:
            # A repeat the application sees again: the dedupe window had forgotten the id.
            self.duplicated_after_dedupe += 1

    def _note_newest(self, seen: float | None) -> None:
        """Where a resume starts, as the browser client computes it: the earlier of
        ``recordedAt`` and ``receivedAt`` of the newest reading seen."""
        if seen is not None and (self.newest_seen is None or seen > self.newest_seen):
            self.newest_seen = seen

    def complete(self, sent: Mapping[int, int]) -> bool:
        """True when every reading in ``sent`` (device -> readings sent) has arrived."""
        expected = sum(sent.get(device, 0) for device in self._arrivals)
        if self._deliveries < expected:
            return False  # without counting what is held: the stack may still be sending
        self.settle()
        for device, arrivals in self._arrivals.items():
            count = sent.get(device, 0)
            if count and (len(arrivals) < count or 0 in arrivals[:count]):
                return False
        return True

    def missing_count(self, sent: Mapping[int, int]) -> int:
        self.settle()
        missing = 0
        for device, arrivals in self._arrivals.items():
            count = sent.get(device, 0)
            window = arrivals[:count]
            missing += count - len(window) + window.count(0)
        return missing

    def missing_readings(self, sent: Mapping[int, int], limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` (device, seq) of readings sent but never received."""
        self.settle()
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
        self.settle()
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
