"""flush: ticks a grace after each second ends, one message per connection per tick, a slow
or failing connection costs only itself, a successor takes over without a gap, a crash
loses nothing, and the scheduled handler."""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

import flush.handler
from benchmarks.request_counts import item_size
from sensor_stream import clients, delivery, keys
from sensor_stream.delivery import Flusher, TickReport
from sensor_stream.models import ReadingsBatchMessage
from sensor_stream.roster import ConnectionRoster
from sensor_stream.store import Handover
from sensor_stream.store.dynamo import N, S
from tests.support.botocore_hooks import count_calls, fail_operation
from tests.support.clock import FakeClock
from tests.support.events import authorizer_claims, scheduled_event
from tests.support.lambda_context import FakeLambdaContext, countdown
from tests.support.readings import full_reading, reading
from tests.support.stack import InProcessStack
from tests.support.websocket import PostRecorder, unit_readings

pytestmark = pytest.mark.usefixtures("stack")


def units(messages: list[Any]) -> list[str]:
    return [unit for unit, _ in unit_readings(messages)]


def outbox_entries(stack: InProcessStack) -> list[dict[str, Any]]:
    items = stack.store.client.scan(TableName=stack.settings.table_name)["Items"]
    return [item for item in items if item["pk"]["S"].startswith("OUTBOX#") and "data" in item]


def requeued(entry: dict[str, Any], second: int) -> dict[str, Any]:
    """The entry as ingest writes it again into ``second``."""
    _, org_and_entry = entry["sk"]["S"].split("#", 1)
    return {**entry, "pk": S(keys.outbox_pk(second, 0)), "sk": S(f"{second}#{org_and_entry}")}


def seconds_of(reports: list[TickReport]) -> list[int]:
    return [second for report in reports for second in report.seconds]


# --- one tick ------------------------------------------------------------------------------


def test_arrival_second_is_read_a_grace_after_it_ends(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso(-1)))
    arrival = math.floor(clock.time())
    grace = stack.settings.flush_grace_seconds

    clock.set(datetime.fromtimestamp(arrival + 1 + grace - 0.01, UTC))
    early = stack.tick(advance=0)
    assert (early.readings, stack.take(connection_id)) == (0, [])
    assert max(early.seconds) == arrival - 1

    ready = stack.tick(advance=0.02)
    assert ready.seconds == [arrival]
    assert units(stack.take(connection_id)) == ["u1"]


def test_tick_with_nothing_new_posts_nothing(stack: InProcessStack, clock: FakeClock, posts: PostRecorder):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    stack.deliver()
    delivered = len(posts.posts)

    reports = [stack.tick() for _ in range(3)]

    assert [(r.readings, r.fanout.messages_sent) for r in reports] == [(0, 0)] * 3
    assert len(posts.posts) == delivered == 1
    assert len(stack.take(connection_id)) == 1


def test_first_tick_catches_up_a_bounded_backlog(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("old", clock.iso()))
    clock.advance(stack.settings.flush_max_catch_up_seconds + 5)
    stack.publish_telemetry("acme", "dev-1", reading("new", clock.iso()))

    report = stack.deliver()

    assert len(report.seconds) == stack.settings.flush_max_catch_up_seconds
    assert units(stack.take(connection_id)) == ["new"]


def test_a_backlog_is_read_a_bounded_number_of_seconds_per_tick_and_never_skipped(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    connection_id = stack.open("acme")
    stack.deliver()
    stack.tick()  # progress recorded: a new flusher continues from here
    stack.reconfigure(monkeypatch, FLUSH_MAX_SECONDS_PER_TICK="2", FLUSH_MAX_CATCH_UP_SECONDS="60")
    for second in range(5):  # the flush fell behind by five seconds
        stack.publish_telemetry("acme", "dev-1", reading(f"u{second}", clock.iso()))
        clock.advance(1)

    reports = [stack.deliver()]
    while reports[-1].seconds:
        reports.append(stack.tick(advance=0))

    assert all(len(r.seconds) <= 2 for r in reports)
    assert len(reports) > 3
    assert units(stack.take(connection_id)) == ["u0", "u1", "u2", "u3", "u4"]


def test_each_connection_gets_one_message_per_tick(stack: InProcessStack, clock: FakeClock):
    connections = [stack.open("acme") for _ in range(40)]
    sent = []
    for second in range(3):  # three arrival seconds, delivered by one tick
        sent.append((f"u{second}", clock.iso(-10)))
        stack.publish_telemetry("acme", f"dev-{second}", reading(*sent[-1]))
        clock.advance(1)

    report = stack.deliver()

    assert (report.readings, report.fanout.messages_sent) == (3, 40)
    for connection_id in connections:
        [message] = stack.take(connection_id)
        assert unit_readings([message]) == sent


def test_an_unreadable_outbox_reading_is_skipped_and_everything_else_delivered(
    stack: InProcessStack, clock: FakeClock
):
    # Whatever one tenant's data looks like, it must not stall the others.
    connection_id, other_org = stack.open("acme"), stack.open("globex")
    second = math.floor(clock.time())
    stack.store.table.put(
        {
            **keys.key(keys.outbox_pk(second, 0), keys.outbox_sk(second, "acme", "corrupt.0")),
            "orgId": S("acme"),
            "data": S('{"unitId": 7}\nnot json'),
            "expiresAt": N(second + 3600),
        }
    )
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    stack.publish_telemetry("globex", "dev-9", reading("g1", clock.iso()))

    report = stack.deliver()

    assert report.unreadable == 2
    assert units(stack.take(connection_id)) == ["u1"]
    assert units(stack.take(other_org)) == ["g1"]


# --- a connection that fails costs only itself ---------------------------------------------


def test_posts_throttled_for_everyone_are_retried_on_the_next_tick(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    first, second = stack.open("acme"), stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    posts.failing.add("*")  # API Gateway throttles every post

    failed = stack.deliver()
    assert (failed.fanout.posts_throttled, failed.fanout.messages_sent) == (2, 0)

    posts.failing.clear()
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    retried = stack.deliver()

    assert retried.fanout.messages_sent == 2  # one message each: u1 and u2 together
    for connection_id in (first, second):
        assert units(stack.take(connection_id)) == ["u1", "u2"]


def test_a_post_failing_for_one_connection_is_retried_for_it_alone(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    healthy, throttled = stack.open("acme"), stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    posts.failing.add(throttled)
    stack.deliver()
    posts.failing.clear()

    stack.deliver()

    assert units(stack.take(throttled)) == ["u1"]
    assert units(stack.take(healthy)) == ["u1"]  # once: no whole-tick redelivery


def test_a_connection_whose_posts_keep_failing_is_closed_and_forgotten(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    healthy, broken = stack.open("acme"), stack.open("acme")
    posts.failing.add(broken)
    posts.failure = ("InternalServerErrorException", 500)

    for unit in ("u1", "u2", "u3"):
        stack.publish_telemetry("acme", "dev-1", reading(unit, clock.iso()))
        stack.deliver()
        stack.settle()
    stack.deliver()
    stack.settle()  # the close itself runs in the background

    assert posts.deleted == [broken]  # its browser reconnects and resumes
    assert stack.store.connections.get(broken, clock.time()) is None
    assert units(stack.take(healthy)) == ["u1", "u2", "u3"]


def test_a_browser_that_stops_reading_delays_nobody_else_and_is_closed_once_stalled(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, FLUSH_TICK_POST_WAIT_SECONDS="0.2")
    healthy, stuck = stack.open("acme"), stack.open("acme")
    release = posts.hold(stuck)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))

    started = time.monotonic()
    first = stack.deliver()
    assert time.monotonic() - started < 5  # the tick did not wait for the stuck post
    assert first.connections == 2
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver()
    assert units(stack.take(healthy)) == ["u1", "u2"]  # on time, tick after tick

    clock.advance(stack.settings.flush_stalled_connection_seconds)
    stack.publish_telemetry("acme", "dev-1", reading("u3", clock.iso()))
    closing = stack.deliver()
    release.set()
    stack.deliver()

    assert closing.fanout.connections_closed == 1
    assert posts.deleted == [stuck]
    assert units(stack.take(healthy)) == ["u3"]


def test_a_store_failure_mid_tick_loses_nothing(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    failed = fail_operation(stack.store.client, "Query", "InternalServerError", 500, times=1)

    with pytest.raises(Exception, match="InternalServerError"):
        stack.deliver()
    assert len(failed) == 1
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver()

    assert units(stack.take(connection_id)) == ["u1", "u2"]
    assert stack.tick().readings == 0


def test_a_reading_queued_again_by_ingest_is_delivered_once(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    [entry] = outbox_entries(stack)
    stack.deliver()
    # Ingest queues an entry again when its write may have landed after the flush read
    # its second; a copy of something already delivered is dropped.
    stack.store.table.put(requeued(entry, math.floor(clock.time())))

    report = stack.deliver()

    assert (report.readings, report.duplicates_dropped) == (0, 1)
    assert units(stack.take(connection_id)) == ["u1"]


# --- the lease, the successor and crashes --------------------------------------------------


def test_a_second_flusher_cannot_take_the_lease(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    assert stack.deliver(owner="flusher-a").readings == 1

    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    refused = stack.deliver(owner="flusher-b")

    assert refused.lease_lost
    assert units(stack.take(connection_id)) == ["u1"]


def test_the_successor_takes_over_after_the_next_tick_with_no_second_missed_or_repeated(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    running, successor = stack.flusher("running"), stack.flusher("successor")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    before = [stack.deliver(owner="running")]

    assert successor.try_lease() is None
    assert successor.wait_as_successor()
    assert successor.poll_for_lease() is None  # not yet: the holder finishes its tick
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    last = stack.tick(owner="running")
    assert last.successor == "successor"
    assert running.hand_over("successor")
    assert successor.poll_for_lease() is not None
    stack.publish_telemetry("acme", "dev-1", reading("u3", clock.iso()))
    after = [stack.tick(owner="successor"), stack.tick(owner="successor")]

    handed = seconds_of([*before, last])
    taken = seconds_of(after)
    assert taken[0] == handed[-1] + 1
    assert units(stack.take(connection_id)) == ["u1", "u2", "u3"]
    assert stack.tick(owner="running").lease_lost


def test_copies_queued_around_a_hand_over_are_still_dropped(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    [entry] = outbox_entries(stack)
    stack.deliver(owner="running")
    successor = stack.flusher("successor")
    assert successor.wait_as_successor()
    stack.tick(owner="running")
    assert stack.flusher("running").hand_over("successor")
    assert successor.poll_for_lease() is not None

    stack.store.table.put(requeued(entry, math.floor(clock.time())))
    report = stack.deliver(owner="successor")

    assert report.duplicates_dropped == 1
    assert units(stack.take(connection_id)) == ["u1"]


def test_a_third_invocation_leaves_when_a_successor_already_waits(stack: InProcessStack, clock: FakeClock):
    stack.deliver(owner="running")
    assert stack.flusher("successor").wait_as_successor()

    reports = stack.flusher("third").run(keep_going=lambda: True)

    assert reports == []


def test_run_hands_over_at_the_tick_that_finds_the_successor_which_reads_nothing_new(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    stack.deliver(owner="running")
    successor = stack.flusher("successor")
    assert successor.wait_as_successor()
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))

    reports = stack.flusher("running").run(keep_going=lambda: True)

    assert reports[-1].successor == "successor"
    assert reports[-1].seconds == []
    assert reports[-1].readings == 0
    assert stack.take(connection_id) == [], "u1 is the successor's to deliver"
    assert successor.poll_for_lease() is not None
    stack.deliver(owner="successor")
    assert units(stack.take(connection_id)) == ["u1"]


def test_a_crashed_holder_is_replaced_once_its_lease_expires_and_nothing_is_lost(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, FLUSH_TICK_POST_WAIT_SECONDS="0.1")
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    stack.deliver(owner="crashing")
    release = posts.hold(connection_id)
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver(owner="crashing")  # its post of u2 never ends: the invocation died
    successor = stack.flusher("successor")
    assert successor.try_lease() is None
    release.set()

    clock.advance(stack.settings.flush_lease_seconds + 1)
    assert successor.try_lease() is not None
    stack.publish_telemetry("acme", "dev-1", reading("u3", clock.iso()))
    stack.deliver(owner="successor")

    received = units(stack.take(connection_id))
    # u2's post had not ended: the successor delivers its second again (at least once).
    assert (received[0], received[-1]) == ("u1", "u3")
    assert "u2" in received[1:]
    assert stack.tick(advance=0, owner="crashing").lease_lost


def test_each_tick_announces_the_seconds_it_reads_before_it_reads_them(
    stack: InProcessStack, clock: FakeClock
):
    announced_at_query: list[tuple[int, int | None]] = []
    store = stack.store

    def check(params: dict[str, Any], **_: Any) -> None:
        pk = params["ExpressionAttributeValues"][":pk"]["S"]
        if pk.startswith("OUTBOX#"):
            announced_at_query.append((int(pk.split("#")[1]), store.flush_state.read().read_through))

    store.client.meta.events.register("before-parameter-build.dynamodb.Query", check)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    stack.deliver()
    stack.tick()

    assert announced_at_query
    assert all(read is not None and read >= second for second, read in announced_at_query)


def test_tick_loop_starts_at_once_then_ticks_a_grace_after_each_second_and_at_once_after_a_slow_tick(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    origin = math.floor(clock.time())
    clock.set(datetime.fromtimestamp(origin + 0.5, UTC))
    flusher = stack.flusher()
    durations = iter([0.2, 0.3, 2.5, 0.1, 0.9, 0.2])  # the third tick overruns two grid points
    started: list[float] = []
    read: list[list[int]] = []
    real_tick = flusher.tick

    def timed_tick(now: float) -> TickReport:
        started.append(now)
        report = real_tick(now)
        read.append(report.seconds)
        clock.advance(next(durations))
        return report

    monkeypatch.setattr(flusher, "tick", timed_tick)
    grace = stack.settings.flush_grace_seconds

    reports = flusher.run(keep_going=lambda: clock.time() < origin + 6.5)

    assert len(reports) == 6
    # At once (its seconds are ready), then on the grid; the tick after the slow one at
    # once, not at the next grid point: what arrived meanwhile waits no second more.
    assert [t - origin for t in started] == pytest.approx(
        [0.5, 1 + grace, 2 + grace, 4.6, 5 + grace, 6 + grace], abs=1e-3
    )
    assert [seconds[-1] - origin for seconds in read] == [-1, 0, 1, 3, 4, 5]
    assert read[3] == [origin + 2, origin + 3]


def test_a_failing_tick_does_not_end_the_loop_and_loses_nothing(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    failed = fail_operation(
        stack.store.client,
        "UpdateItem",
        "InternalServerError",
        500,
        times=1,
        when=lambda params: "readThrough" in params.get("UpdateExpression", ""),
    )
    flusher = stack.flusher()
    origin = clock.time()

    reports = flusher.run(keep_going=lambda: clock.time() < origin + 4.5)

    assert len(failed) == 1
    assert reports[0] == TickReport()  # the failed tick is reported empty; the loop went on
    assert units(stack.take(connection_id)) == ["u1"]


def test_tick_loop_stops_when_the_lease_is_lost(stack: InProcessStack, clock: FakeClock):
    flusher = stack.flusher()
    origin = clock.time()
    ticks = 0

    def keep_going() -> bool:
        nonlocal ticks
        ticks += 1
        if ticks == 4:  # someone else took over (e.g. this invocation stalled past the lease)
            stack.store.flush_state.release(flusher.owner, delivered_through=None)
            assert stack.store.flush_state.acquire("usurper", clock.time(), 60)
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
    stack.reconfigure(monkeypatch, FLUSH_MAX_CATCH_UP_SECONDS="5", FLUSH_STOP_MARGIN_SECONDS="1")
    clock.set(datetime.fromtimestamp(time.time() - 3, UTC))
    stack.store.clock = time.time
    connection_id = stack.open("acme")
    stack.publish_telemetry(
        "acme", "dev-1", {"readings": [reading("u1", clock.iso(-1)), reading("u2", clock.iso())]}
    )
    # The invocation's first tick runs at once: let the second they were stored in end.
    stored_second_ends = math.floor(time.time()) + 1 + stack.settings.flush_grace_seconds
    time.sleep(max(0.0, stored_second_ends + 0.05 - time.time()))
    context = FakeLambdaContext(
        # Two ticks: the first reads them, the second finds nothing more.
        function_name="sensor-stream-flush",
        remaining_ms=countdown(50_000, 50_000, 50_000, 50_000, 1_000),
    )

    summary = flush.handler.lambda_handler(scheduled_event(), context)

    assert summary == {
        "shard": 0,
        "ticks": 2,
        "readings": 2,
        "messages": 1,
        "connectionsGone": 0,
        "connectionsClosed": 0,
        "commandsTimedOut": 0,
    }
    assert unit_readings(posts.received(connection_id)) == [("u1", clock.iso(-1)), ("u2", clock.iso())]
    # The lease was released: the next invocation can start at once.
    assert stack.store.flush_state.acquire("next-invocation", time.time(), 10)


def test_flush_handler_refuses_an_event_that_is_not_a_schedule(stack: InProcessStack):
    with pytest.raises(ValidationError):
        flush.handler.lambda_handler({"source": "aws.events"}, FakeLambdaContext())


@pytest.mark.parametrize("event", [{"flushShard": 0}, {"flushShard": "two"}, {"flushShard": 1, "extra": 1}])
def test_flush_handler_refuses_a_shard_event_it_did_not_send(stack: InProcessStack, event: dict[str, Any]):
    with pytest.raises(ValidationError):
        flush.handler.lambda_handler(event, FakeLambdaContext())


def test_flush_handler_runs_the_shard_it_is_started_for(stack: InProcessStack):
    from sensor_stream.coordination import ShardEvent

    # What shard 0's LambdaWorkerStarter sends, read back as the handler reads it.
    event = json.loads(ShardEvent(flush_shard=2).model_dump_json(by_alias=True))
    context = FakeLambdaContext(function_name="sensor-stream-flush", remaining_ms=countdown(50_000, 1_000))

    summary = flush.handler.lambda_handler(event, context)

    assert event == {"flushShard": 2}
    assert summary["shard"] == 2


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
    clock.advance(stack.settings.command_timeout_seconds)
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    posts.failing.add("*")

    failed = stack.deliver()  # the command is due and u2 is ready: every post fails

    assert (failed.commands_timed_out, failed.fanout.posts_throttled) == (1, 1)
    posts.failing.clear()
    stack.deliver()
    assert units(posts.received(connection_id)) == ["u1", "u2"]


def test_an_idle_tick_makes_one_request_and_the_lease_is_renewed_every_few_seconds(
    stack: InProcessStack, clock: FakeClock
):
    stack.open("acme")
    stack.deliver()
    calls = count_calls(stack.store.client)

    for _ in range(30):
        stack.tick()

    # One outbox query per tick (and shard: one by default, two in these tests); the lease
    # renewed (and progress recorded) every 10 s, on a tick of its own that reads nothing.
    shards = stack.settings.outbox_shards
    renewals = 30 // stack.settings.flush_renew_seconds
    assert calls["UpdateItem"] == renewals
    assert calls["Query"] == (30 - renewals) * shards
    assert sum(calls.values()) == (30 - renewals) * shards + renewals


def test_a_reading_after_an_idle_renewal_tick_is_delivered_on_the_next_tick(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    stack.deliver()
    flusher, renew_every = stack.flusher(), stack.settings.flush_renew_seconds
    for _ in range(2 * int(renew_every)):  # idle ticks up to the one that will renew the lease
        stack.tick()
        assert flusher._renewed_at is not None
        if clock.time() + 1 >= flusher._renewed_at + renew_every:
            break
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))

    renewal = stack.tick()
    following = stack.tick()

    assert renewal.seconds == []
    assert (following.readings, len(following.seconds)) == (1, 2)
    assert units(stack.take(connection_id)) == ["u1"]


def delivered_to_one_browser(stack: InProcessStack, clock: FakeClock) -> tuple[str, ConnectionRoster]:
    """A browser of acme that got a reading: the flusher knows acme's list."""
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    stack.deliver()
    return connection_id, stack.flusher().roster


def test_a_busy_tick_applies_the_changes_of_an_orgs_connections_without_reading_its_list(
    stack: InProcessStack, clock: FakeClock
):
    first, roster = delivered_to_one_browser(stack, clock)
    read_before, applied_before = roster.lists_read, roster.changes_applied

    for _ in range(3):  # nothing about acme's connections changes
        stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
        stack.deliver()
    unchanged = roster.changes_applied - applied_before
    second = stack.open("acme")  # a new connection: it gets the next tick
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver()
    stack.request(first, {"action": "subscribe", "unitIds": ["u3"]})  # a narrower subscription
    stack.take(first)
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver()
    stack.disconnect(second)
    stack.publish_telemetry("acme", "dev-1", reading("u3", clock.iso()))
    stack.deliver()

    assert unchanged == 0
    assert roster.lists_read == read_before, "each change came from the log, not the list"
    assert roster.changes_applied - applied_before >= 3  # connect, subscribe, disconnect
    assert units(stack.take(second)) == ["u2", "u2"]
    assert units(stack.take(first)) == ["u3"]


def test_a_change_missing_from_the_log_makes_the_flush_read_the_list_whole(
    stack: InProcessStack, clock: FakeClock
):
    first, roster = delivered_to_one_browser(stack, clock)
    read_before = roster.lists_read
    second = stack.open("acme")
    # As if the writer died between bumping the version and logging its change.
    version = stack.store.connections.list_versions(["acme"])["acme"]
    stack.store.table.delete(keys.org_connection_change_key("acme", version))

    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver()

    assert roster.lists_read == read_before + 1
    assert units(stack.take(first)) == ["u1", "u2"]
    assert units(stack.take(second)) == ["u2"]


def test_a_successor_reads_the_busy_orgs_connection_lists_before_it_takes_over(
    stack: InProcessStack, clock: FakeClock
):
    connections = {org: stack.open(org) for org in ("acme", "globex")}
    for org in connections:
        stack.publish_telemetry(org, "dev-1", reading("u1", clock.iso()))
    stack.deliver(owner="running")
    successor = stack.flusher("successor")

    successor.preload_roster()  # what _take_lease does before it asks for the lease
    preloaded = successor.roster.lists_read
    assert successor.wait_as_successor()
    for org in connections:
        stack.publish_telemetry(org, "dev-1", reading("u2", clock.iso()))
    assert stack.tick(owner="running").successor == "successor"
    assert stack.flusher("running").hand_over("successor")
    assert successor.poll_for_lease() is not None
    stack.deliver(owner="successor")

    assert preloaded == 2
    assert successor.roster.lists_read == preloaded, "its first tick read no list"
    for connection_id in connections.values():
        assert units(stack.take(connection_id)) == ["u1", "u2"]


def test_a_hand_over_posts_what_a_lane_still_holds_instead_of_closing_it(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    # A flush that is behind: the connection's post of u1 is still in flight when u2 is
    # read, so u2 waits in its lane at the hand-over. Posted before the lease passes, not
    # dropped with a close (whose resume would be bounded).
    stack.reconfigure(monkeypatch, FLUSH_TICK_POST_WAIT_SECONDS="0.05")
    connection_id = stack.open("acme")
    release = posts.hold(connection_id)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    stack.deliver(owner="running")
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver(owner="running")
    successor = stack.flusher("successor")
    assert successor.wait_as_successor()
    threading.Timer(0.3, release.set).start()  # the slow post ends during the hand-over

    assert stack.flusher("running").hand_over("successor")
    assert successor.poll_for_lease() is not None
    stack.publish_telemetry("acme", "dev-1", reading("u3", clock.iso()))
    stack.deliver(owner="successor")

    assert posts.deleted == []
    assert units(stack.take(connection_id)) == ["u1", "u2", "u3"]


def deliver_each(stack: InProcessStack, clock: FakeClock, unit_ids: list[str]) -> list[tuple[str, str]]:
    """A reading of each unit, each delivered by the flusher "running" on a tick of its own."""
    sent = []
    for unit in unit_ids:
        sent.append((unit, clock.iso()))
        stack.publish_telemetry("acme", "dev-1", reading(unit, sent[-1][1]))
        stack.deliver(owner="running")
    return sent


def hand_over_to_a_successor(stack: InProcessStack) -> Flusher:
    """The flusher "running" hands over to "successor" (which has not looked yet)."""
    successor = stack.flusher("successor")
    assert successor.wait_as_successor()
    assert stack.tick(owner="running").successor == "successor"
    assert stack.flusher("running").hand_over("successor")
    return successor


def one_posting_slot(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """One post at a time and short hand-over waits: a post that hangs leaves the other
    connections behind, and still behind when the lease passes."""
    stack.reconfigure(monkeypatch, FLUSH_POST_CONCURRENCY="1", FLUSH_TICK_POST_WAIT_SECONDS="0.05")
    monkeypatch.setattr(delivery, "HANDOVER_DRAIN_SECONDS", 0.2)
    monkeypatch.setattr(delivery, "HANDOVER_POST_END_SECONDS", 0.2)


def hang_the_posting_slot(stack: InProcessStack, posts: PostRecorder, owner: str) -> threading.Event:
    """A connection of unit u2 whose post hangs takes ``owner``'s one posting slot."""
    hanging = stack.open("acme", units=["u2"])
    release = posts.hold(hanging)
    stack.publish_telemetry("acme", "dev-1", reading("u2", stack.clock.iso()))
    stack.deliver(owner=owner)
    return release


def test_lanes_still_behind_after_the_drain_are_handed_to_the_successor_and_get_every_reading_once(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    # A flush that is behind: its one posting slot is held by a post that hangs, so what the
    # other connections wait for is still in their lanes when the drain ends. Those lanes are
    # handed over as the arrival second each waits from, not closed (a resume is bounded at
    # 1,000 readings): the successor posts those seconds to them before anything newer.
    one_posting_slot(stack, monkeypatch)
    hanging = stack.open("acme")
    whole_org = stack.open("acme")
    one_unit = stack.open("acme", units=["u1"])
    release = posts.hold(hanging)
    sent = deliver_each(stack, clock, ["u1", "u2", "u1"])

    successor = hand_over_to_a_successor(stack)
    release.set()
    stack.settle(owner="running")
    assert successor.poll_for_lease() is not None
    sent.append(("u2", clock.iso()))
    stack.publish_telemetry("acme", "dev-1", reading("u2", sent[-1][1]))
    report = stack.deliver(owner="successor")
    stack.settle(owner="successor")

    assert report.lanes_resumed == 2
    assert posts.deleted == [hanging]  # posting as the lease passed: closed after that post
    assert sorted(unit_readings(stack.take(whole_org))) == sorted(sent)
    assert unit_readings(stack.take(one_unit)) == [pair for pair in sent if pair[0] == "u1"]


def test_a_throttled_connection_is_handed_over_not_closed_and_gets_everything_once_throttling_ends(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    # At the account's post rate API Gateway answers 429: every minute's hand-over would
    # otherwise close each throttled connection (a wave of reconnects and bounded resumes).
    connection_id = stack.open("acme")
    posts.failing.add(connection_id)
    sent = deliver_each(stack, clock, ["u1", "u2", "u3"])

    successor = hand_over_to_a_successor(stack)
    assert successor.poll_for_lease() is not None
    posts.failing.discard(connection_id)
    report = stack.deliver(owner="successor")
    stack.settle(owner="successor")

    assert report.lanes_resumed == 1
    assert posts.deleted == []
    assert sorted(unit_readings(stack.take(connection_id))) == sorted(sent)


def test_a_handed_over_lane_gets_no_copy_of_a_reading_it_had_before_it_fell_behind(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    # A copy queued again (a late outbox write) in a second the lane waits from is dropped
    # by the predecessor, and again by the successor, which knows what was delivered before.
    one_posting_slot(stack, monkeypatch)
    watcher = stack.open("acme", units=["u1"])
    first = clock.iso()
    stack.publish_telemetry("acme", "dev-1", reading("u1", first))
    [entry] = outbox_entries(stack)
    stack.deliver(owner="running")
    stack.settle(owner="running")
    assert unit_readings(stack.take(watcher)) == [("u1", first)]
    release = hang_the_posting_slot(stack, posts, "running")
    second = clock.iso()
    stack.publish_telemetry("acme", "dev-1", reading("u1", second))
    stack.deliver(owner="running")  # the watcher falls behind
    stack.store.table.put(requeued(entry, math.floor(clock.time())))
    assert stack.deliver(owner="running").duplicates_dropped == 1

    successor = hand_over_to_a_successor(stack)
    release.set()
    assert successor.poll_for_lease() is not None
    report = stack.deliver(owner="successor")
    stack.settle(owner="successor")

    assert report.lanes_resumed == 1
    assert unit_readings(stack.take(watcher)) == [("u1", second)]


def test_a_lane_behind_across_two_hand_overs_gets_every_reading_once(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    # The successor is behind as well (its one slot hangs too): it hands the lane on, with
    # the digests of what the lane had before, which it got from its own predecessor.
    one_posting_slot(stack, monkeypatch)
    watcher = stack.open("acme", units=["u1"])
    sent = deliver_each(stack, clock, ["u1"])
    stack.settle(owner="running")
    releases = [hang_the_posting_slot(stack, posts, "running")]
    sent += deliver_each(stack, clock, ["u1", "u1"])
    first = hand_over_to_a_successor(stack)
    assert first.poll_for_lease() is not None
    releases.append(hang_the_posting_slot(stack, posts, "successor"))
    for _ in range(2):
        sent.append(("u1", clock.iso()))
        stack.publish_telemetry("acme", "dev-1", reading("u1", sent[-1][1]))
        assert stack.deliver(owner="successor").readings == 1
    second = stack.flusher("third")
    assert second.wait_as_successor()
    assert stack.tick(owner="successor").successor == "third"
    assert first.hand_over("third")
    for release in releases:
        release.set()
    assert second.poll_for_lease() is not None
    report = stack.deliver(owner="third")
    stack.settle(owner="third")

    # The watcher, and one of the two u2 connections (the other held the slot: closed).
    assert report.lanes_resumed == 2
    assert unit_readings(stack.take(watcher)) == sent


def test_a_hand_over_at_its_bounds_fits_one_item_and_reads_back_as_written(
    stack: InProcessStack, clock: FakeClock
):
    # The most digests and lanes a hand-over carries, with ids as long as API Gateway's
    # (16 characters) waiting from 30 different seconds: under DynamoDB's 400 KB an item.
    handover = Handover(
        recent=bytes(range(256)) * (8 * delivery.MAX_HANDOVER_DIGESTS // 256),
        lanes={f"L0SM9c{n:09d}=": 1_772_366_400 + n % 30 for n in range(delivery.MAX_HANDOVER_LANES)},
        newer_digests=12_345,
    )
    state = stack.store.flush_state
    assert state.acquire("running", clock.time(), 60) is not None
    assert state.wait_as_successor("successor", clock.time(), stale_after=60)

    assert state.hand_over("running", "successor", clock.time(), 60, delivered_through=1, handover=handover)

    [item] = [
        item
        for item in stack.store.client.scan(TableName=stack.settings.table_name)["Items"]
        if item["sk"]["S"].startswith("HANDOVER")
    ]
    assert item_size(item) < 400_000
    assert state.handed_over("successor") == handover
    assert state.handed_over("someone-else") == Handover()


def test_a_successor_that_dies_before_posting_the_lanes_handed_to_it_loses_none_of_them(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    # deliveredThrough stays before the handed lanes' seconds until they were posted: the
    # invocation that takes the expired lease starts there (a crash may repeat, not lose),
    # and the dead successor's doorbell, which it reads again, is not followed.
    one_posting_slot(stack, monkeypatch)
    # The lease (10 s here) expires within the catch-up window, read in one tick.
    stack.reconfigure(monkeypatch, FLUSH_MAX_CATCH_UP_SECONDS="30", FLUSH_MAX_SECONDS_PER_TICK="60")
    watcher = stack.open("acme", units=["u1"])
    release = hang_the_posting_slot(stack, posts, "running")
    sent = deliver_each(stack, clock, ["u1", "u1"])
    successor = hand_over_to_a_successor(stack)
    release.set()
    assert successor.poll_for_lease() is not None  # and dies before its first tick
    clock.advance(stack.settings.flush_lease_seconds + 1)

    for _ in range(3):
        assert stack.deliver(owner="third").successor is None  # the dead one's doorbell: stale
    stack.settle(owner="third")

    assert sorted(unit_readings(stack.take(watcher))) == sorted(sent)


def test_the_doorbell_of_a_successor_that_died_after_taking_over_does_not_stall_the_next(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    # The doorbell's second is read again after a hand-over; the invocation that takes the
    # lease after the successor died must not yield to it tick after tick.
    stack.reconfigure(monkeypatch, FLUSH_MAX_CATCH_UP_SECONDS="30", FLUSH_MAX_SECONDS_PER_TICK="60")
    connection_id = stack.open("acme")
    sent = deliver_each(stack, clock, ["u1"])
    successor = hand_over_to_a_successor(stack)
    assert successor.poll_for_lease() is not None  # and dies before its first tick
    clock.advance(stack.settings.flush_lease_seconds + 1)
    sent.append(("u2", clock.iso()))
    stack.publish_telemetry("acme", "dev-1", reading("u2", sent[-1][1]))

    reports = [stack.deliver(owner="next") for _ in range(2)]
    stack.settle(owner="next")

    assert [report.successor for report in reports] == [None, None]
    assert sorted(unit_readings(stack.take(connection_id))) == sorted(sent)


def a_large_tick(stack: InProcessStack, clock: FakeClock) -> list[str]:
    """Readings of one tick that take a whole-org connection several messages; their ids."""
    readings = [
        full_reading(f"unit-{i % 5}", clock.iso(-2 + i / 200), id=f"gw-{i:04d}-" + "r" * 40)
        for i in range(400)
    ]
    stack.post_readings(authorizer_claims("acme"), {"deviceId": "gateway-1", "readings": readings})
    return [r["id"] for r in readings]


@pytest.mark.parametrize("failure", [("LimitExceededException", 429), ("InternalServerErrorException", 500)])
def test_a_post_that_fails_part_way_is_retried_with_only_what_did_not_go_out(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, failure: tuple[str, int]
):
    connection = stack.open("acme")
    sent = a_large_tick(stack, clock)
    posts.failure = failure
    posts.failing_after[connection] = 2  # two messages go out, then the rest fail

    first = stack.deliver()
    del posts.failing_after[connection]
    retried = stack.deliver()

    assert first.fanout.messages_sent == 2
    assert retried.fanout.messages_sent >= 1
    received = [
        r.id
        for message in stack.take(connection)
        if isinstance(message, ReadingsBatchMessage)
        for b in message.batches
        for r in b.readings
    ]
    assert sorted(received) == sorted(sent), "each reading once: the two posted messages not again"
