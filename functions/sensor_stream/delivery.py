"""Flush: once a second, deliver what arrived to every subscribed connection.

A flusher holds a lease on the flush state and ticks on a fixed grid: tick ``k`` runs at
``second + FLUSH_GRACE_SECONDS`` and reads the outbox of the seconds that ended before it
(each second once, strongly consistent), after announcing them in ``readThrough``. The
readings of each org go to the org's connections through the fan-out (one message per
connection per tick, each connection on its own lane). Timers that fall due in those
seconds (command timeouts, token expiries) fire in the same tick.

The schedule starts an invocation every minute. The new one waits as the successor; the
running one's tick that finds it reads nothing new, finishes the posts it started and
hands the lease over, with the lanes still behind (a flush that is behind: the arrival
second each waits from, which the successor reads again for them first); the successor
reads from the next unread second at once, so no second goes without a tick. A tick that
overran its second is followed at once. A crashed holder is replaced when its lease
expires: its successor starts after the last second whose posts had all ended
(``deliveredThrough``), so nothing is lost; browsers may then see a reading twice and drop
it by id.

Past what one flusher posts in a tick, the connections are split over fan-out shards
(sensor_stream.sharding, docs/scaling.md): shard k's flusher (k >= 1, started by shard 0,
each minute by the scheduled invocation) reads the same outbox, never past shard 0's
``readThrough``, and posts to its share of the connections under its own lease. Shard 0
also sizes the shards, evaluates alerts and fires the timers.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aws_lambda_powertools.metrics import MetricResolution

from .alerting import AlertEvaluator, AlertEvent, AlertSink
from .coordination import ShardCoordinator, WorkerStarter
from .fanout import Fanout, FanoutCounts, TickSettlement, server_time_of
from .gateway import ConnectionGateway
from .keys import DUE_COMMAND, DUE_RULES, DUE_SESSION_END
from .models import CommandTimeoutMessage, ConnectionRecord, ErrorBody, ErrorMessage
from .observability import logger, metrics
from .packing import PackedReading
from .roster import ConnectionRoster
from .settings import Settings
from .sharding import ShardLayout
from .store import DueTimer, FlushState, Handover, OutboxEntry, SecondQueue, SensorStore
from .store.flush_state import doorbell_kind

# How long delivered readings are remembered, to drop copies queued again by ingest.
RECENT_SECONDS = 30
# Digests handed to a successor at most (8 bytes each; the hand-over item stays < 400 KB).
MAX_HANDOVER_DIGESTS = 40_000
# At a hand-over, how long to go on posting what the lanes hold before handing over the
# lanes still holding some: enough for the last tick's posts to end in the normal case,
# short because the successor waits for it: a lane that cannot drain (a throttled or
# failing connection) held every org's next seconds back for the whole drain (3 s before
# lanes were handed over).
HANDOVER_DRAIN_SECONDS = 0.5
# Then posts waiting for a slot are recalled, and those being sent get this long to end:
# normally milliseconds; a flush that is behind may be sending a long backlog (dozens of
# messages) to some connections, and a lane closed mid-post resumes with at most 1,000
# readings. Far inside the lease's remaining 20 s (the hand-over comes ~60 s before the
# invocation's timeout).
HANDOVER_POST_END_SECONDS = 5.0
# Lanes handed to a successor at most (~20 bytes each beside the digests' 320 KB); a lane
# past them is closed (its browser resumes).
MAX_HANDOVER_LANES = 2_000
# A successor reads the connection lists of the orgs with readings in these last seconds
# before it asks for the lease.
PRELOAD_SECONDS = 3
# End-to-end lags published per tick at most (one EMF record holds 100 values); more
# posts are represented by an even spread of their sorted lags, the fastest and slowest
# included, so the percentiles CloudWatch computes keep their shape.
LAG_SAMPLES_PER_TICK = 100


def summarize(reports: list[TickReport], shard: int) -> dict[str, int]:
    """What an invocation did, for its log line and its answer."""
    return {
        "shard": shard,
        "ticks": len(reports),
        "readings": sum(r.readings for r in reports),
        "messages": sum(r.fanout.messages_sent for r in reports),
        "connectionsGone": sum(r.fanout.connections_gone for r in reports),
        "connectionsClosed": sum(r.fanout.connections_closed for r in reports),
        "commandsTimedOut": sum(r.commands_timed_out for r in reports),
    }


def reading_digest(org_id: str, reading: PackedReading) -> int:
    text = f"{org_id}|{reading.unit_id}|{reading.recorded_at}|{reading.reading_id}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def queued_readings(queue: SecondQueue) -> Iterator[tuple[OutboxEntry, PackedReading | None, int]]:
    """Each outbox line as (entry, reading, digest); reading None: the line is unreadable."""
    for entry in queue.entries:
        for line in entry.lines:
            try:
                reading = PackedReading.from_text(line)
            except (ValueError, KeyError, TypeError):
                yield entry, None, 0
                continue
            yield entry, reading, reading_digest(entry.org_id, reading)


class RecentReadings:
    """Digests of the readings delivered in the last RECENT_SECONDS ticks."""

    def __init__(self, digests: bytes = b"", *, newer: int = 0, newer_since: int = -1) -> None:
        """A predecessor's ``digests``: the first ``newer`` came from ticks that read
        ``newer_since`` or later."""
        handed = list(_unpack(digests))
        # Each tick's first arrival second and digests, oldest first.
        self._by_tick: deque[tuple[int, list[int]]] = deque(
            [(-1, handed[newer:]), (newer_since, handed[:newer])]
        )
        self._all: set[int] = set(handed)

    def __contains__(self, digest: int) -> bool:
        return digest in self._all

    def add_tick(self, first_second: int, digests: list[int]) -> None:
        self._by_tick.append((first_second, digests))
        self._all.update(digests)
        while len(self._by_tick) > RECENT_SECONDS:
            for old in self._by_tick.popleft()[1]:
                self._all.discard(old)

    def pack(self) -> bytes:
        """The newest first, at most MAX_HANDOVER_DIGESTS."""
        newest: list[int] = []
        for _, digests in reversed(self._by_tick):
            newest.extend(digests)
            if len(newest) >= MAX_HANDOVER_DIGESTS:
                break
        return struct.pack(f">{min(len(newest), MAX_HANDOVER_DIGESTS)}Q", *newest[:MAX_HANDOVER_DIGESTS])

    def count_since(self, second: int) -> int:
        """How many of ``pack()``'s digests (the first ones) came from ticks that read
        ``second`` or later."""
        count = sum(len(digests) for first, digests in self._by_tick if first >= second)
        return min(count, MAX_HANDOVER_DIGESTS)


def spread(values: list[float], most: int) -> list[float]:
    """At most ``most`` of ``values``, evenly spread over their sorted order (first and
    last included)."""
    if len(values) <= most:
        return values
    ordered = sorted(values)
    step = (len(ordered) - 1) / (most - 1)
    return [ordered[round(index * step)] for index in range(most)]


def _unpack(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f">{len(data) // 8}Q", data[: len(data) // 8 * 8])


@dataclass
class TickReport:
    seconds: list[int] = field(default_factory=list)
    skipped_seconds: int = 0
    readings: int = 0
    duplicates_dropped: int = 0
    unreadable: int = 0
    connections: int = 0
    commands_timed_out: int = 0
    sessions_expired: int = 0
    alerts: int = 0
    lease_lost: bool = False
    # Lanes a predecessor handed over that got their readings again.
    lanes_resumed: int = 0
    # A shard the layout no longer has, done with the seconds before the change.
    retired: bool = False
    successor: str | None = None
    fanout: FanoutCounts = field(default_factory=FanoutCounts)
    duration_seconds: float = 0.0


class Flusher:
    """Runs ticks for one invocation; ``clock``/``sleep`` are injectable for tests."""

    def __init__(
        self,
        store: SensorStore,
        gateway: ConnectionGateway,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        owner: str | None = None,
        publish_alert: AlertSink | None = None,
        shard: int = 0,
        start_worker: WorkerStarter | None = None,
    ) -> None:
        """``shard``: the fan-out shard this flusher delivers; ``start_worker``: how shard 0
        starts the flusher of another shard (None: one shard, whatever the load)."""
        self._store = store
        self.shard = shard
        self._state = store.flush_state.for_shard(shard)
        self._layout = ShardLayout()
        # Shard k >= 1: the newest second shard 0 announced (no shard reads past it).
        self._announced: int | None = None
        self.coordinator = (
            ShardCoordinator(store, settings, start_worker, clock=clock)
            if shard == 0 and start_worker is not None
            else None
        )
        self._gateway = gateway
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self.owner = owner or str(uuid.uuid4())
        self.fanout = Fanout(store, gateway, settings, clock=clock)
        self.roster = ConnectionRoster(store)
        self.alerts = AlertEvaluator(store, clock=clock)
        self._publish_alert = publish_alert
        # Publishing an alert (SNS) must not hold up a tick.
        self._publisher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alert")
        self._recent = RecentReadings()
        # Lanes the predecessor handed over (connection -> first arrival second it waits
        # for), and the readings it delivered before those seconds.
        self._lanes_to_resume: dict[str, int] = {}
        self._delivered_before_lanes: set[int] = set()
        # The next arrival second to read (None until the lease is held).
        self._next_second: int | None = None
        self._read_through: int | None = None
        self._ticks: deque[TickSettlement] = deque()
        self._delivered_through: int | None = None
        # When the lease was last renewed (None: must renew before reading anything).
        self._renewed_at: float | None = None
        # Messages posted and arrival seconds read since then (the shard's load).
        self._posted_since_renewal = 0
        self._seconds_since_renewal = 0
        # The last tick found nothing and left nothing in flight.
        self._idle = False
        self._fresh_start = False

    def close(self) -> None:
        self.fanout.close()
        self._publisher.shutdown(wait=True)

    # --- the loop ---------------------------------------------------------------------

    def run(self, keep_going: Callable[[], bool]) -> list[TickReport]:
        """Take the lease (or wait for it as the successor), then tick on the grid until a
        successor takes over, the lease is lost, or ``keep_going()`` turns false."""
        if self.coordinator is not None:
            # The schedule's invocation: a fresh flusher for each other shard as well, which
            # takes over from the running one as this one does from shard 0's.
            self.coordinator.start_successors(self._store.flush_state.read().layout)
        state = self._take_lease(keep_going)
        if state is None:
            return []
        reports: list[TickReport] = []
        handed_over = False
        last_tick_at: float | None = None
        try:
            while keep_going():
                self._sleep_until_next_tick(last_tick_at)
                if not keep_going():
                    break
                last_tick_at = self._clock()
                try:
                    report = self.tick(last_tick_at)
                except Exception:
                    # A passing failure (throttling, a network blip) must not stop delivery;
                    # what was not read is read again on the next tick.
                    logger.exception("flush tick failed; retrying on the next tick")
                    metrics.add_metric(name="FlushTickErrors", unit="Count", value=1)
                    report = TickReport()
                reports.append(report)
                if report.lease_lost:
                    logger.error("flush lease lost; stopping")
                    return reports
                if report.retired:
                    logger.info("fan-out shard no longer needed; stopping", extra={"shard": self.shard})
                    break
                if report.successor and report.successor != self.owner:
                    handed_over = self.hand_over(report.successor)
                    if handed_over:
                        break
        finally:
            if not handed_over and not (reports and reports[-1].lease_lost):
                self.finish()
        return reports

    def _take_lease(self, keep_going: Callable[[], bool]) -> FlushState | None:
        state = self.try_lease()
        if state is not None:
            return state
        # The running invocation hands over at its next tick: first read what it
        # knows, so that the first tick after the hand-over is as quick as the ones before.
        self.preload_roster()
        if not self.wait_as_successor():
            logger.info("another invocation already waits to take over; nothing to do")
            return None
        while keep_going():
            self._sleep(self._settings.flush_successor_poll_seconds)
            state = self.poll_for_lease()
            if state is not None:
                return state
        return None

    def try_lease(self) -> FlushState | None:
        """Take the lease if it is free or expired (then continue where delivery stopped)."""
        state = self._state.acquire(self.owner, self._clock(), self._settings.flush_lease_seconds)
        if state is not None:
            self._start_from(state)
        return state

    def preload_roster(self) -> None:
        """The connection lists of the orgs with readings in the last few seconds, read while
        the predecessor still delivers (at 10,000 connections reading them took the first
        tick of every invocation seconds: docs/scaling.md). An org that reports less often
        is read on its first tick, as before; a list that changes meanwhile, when its
        version moves."""
        now = self._clock()
        last = self._ready_through(now)
        try:
            recent = self._store.readings.seconds_queue(last - PRELOAD_SECONDS + 1, last)
            orgs = sorted({entry.org_id for entry in recent.entries})
            self.roster.of_orgs(orgs, now)
        except Exception:
            # Only a head start: the first tick reads them otherwise.
            logger.exception("preloading the connection lists failed")

    def wait_as_successor(self) -> bool:
        return self._state.wait_as_successor(
            self.owner, self._clock(), stale_after=2 * self._settings.flush_lease_seconds
        )

    def poll_for_lease(self) -> FlushState | None:
        """As the successor: the lease once it was handed over (with what the predecessor
        delivered recently) or once it expired (the holder died)."""
        current = self._state.read()
        if current.owner == self.owner:
            handover = self._state.handed_over(self.owner)
            self._lanes_to_resume = handover.lanes
            self._recent = RecentReadings(
                handover.recent,
                newer=handover.newer_digests,
                newer_since=min(handover.lanes.values(), default=-1),
            )
            self._delivered_before_lanes = set(_unpack(handover.delivered_before_lanes))
            self._start_from(current)
            if handover.read_from is not None and self._next_second is not None:
                # deliveredThrough waits before the handed lanes' seconds (see hand_over).
                self._next_second = max(self._next_second, handover.read_from)
            return current
        if current.lease_until < self._clock():
            return self.try_lease()
        return None

    def _start_from(self, state: FlushState) -> None:
        self._read_through = state.read_through
        if self.shard == 0:
            self._layout = state.layout
        else:
            self._learn_layout()
        if state.delivered_through is not None:
            self._delivered_through = state.delivered_through
            self._next_second = state.delivered_through + 1
            if self.shard >= self._layout.previous:
                # A shard new in this layout: its connections had their earlier seconds
                # from the shards before.
                self._next_second = max(self._next_second, self._layout.since)
        elif self.shard > 0 and self._layout.since:
            self._next_second = self._layout.since
        else:
            # Nothing was ever delivered: start the catch-up window back, skipping nothing.
            self._next_second = (
                self._ready_through(self._clock()) - self._settings.flush_max_catch_up_seconds + 1
            )
            self._fresh_start = True

    def _learn_layout(self) -> None:
        """Shard k >= 1: the layout and how far shard 0 announced, from shard 0's item."""
        zero = self._store.flush_state.read()
        self._layout, self._announced = zero.layout, zero.read_through

    def _ready_through(self, now: float) -> int:
        """The newest second whose writes can have landed: it ended a grace ago."""
        return math.floor(now - self._settings.flush_grace_seconds) - 1

    def _sleep_until_next_tick(self, last_tick_at: float | None) -> None:
        """Ticks run on the grid (a grace after each second), one per grid point: the next
        is the first grid point after the last tick started, at once if that passed while
        the tick ran (waiting for the one after would add a second to what arrived). An
        invocation's first tick runs as soon as the next second to read is ready: a
        successor takes over mid-second."""
        grace = self._settings.flush_grace_seconds % 1
        now = self._clock()
        if last_tick_at is None:
            next_tick = math.floor(now - grace) + 1 + grace
            if self._next_second is not None:
                next_tick = min(next_tick, self._next_second + 1 + self._settings.flush_grace_seconds)
        else:
            next_tick = math.floor(last_tick_at - grace) + 1 + grace
        self._sleep(max(0.0, next_tick - now))

    # --- one tick ---------------------------------------------------------------------

    def tick(self, now: float) -> TickReport:
        started = time.monotonic()
        settings = self._settings
        report = TickReport()
        if self._next_second is None:
            state = self._state.acquire(self.owner, now, settings.flush_lease_seconds)
            if state is None:
                report.lease_lost = True
                return report
            self._start_from(state)
        assert self._next_second is not None
        if self._lanes_to_resume:
            report.lanes_resumed = self._resume_lanes(now)
        ready = self._ready_through(now)
        oldest = ready - settings.flush_max_catch_up_seconds + 1
        first = self._next_second
        if first < oldest and not self._fresh_start:
            report.skipped_seconds = oldest - first
            logger.warning("skipping seconds beyond the catch-up window", extra={"seconds": oldest - first})
        first = max(first, oldest)
        self._fresh_start = False
        last = min(ready, first + settings.flush_max_seconds_per_tick - 1)
        if self.shard > 0:
            if self._announced is None or last > self._announced:
                self._learn_layout()
            # Never past what shard 0 announced: ingest's late check reads shard 0's item.
            last = min(last, self._announced if self._announced is not None else first - 1)
        layout = self._layout
        if self.shard >= layout.shards:
            if first >= layout.since and all(settlement.settled for settlement in self._ticks):
                report.retired = True
                return report
            # Posts that failed (throttled) are retried below before retiring: retiring
            # would close their connections.
            last = min(last, layout.since - 1)
        if layout.changes_within(first, last):
            last = layout.since - 1  # a tick delivers under one layout
        report.seconds = list(range(first, last + 1))
        shards_now = layout.count_at(first)

        self._settle_ticks()
        if self._must_renew(now, last):
            # While idle, the renewal is the tick's one request: its seconds are read on
            # the next tick with that one's (a second later, and only after nothing came).
            defer_reading = self._idle and self._read_through is not None and last <= self._read_through
            # Announce the seconds of the next renew interval too: an idle tick in between
            # then makes one request, its outbox query.
            announce = max(last + math.ceil(settings.flush_renew_seconds) + 1, self._read_through or last)
            load = self._shard_load(shards_now)
            state = self._state.renew(
                self.owner,
                now,
                settings.flush_lease_seconds,
                read_through=announce if self.shard == 0 else None,
                delivered_through=self._delivered_through,
                # Not at an invocation's first renewal: it has read no connections yet, and
                # a zero would let shard 0 size the shards down after every hand-over.
                load=load if self._renewed_at is not None else None,
            )
            if state is None:
                report.lease_lost = True
                return report
            self._read_through = announce
            self._renewed_at = now
            report.successor = state.successor
            if self.shard == 0:
                self.alerts.sync_rules(state.rules_version)
                if self.coordinator is not None:
                    self._layout = self.coordinator.on_renew(
                        self.owner, state, load, self._delivered_through, now
                    )
            if defer_reading or self._yields_to_successor(report):
                report.seconds = []
                return report

        arrived: dict[str, list[PackedReading]] = defaultdict(list)
        delivered: list[int] = []
        this_tick: set[int] = set()
        queue = self._store.readings.seconds_queue(first, last) if report.seconds else SecondQueue([], [])
        # Timers are shard 0's; each shard answers its own successor's doorbell.
        timers = [t for t in queue.timers if t.kind in (DUE_COMMAND, DUE_SESSION_END) and self.shard == 0]
        bells = [t.identifier for t in queue.timers if t.kind == doorbell_kind(self.shard)]
        if any(bell != self.owner for bell in bells):
            report.successor = self._waiting_successor(bells)
        if self._yields_to_successor(report):
            return report
        if self.shard == 0 and any(timer.kind == DUE_RULES for timer in queue.timers):
            self.alerts.sync_rules(None)
        for entry, reading, digest in queued_readings(queue):
            if reading is None:
                report.unreadable += 1
            elif digest in self._recent or digest in this_tick:
                report.duplicates_dropped += 1
            else:
                this_tick.add(digest)
                delivered.append(digest)
                arrived[entry.org_id].append(reading)
        if report.unreadable:
            logger.error("unreadable outbox readings skipped", extra={"count": report.unreadable})
        report.readings = sum(len(readings) for readings in arrived.values())

        # What the rules API ended reaches browsers from the outbox (it published those
        # itself); what this tick evaluates is published here.
        evaluated: list[AlertEvent] = []
        if self.shard == 0:
            for org_id, readings in arrived.items():
                evaluated.extend(self.alerts.on_readings(org_id, readings))
            evaluated.extend(self.alerts.due(now))
        if self._publish_alert is not None:
            for event in evaluated:
                self._publisher.submit(self._publish, event)
        if evaluated and shards_now > 1:
            # Every shard's browsers get them through the outbox, on the next tick.
            lines_by_org: dict[str, list[str]] = defaultdict(list)
            for event in evaluated:
                lines_by_org[event.org_id].append(event.to_line())
            self._queue_alerts(lines_by_org)
            evaluated = []
        events = [*(AlertEvent.from_line(line) for line in queue.alert_lines if line), *evaluated]
        notices: dict[str, list[AlertEvent]] = defaultdict(list)
        for event in events:
            notices[event.org_id].append(event)
        report.alerts = len(events)

        if report.seconds or notices:
            settlement = (
                TickSettlement(first, last)
                if report.seconds
                else TickSettlement(self._next_second, self._next_second - 1)
            )
            self._ticks.append(settlement)
            orgs = sorted({*arrived, *notices})
            owned = self.roster.of_orgs(orgs, now, self.shard, shards_now)
            for org_id, records in zip(orgs, owned, strict=True):
                report.connections += self._fan_out(
                    records, arrived.get(org_id, []), notices.get(org_id, []), settlement, now
                )
        if report.seconds:
            self._next_second = last + 1
        self._recent.add_tick(first, delivered)
        # Lanes that waited for a post in flight go out now too, then the tick waits a
        # while for its posts: normally they all end well within it.
        self.fanout.dispatch(server_time_of(now))
        self._wait_for_posts(settings.flush_tick_post_wait_seconds)

        for timer in timers:
            self._fire(timer, now, report)
        report.fanout = self.fanout.take_counts()
        self._posted_since_renewal += report.fanout.messages_sent
        self._seconds_since_renewal += len(report.seconds)
        unsettled = any(not settlement.settled for settlement in self._ticks)
        self._idle = not (queue.entries or queue.timers or events or unsettled or self.fanout.in_flight())
        report.duration_seconds = time.monotonic() - started
        logger.debug(
            "tick",
            extra={
                "at": now,
                "seconds": [report.seconds[0], report.seconds[-1]] if report.seconds else [],
                "readings": report.readings,
                "messages": report.fanout.messages_sent,
                "duration": report.duration_seconds,
                "posts_in_flight": self.fanout.in_flight(),
            },
        )
        self._record_metrics(report)
        return report

    def _resume_lanes(self, now: float) -> int:
        """The lanes the predecessor handed over get the readings of the seconds they wait
        from that it had read (up to where this flusher starts), each once, as the
        predecessor would have posted them; before anything newer."""
        assert self._next_second is not None
        lanes = self._lanes_to_resume
        first, last = min(lanes.values()), self._next_second - 1
        if first > last:
            self._lanes_to_resume, self._delivered_before_lanes = {}, set()
            return 0
        queue = self._store.readings.seconds_queue(first, last)
        seen = set(self._delivered_before_lanes)
        by_org: dict[str, list[tuple[int, PackedReading]]] = defaultdict(list)
        # In second order: a copy counts where it came first.
        for entry, reading, digest in queued_readings(queue):
            if reading is not None and digest not in seen:
                seen.add(digest)
                by_org[entry.org_id].append((entry.second or first, reading))
        settlement = TickSettlement(first, last)
        self._ticks.append(settlement)
        orgs = sorted(by_org)
        resumed = 0
        # Every connection of the orgs, whatever shard owns it now: these are this shard's.
        for org_id, records in zip(orgs, self.roster.of_orgs(orgs, now), strict=True):
            shared: dict[int, list[PackedReading]] = {}
            for record in records:
                since = lanes.get(record.connection_id)
                if since is None or record.token_expired(now):
                    continue
                if record.wants_everything:
                    if since not in shared:
                        shared[since] = [r for second, r in by_org[org_id] if second >= since]
                    wanted = shared[since]
                else:
                    wanted = [
                        r
                        for second, r in by_org[org_id]
                        if second >= since and record.wants_unit(r.unit_id, r.site_id)
                    ]
                if wanted:
                    self.fanout.deliver(record, wanted, settlement)
                    resumed += 1
        self._lanes_to_resume, self._delivered_before_lanes = {}, set()
        logger.info(
            "lanes handed over resumed",
            extra={"lanes": len(lanes), "resumed": resumed, "seconds": [first, last]},
        )
        return resumed

    def _fan_out(
        self,
        records: list[ConnectionRecord],
        readings: list[PackedReading],
        events: list[AlertEvent],
        settlement: TickSettlement,
        now: float,
    ) -> int:
        connections = 0
        for record in records:
            if record.token_expired(now):
                continue
            if record.wants_everything:
                wanted = readings  # the lane copies what it takes
            else:
                wanted = [r for r in readings if record.wants_unit(r.unit_id, r.site_id)]
            notices = [
                e.message.to_json().encode() for e in events if record.wants_unit(e.unit_id, e.site_id)
            ]
            if wanted or notices:
                self.fanout.deliver(record, wanted, settlement, notices)
                connections += 1
        return connections

    def _publish(self, event: AlertEvent) -> None:
        assert self._publish_alert is not None
        try:
            self._publish_alert(event)
        except Exception:
            # Browsers have it; the people who are not watching miss this one.
            logger.exception("publishing an alert failed", extra={"org_id": event.org_id})
            metrics.add_metric(name="AlertPublishFailures", unit="Count", value=1)

    def _queue_alerts(self, lines_by_org: Mapping[str, list[str]]) -> None:
        """Into the current second; if the write landed after the other shards may have read
        that second (a slow tick), into the then current second again, as ingest does with a
        late outbox write (a browser may see the notice twice; alerts are keyed by id)."""
        settings = self._settings
        second = math.floor(self._clock())
        for _ in range(3):
            self._store.readings.queue_alerts(lines_by_org, second, f"flush-{self.owner}-{second}")
            landed = self._clock()
            if landed <= second + 1 + settings.flush_grace_seconds - settings.flush_clock_margin_seconds:
                return
            second = math.floor(landed)
        logger.warning("alert notices written late three times; some browsers may miss them")

    def _must_renew(self, now: float, last: int) -> bool:
        due = self._renewed_at is None or now >= self._renewed_at + self._settings.flush_renew_seconds
        # Shard 0 announces each second before it reads it.
        unannounced = self.shard == 0 and (self._read_through is None or last > self._read_through)
        return due or unannounced

    def _yields_to_successor(self, report: TickReport) -> bool:
        """A successor waits: this tick delivers nothing new (the successor reads its
        seconds right after the hand-over), so the hand-over waits only for the posts of
        the ticks before, and no second waits for a whole tick's posts and then a tick."""
        if report.successor is None or report.successor == self.owner:
            return False
        report.seconds = []
        return True

    def _waiting_successor(self, bells: list[str]) -> str | None:
        """The successor whose doorbell rang if it still waits (it rings after it entered
        itself in the state). A doorbell read again after a hand-over, by a later holder
        (the successor crashed before it read past that second), would otherwise make
        every tick yield to an invocation that is gone."""
        waiting = self._state.read().successor
        if waiting in bells and waiting != self.owner:
            return waiting
        logger.info("a doorbell of a successor that no longer waits ignored", extra={"doorbells": bells})
        return None

    def _settle_ticks(self) -> None:
        """Advance ``deliveredThrough`` over the oldest ticks whose posts have all ended."""
        while self._ticks and self._ticks[0].settled:
            self._delivered_through = self._ticks.popleft().last_second

    # --- hand-over and exit -------------------------------------------------------------

    def hand_over(self, successor: str) -> bool:
        """Pass the lease to the waiting successor after this tick: what the lanes hold is
        posted first, for a few seconds at most; what they still hold then (a flush that is
        behind) is handed over as the arrival second each lane waits from, and the
        successor posts those seconds to them first. Closing the busy lanes instead turned
        a flush that is behind into reconnect storms and resumes past their bound."""
        draining_since = time.monotonic()
        self._wait_for_posts(HANDOVER_DRAIN_SECONDS, dispatching=True)
        drained_for = time.monotonic() - draining_since
        self.fanout.recall_queued_posts()
        self._wait_for_posts(HANDOVER_POST_END_SECONDS)
        posts_ended_for = time.monotonic() - draining_since - drained_for
        lanes = self.fanout.hand_over_lanes(MAX_HANDOVER_LANES)
        read_from = self._next_second
        delivered = (read_from - 1) if read_from is not None else self._delivered_through
        if lanes and delivered is not None:
            # Not delivered past the lanes' seconds until the successor posted them to them.
            delivered = min(delivered, min(lanes.values()) - 1)
        handed = self._state.hand_over(
            self.owner,
            successor,
            self._clock(),
            self._settings.flush_lease_seconds,
            delivered_through=delivered,
            handover=Handover(
                recent=self._recent.pack(),
                lanes=lanes,
                newer_digests=self._recent.count_since(min(lanes.values())) if lanes else 0,
                read_from=read_from if lanes else None,
            ),
        )
        if not handed:
            # The successor left, or the lease passed, meanwhile: the lanes are nobody's, so
            # their browsers resume instead.
            self.fanout.close_handed_lanes()
        else:
            self._renewed_at = None  # not ours any more: a later tick must find that out first
            logger.info(
                "flush handed over",
                extra={
                    "successor": successor,
                    "delivered_through": delivered,
                    "drain_seconds": drained_for,
                    "posts_ended_seconds": posts_ended_for,
                    "lanes_handed_over": len(lanes),
                },
            )
        return handed

    def finish(self) -> None:
        """Stop without a successor (time is up, or the shard retired): posts in flight get
        a moment, then the progress is recorded and the lease freed."""
        self._wait_for_posts(self._settings.flush_post_timeout_seconds)
        self.fanout.abandon_in_flight()
        if self._next_second is not None:
            self._delivered_through = self._next_second - 1
        self._state.release(self.owner, delivered_through=self._delivered_through)

    def _shard_load(self, shards: int) -> int:
        """What this shard carries, for sizing: its connections, or the messages it posted
        per arrival second read since the last renewal where those were more (connections
        that get several messages a tick need a flusher's posting time as much). Per second
        read, not per second of the clock: catching up on ten seconds in one tick is not
        ten times the load."""
        connections = self.roster.served(self.shard, shards)
        posted, self._posted_since_renewal = self._posted_since_renewal, 0
        seconds, self._seconds_since_renewal = self._seconds_since_renewal, 0
        return max(connections, math.ceil(posted / seconds)) if seconds else connections

    def _wait_for_posts(self, seconds: float, *, dispatching: bool = False) -> None:
        """Until no post is in flight, or ``seconds`` passed; ``dispatching``: also post
        what the lanes hold meanwhile, until none holds any."""
        # Real time, whatever clock the ticks follow: this waits on the network.
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (
            self.fanout.in_flight() or (dispatching and self.fanout.waiting())
        ):
            if dispatching:
                self.fanout.dispatch(server_time_of(self._clock()))
            time.sleep(0.002)

    # --- timers -------------------------------------------------------------------------

    def _fire(self, timer: DueTimer, now: float, report: TickReport) -> None:
        try:
            if timer.kind == DUE_COMMAND:
                report.commands_timed_out += self._time_out_command(timer.identifier)
            elif timer.kind == DUE_SESSION_END:
                report.sessions_expired += self._end_expired_session(timer.identifier, now)
        except Exception:
            # A failing timer must not stop the tick; the command or session is left as is.
            logger.exception("a timer failed", extra={"kind": timer.kind, "id": timer.identifier})

    def _time_out_command(self, command_id: str) -> int:
        command = self._store.commands.expire(command_id)
        if command is None:
            return 0  # acknowledged in time
        try:
            self._gateway.send(
                command.connection_id,
                CommandTimeoutMessage(request_id=command.request_id, command_id=command.command_id),
            )
        except Exception:
            # The command is settled; the notice is lost like any post to a failing connection.
            logger.exception("posting a command timeout failed", extra={"command_id": command_id})
        return 1

    def _end_expired_session(self, connection_id: str, now: float) -> int:
        record = self._store.connections.get(connection_id, now)
        if record is None or not record.token_expired(now):
            return 0  # gone already, or the client refreshed its token
        notice = ErrorMessage(
            error=ErrorBody(
                code="token_expired", message="your token expired; reconnect (and resume) with a fresh token"
            )
        )
        self._gateway.send(connection_id, notice)
        self._gateway.disconnect(connection_id)
        self._store.connections.delete(connection_id, record.org_id)
        return 1

    @staticmethod
    def _record_metrics(report: TickReport) -> None:
        metrics.add_metric(name="FlushTicks", unit="Count", value=1)
        for name, value in (
            ("ReadingsDelivered", report.readings),
            ("ReadingsDuplicateDropped", report.duplicates_dropped),
            ("OutboxUnreadable", report.unreadable),
            ("SecondsSkipped", report.skipped_seconds),
            ("MessagesSent", report.fanout.messages_sent),
            ("PostFailures", report.fanout.posts_failed),
            ("PostsThrottled", report.fanout.posts_throttled),
            ("ConnectionsGone", report.fanout.connections_gone),
            ("ConnectionsClosed", report.fanout.connections_closed),
            ("CommandsTimedOut", report.commands_timed_out),
            ("SessionsExpired", report.sessions_expired),
        ):
            if value:
                metrics.add_metric(name=name, unit="Count", value=value)
        metrics.add_metric(
            name="FlushTickDuration", unit="Milliseconds", value=report.duration_seconds * 1000
        )
        for lag in spread(report.fanout.lags, LAG_SAMPLES_PER_TICK):
            metrics.add_metric(
                name="EndToEndLag", unit="Milliseconds", value=lag * 1000, resolution=MetricResolution.High
            )
        # Published every tick, stamped with its time (an invocation lasts a minute): the
        # alarms count ticks per minute and take the lag's percentiles per minute.
        metrics.flush_metrics()
