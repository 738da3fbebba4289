"""flush: ticks on the 1-s grid, the lease that keeps two flushers from delivering the
same tick, progress that survives failures mid-tick, and the scheduled handler."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

import flush.handler
from devstack.schedule import scheduled_event
from sensor_stream import clients
from sensor_stream.delivery import TickReport
from sensor_stream.models import ReadingsBatchMessage
from tests.support.botocore_hooks import fail_operation
from tests.support.clock import FakeClock
from tests.support.lambda_context import FakeLambdaContext, countdown
from tests.support.readings import reading
from tests.support.stack import InProcessStack
from tests.support.websocket import PostRecorder

pytestmark = pytest.mark.usefixtures("stack")


def unit_readings(messages: list[Any]) -> list[tuple[str, str]]:
    """(unitId, recordedAt) of every reading in the batch messages, in order."""
    pairs = []
    for message in messages:
        assert isinstance(message, ReadingsBatchMessage)
        for batch in message.batches:
            pairs += [(r.unit_id, r.to_wire()["recordedAt"]) for r in batch.readings]
    return pairs


def fail_progress_updates(stack: InProcessStack, times: int) -> list[dict[str, Any]]:
    """The store fails to write flush progress (after the posts went out)."""
    return fail_operation(
        stack.store._db,  # the store's own client: the one the flusher uses
        "UpdateItem",
        "InternalServerError",
        500,
        when=lambda params: "deliveredThrough" in params.get("UpdateExpression", ""),
        times=times,
    )


# --- one tick ------------------------------------------------------------------------------


def test_arrival_second_is_delivered_once_its_grace_has_passed(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso(-1)))
    arrival_second = math.floor(clock.time())

    early = stack.tick(advance=1.5)
    assert (early.readings, stack.take(connection_id)) == (0, [])
    assert max(early.buckets) == arrival_second - 1

    ready = stack.tick(advance=0.5)
    assert ready.readings == 1
    assert unit_readings(stack.take(connection_id)) == [("u1", clock.iso(-3))]


def test_tick_with_nothing_new_posts_nothing(stack: InProcessStack, clock: FakeClock, posts: PostRecorder):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    stack.deliver()
    delivered = len(posts.posts)

    reports = [stack.tick() for _ in range(3)]

    assert [(r.readings, r.messages_sent) for r in reports] == [(0, 0)] * 3
    assert len(posts.posts) == delivered == 1
    assert len(stack.take(connection_id)) == 1


def test_first_tick_catches_up_a_bounded_backlog(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("old", clock.iso()))
    clock.advance(stack.settings.flush_max_catch_up_seconds + 5)
    stack.publish_telemetry("acme", "dev-1", reading("new", clock.iso()))

    report = stack.deliver()

    assert len(report.buckets) == stack.settings.flush_max_catch_up_seconds
    assert [unit for unit, _ in unit_readings(stack.take(connection_id))] == ["new"]


def test_each_connection_gets_one_message_per_tick(stack: InProcessStack, clock: FakeClock):
    connections = [stack.open("acme") for _ in range(40)]
    sent = []
    for second in range(3):  # three arrival seconds, delivered by one tick
        sent.append((f"u{second}", clock.iso(-10)))
        stack.publish_telemetry("acme", f"dev-{second}", reading(*sent[-1]))
        clock.advance(1)

    report = stack.deliver()

    assert (report.readings, report.messages_sent) == (3, 40)
    for connection_id in connections:
        [message] = stack.take(connection_id)
        assert unit_readings([message]) == sent


# --- failures mid-tick -----------------------------------------------------------------------


def test_posts_failing_for_everyone_are_delivered_on_the_next_tick(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    first, second = stack.open("acme"), stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    posts.failing.add("*")  # API Gateway throttles every post

    failed = stack.deliver()
    assert (failed.post_failures, failed.messages_sent) == (2, 0)

    posts.failing.clear()
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver()

    for connection_id in (first, second):
        assert sorted(unit for unit, _ in unit_readings(stack.take(connection_id))) == ["u1", "u2"]


def test_post_failing_for_one_connection_is_retried_for_it(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    healthy, throttled = stack.open("acme"), stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    posts.failing.add(throttled)
    stack.deliver()
    posts.failing.clear()

    stack.deliver()

    assert [unit for unit, _ in unit_readings(stack.take(throttled))] == ["u1"]
    # The healthy one may see u1 again (the contract allows it after a failure; clients
    # de-duplicate by id), but never loses or reorders it.
    assert {unit for unit, _ in unit_readings(stack.take(healthy))} == {"u1"}


def test_store_failing_before_progress_is_recorded_loses_nothing(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    failed = fail_progress_updates(stack, times=1)

    with pytest.raises(ClientError, match="InternalServerError"):
        stack.deliver()
    assert len(failed) == 1
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver()

    received = unit_readings(stack.take(connection_id))
    # u1 went out before the crash and again after it: at least once, never lost.
    assert [unit for unit, _ in received] == ["u1", "u1", "u2"]
    assert stack.tick().readings == 0


# --- the lease -------------------------------------------------------------------------------


def test_a_second_flusher_cannot_take_the_lease(stack: InProcessStack, clock: FakeClock, posts: PostRecorder):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    assert stack.deliver(owner="flusher-a").readings == 1

    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    refused = stack.deliver(owner="flusher-b")

    assert refused == TickReport(lease_lost=True)
    assert [unit for unit, _ in unit_readings(stack.take(connection_id))] == ["u1"]


def test_after_release_the_next_flusher_delivers_no_bucket_twice(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    connection_id = stack.open("acme")
    first = stack.flusher("flusher-a")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    clock.advance(2)
    started = clock.time()
    reports_a = first.run(keep_going=lambda: clock.time() < started + 3)  # releases when done
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))

    reports_b = [stack.deliver(owner="flusher-b"), stack.tick(owner="flusher-b")]

    buckets_a = [b for r in reports_a for b in r.buckets]
    buckets_b = [b for r in reports_b for b in r.buckets]
    assert not set(buckets_a) & set(buckets_b)
    assert buckets_b[0] == buckets_a[-1] + 1
    assert [unit for unit, _ in unit_readings(stack.take(connection_id))] == ["u1", "u2"]


def test_lease_of_a_crashed_flusher_expires_and_it_cannot_record_progress_any_more(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    stack.deliver(owner="crashed")  # took the lease, then its invocation died
    clock.advance(stack.settings.flush_lease_seconds - 2)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))

    assert stack.deliver(owner="next").lease_lost  # the lease's last instant
    assert stack.tick(owner="next").readings == 1

    assert stack.tick(advance=0, owner="crashed").lease_lost
    assert [unit for unit, _ in unit_readings(stack.take(connection_id))] == ["u1"]


def test_run_waits_for_the_lease_then_gives_up_delivering_nothing(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    stack.open("acme")
    stack.deliver(owner="holder")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    started = clock.time()

    reports = stack.flusher("waiter").run(keep_going=lambda: clock.time() < started + 3)

    assert reports == []
    assert clock.sleeps
    assert all(s == stack.settings.flush_tick_seconds / 2 for s in clock.sleeps)
    assert posts.posts == []


# --- the tick loop ---------------------------------------------------------------------------


def test_tick_loop_is_drift_free_and_skips_slots_a_slow_tick_missed(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    flusher = stack.flusher()
    durations = iter([0.2, 0.3, 2.5, 0.1, 0.9, 0.2])  # the third tick overruns two slots
    started: list[float] = []
    real_tick = flusher.tick

    def timed_tick(now: float) -> TickReport:
        started.append(now)
        report = real_tick(now)
        clock.advance(next(durations))
        return report

    monkeypatch.setattr(flusher, "tick", timed_tick)
    origin = clock.time()

    reports = flusher.run(keep_going=lambda: clock.time() < origin + 7.5)

    assert len(reports) == 6
    assert [t - origin for t in started] == pytest.approx([0, 1, 2, 5, 6, 7], abs=1e-3)
    assert all(pause > 0 for pause in clock.sleeps)


def test_a_failing_tick_does_not_end_the_loop_and_loses_nothing(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    clock.advance(2.5)  # its arrival second is ready at the first tick
    failed = fail_progress_updates(stack, times=1)
    flusher = stack.flusher()
    origin = clock.time()

    reports = flusher.run(keep_going=lambda: clock.time() < origin + 4.5)

    assert len(failed) == 1
    assert len(reports) == 5  # the failed tick is reported empty; the loop went on
    received = unit_readings(stack.take(connection_id))
    # Posted by the failed tick and again by the next one: at least once, never lost.
    assert [unit for unit, _ in received] == ["u1", "u1"]


def test_tick_loop_stops_when_the_lease_is_lost(stack: InProcessStack, clock: FakeClock):
    flusher = stack.flusher()
    origin = clock.time()
    ticks = 0

    def keep_going() -> bool:
        nonlocal ticks
        ticks += 1
        if ticks == 3:  # someone else took over (e.g. this invocation stalled past the lease)
            stack.store.release_flush_lease(flusher.owner)
            assert stack.store.acquire_flush_lease("usurper", clock.time(), 60)
        return clock.time() < origin + 30

    reports = flusher.run(keep_going)

    assert reports[-1].lease_lost
    assert clock.time() < origin + 30


# --- the scheduled handler -------------------------------------------------------------------


def test_flush_handler_ticks_until_its_time_runs_low(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    # The handler runs on the real clock: let the readings arrive a few seconds ago, and
    # let its first tick look back far enough for a slow machine.
    stack.reconfigure(monkeypatch, FLUSH_MAX_CATCH_UP_SECONDS="30")
    clock.set(datetime.fromtimestamp(time.time() - 3, UTC))
    connection_id = stack.open("acme")
    stack.publish_telemetry(
        "acme", "dev-1", {"readings": [reading("u1", clock.iso(-1)), reading("u2", clock.iso())]}
    )
    context = FakeLambdaContext(function_name="sensor-stream-flush", remaining_ms=countdown(50_000, 1_000))

    summary = flush.handler.lambda_handler(scheduled_event(), context)

    assert summary == {"ticks": 1, "readings": 2, "messages": 1, "connectionsGone": 0, "commandsTimedOut": 0}
    assert unit_readings(posts.received(connection_id)) == [("u1", clock.iso(-1)), ("u2", clock.iso())]
    # The lease was released: the next invocation can start at once.
    assert stack.store.acquire_flush_lease("next-invocation", time.time(), 10)


def test_flush_handler_refuses_an_event_that_is_not_a_schedule(stack: InProcessStack):
    with pytest.raises(ValidationError):
        flush.handler.lambda_handler({"source": "aws.events"}, FakeLambdaContext())


def test_flush_handler_needs_the_callback_url(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WEBSOCKET_CALLBACK_URL")
    clients.reset()

    with pytest.raises(RuntimeError, match="WEBSOCKET_CALLBACK_URL is not set"):
        flush.handler.lambda_handler(scheduled_event(), FakeLambdaContext())


def test_failing_post_of_a_command_timeout_does_not_stop_the_tick(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    stack.deliver()
    stack.request(connection_id, {"action": "sendCommand", "deviceId": "dev-1", "command": "reboot"})
    clock.advance(stack.settings.command_timeout_seconds - 1)
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    posts.failing.add("*")

    failed = stack.deliver()  # the command is due and u2 is ready: every post fails

    assert (failed.commands_timed_out, failed.post_failures) == (1, 1)
    posts.failing.clear()
    stack.deliver()
    batches = [m for m in posts.received(connection_id) if isinstance(m, ReadingsBatchMessage)]
    assert [unit for unit, _ in unit_readings(batches)] == ["u1", "u2"]
