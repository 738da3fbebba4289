"""Flush: once a second, deliver what arrived to every subscribed connection.

Each tick takes the outbox seconds that are ready (arrival second + 1 s + grace in the
past), groups them per org, and sends each connection of those orgs one message (split
only to stay under the 32 KB frame limit) with the readings it may see. Progress is
recorded after delivery and only while holding the lease, so a crash redelivers rather
than loses, and two flushers never deliver the same tick.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .gateway import MAX_MESSAGE_BYTES, ConnectionGateway
from .models import CommandTimeoutMessage, ConnectionRecord, Reading, ReadingsBatchMessage, UnitBatch
from .observability import logger, metrics
from .settings import Settings
from .store import SensorStore

# Bytes of a batch message around its readings (type, serverTime, replay), and of one
# unit's {"unitId", "readings", "count"} wrapper besides the unit id itself.
_ENVELOPE_BYTES = 160
_UNIT_HEADER_BYTES = 48


def encoded_sizes(readings: Iterable[Reading]) -> dict[str, int]:
    """JSON size of each reading, computed once per tick rather than per connection."""
    return {reading.id: len(reading.to_json()) for reading in readings}


def batch_messages(
    readings: Iterable[Reading],
    *,
    server_time: datetime,
    replay: bool | None = None,
    sizes: dict[str, int] | None = None,
) -> list[ReadingsBatchMessage]:
    """Readings grouped per unit, ordered by ``recordedAt``, packed into as few messages
    as fit under the frame limit."""
    per_unit: dict[str, dict[str, Reading]] = defaultdict(dict)
    for reading in readings:
        per_unit[reading.unit_id].setdefault(reading.id, reading)  # each reading once
    messages: list[ReadingsBatchMessage] = []
    batches: list[UnitBatch] = []
    size = _ENVELOPE_BYTES

    def close_message() -> None:
        nonlocal batches, size
        if batches:
            messages.append(ReadingsBatchMessage(server_time=server_time, replay=replay, batches=batches))
        batches, size = [], _ENVELOPE_BYTES

    for unit_id in sorted(per_unit):
        unit_readings = sorted(per_unit[unit_id].values(), key=lambda r: (r.recorded_at, r.id))
        # Unit ids are ASCII (Identifier), so their JSON length is their length.
        unit_header_bytes = _UNIT_HEADER_BYTES + len(unit_id)
        current: list[Reading] = []
        for reading in unit_readings:
            known = sizes.get(reading.id) if sizes else None
            reading_bytes = (known if known is not None else len(reading.to_json())) + 1
            if size + unit_header_bytes + reading_bytes > MAX_MESSAGE_BYTES and (current or batches):
                if current:
                    batches.append(UnitBatch(unit_id=unit_id, readings=current, count=len(current)))
                close_message()
                current = []
            if not current:
                size += unit_header_bytes
            current.append(reading)
            size += reading_bytes
        if current:
            batches.append(UnitBatch(unit_id=unit_id, readings=current, count=len(current)))
    close_message()
    return messages


@dataclass
class TickReport:
    buckets: list[int] = field(default_factory=list)
    readings: int = 0
    messages_sent: int = 0
    connections_gone: int = 0
    post_failures: int = 0
    commands_timed_out: int = 0
    lease_lost: bool = False


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
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self.owner = owner or str(uuid.uuid4())
        self._pool = ThreadPoolExecutor(
            max_workers=settings.flush_post_concurrency, thread_name_prefix="post"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # --- the loop ---------------------------------------------------------------------

    def run(self, keep_going: Callable[[], bool]) -> list[TickReport]:
        """Tick every FLUSH_TICK_SECONDS on a fixed grid (no drift) while ``keep_going()``."""
        settings = self._settings
        if not self._wait_for_lease(keep_going):
            logger.warning("another flusher holds the lease; this invocation delivers nothing")
            return []
        reports: list[TickReport] = []
        interval = settings.flush_tick_seconds
        start = self._clock()
        slot = 0
        try:
            while keep_going():
                try:
                    report = self.tick(self._clock())
                except Exception:
                    # A passing failure (throttling, a network blip) must not stop delivery for
                    # the rest of the minute; progress was not recorded, so nothing is lost.
                    logger.exception("flush tick failed; retrying on the next slot")
                    metrics.add_metric(name="FlushTickErrors", unit="Count", value=1)
                    report = TickReport()
                reports.append(report)
                if report.lease_lost:
                    logger.error("flush lease lost; stopping")
                    break
                # Next slot on the grid; slots missed by a slow tick are skipped, not bunched.
                slot = max(slot + 1, math.floor((self._clock() - start) / interval) + 1)
                delay = start + slot * interval - self._clock()
                if delay > 0 and keep_going():
                    self._sleep(delay)
        finally:
            self._store.release_flush_lease(self.owner)
        return reports

    def _wait_for_lease(self, keep_going: Callable[[], bool]) -> bool:
        # A previous invocation may still be finishing its last tick: wait for it a little.
        while True:
            if (
                self._store.acquire_flush_lease(self.owner, self._clock(), self._settings.flush_lease_seconds)
                is not None
            ):
                return True
            if not keep_going():
                return False
            self._sleep(self._settings.flush_tick_seconds / 2)

    # --- one tick ---------------------------------------------------------------------

    def tick(self, now: float) -> TickReport:
        settings = self._settings
        report = TickReport()
        progress = self._store.acquire_flush_lease(self.owner, now, settings.flush_lease_seconds)
        if progress is None:
            report.lease_lost = True
            return report
        delivered_through, commands_through = progress
        ready_through = math.floor(now - settings.flush_grace_seconds) - 1
        # The very first tick (and one after a long outage) catches up a bounded window.
        oldest = ready_through - settings.flush_max_catch_up_seconds + 1
        first = oldest if delivered_through is None else max(delivered_through + 1, oldest)
        report.buckets = list(range(first, ready_through + 1))

        arrived: dict[str, list[Reading]] = defaultdict(list)
        for bucket in report.buckets:
            for org_id, reading in self._store.outbox(bucket):
                arrived[org_id].append(reading)
        report.readings = sum(len(r) for r in arrived.values())
        server_time = datetime.fromtimestamp(now, UTC)
        if arrived:
            self._deliver(arrived, server_time, now, report)

        timeouts_through = math.floor(now)
        oldest_due = timeouts_through - settings.flush_max_catch_up_seconds + 1
        first_due = oldest_due if commands_through is None else max(commands_through + 1, oldest_due)
        report.commands_timed_out = self._time_out_commands(range(first_due, timeouts_through + 1))

        # A post that failed (throttled, API Gateway error) is retried by delivering these
        # seconds again on the next tick, as after a crash: clients de-duplicate by id.
        delivered = first - 1 if report.post_failures else ready_through
        if not self._store.record_flush_progress(
            self.owner, max(delivered, delivered_through or delivered), timeouts_through
        ):
            report.lease_lost = True
        self._record_metrics(report)
        return report

    def _deliver(
        self, arrived: dict[str, list[Reading]], server_time: datetime, now: float, report: TickReport
    ) -> None:
        posts = []
        sizes = encoded_sizes(r for readings in arrived.values() for r in readings)
        for org_id, readings in arrived.items():
            for connection in self._store.connections_of_org(org_id, now):
                wanted = [r for r in readings if connection.wants(r)]
                if wanted:
                    messages = batch_messages(wanted, server_time=server_time, sizes=sizes)
                    posts.append((connection, self._pool.submit(self._post_all, connection, messages)))
        for connection, future in posts:
            try:
                sent, gone = future.result()
            except Exception:
                # Throttled or failing beyond botocore's retries: the next tick goes on.
                logger.exception("post failed", extra={"connection_id": connection.connection_id})
                report.post_failures += 1
                continue
            report.messages_sent += sent
            if gone:
                report.connections_gone += 1
                self._store.delete_connection(connection.connection_id, connection.org_id)

    def _post_all(
        self, connection: ConnectionRecord, messages: list[ReadingsBatchMessage]
    ) -> tuple[int, bool]:
        sent = 0
        for message in messages:
            if not self._gateway.send(connection.connection_id, message):
                return sent, True
            sent += 1
        return sent, False

    def _time_out_commands(self, seconds: range) -> int:
        timed_out = 0
        for second in seconds:
            for command_id in self._store.commands_due(second):
                command = self._store.expire_command(command_id)
                if command is None:
                    continue  # acknowledged in time
                timed_out += 1
                try:
                    self._gateway.send(
                        command.connection_id,
                        CommandTimeoutMessage(request_id=command.request_id, command_id=command.command_id),
                    )
                except Exception:
                    # A failing post must not stop the tick (and the loop); the command is
                    # settled, so this notice is lost like any post to a failing connection.
                    logger.exception("posting a command timeout failed", extra={"command_id": command_id})
        return timed_out

    @staticmethod
    def _record_metrics(report: TickReport) -> None:
        metrics.add_metric(name="FlushTicks", unit="Count", value=1)
        for name, value in (
            ("ReadingsDelivered", report.readings),
            ("MessagesSent", report.messages_sent),
            ("ConnectionsGone", report.connections_gone),
            ("PostFailures", report.post_failures),
            ("CommandsTimedOut", report.commands_timed_out),
        ):
            if value:
                metrics.add_metric(name=name, unit="Count", value=value)
