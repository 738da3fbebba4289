"""How ingest queues readings for the flush: the arrival second is taken when the outbox
write happens, a write the flush may have missed is queued again, a redelivery recovers
what a failed attempt did not queue, and copies reach each browser once."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from benchmarks.request_counts import WRITES
from sensor_stream.models import ReadingsBatchMessage
from tests.support.botocore_hooks import before_call_event, count_calls, fail_operation
from tests.support.clock import FakeClock
from tests.support.events import authorizer_claims
from tests.support.readings import reading
from tests.support.stack import InProcessStack

pytestmark = pytest.mark.usefixtures("stack")


def reading_ids(messages: list[Any]) -> list[str]:
    return [
        r.id
        for message in messages
        if isinstance(message, ReadingsBatchMessage)
        for batch in message.batches
        for r in batch.readings
    ]


def write_requests(calls: dict[str, int]) -> int:
    return sum(calls.get(name, 0) for name in WRITES)


def before_outbox_write(stack: InProcessStack, action: Any, times: int = 1) -> list[int]:
    """Run ``action()`` just before the next ``times`` BatchWriteItem calls are sent."""
    ran: list[int] = []

    def hook(**_: Any) -> None:
        if len(ran) < times:
            ran.append(1)
            action()

    stack.store.client.meta.events.register(before_call_event(stack.store.client, "BatchWriteItem"), hook)
    return ran


# --- cost ----------------------------------------------------------------------------------


def test_a_single_reading_message_costs_two_write_requests(stack: InProcessStack, clock: FakeClock):
    calls = count_calls(stack.store.client)

    for second in range(5):
        stack.publish_telemetry("acme", "dev-1", reading(f"u{second % 2}", clock.iso()))
        clock.advance(1)

    # The history put, and one batch with the outbox entry (and, on first sight, the
    # device and unit registry items).
    assert write_requests(calls) == 5 * 2
    assert calls["BatchWriteItem"] == 5


def test_a_message_of_ten_readings_costs_two_write_requests(stack: InProcessStack, clock: FakeClock):
    calls = count_calls(stack.store.client)

    stack.publish_telemetry(
        "acme", "dev-1", {"readings": [reading(f"u{i}", clock.iso(-i)) for i in range(10)]}
    )

    # The ten history items as PartiQL INSERTs in one request, then the outbox batch.
    assert write_requests(calls) == 2
    assert calls["BatchExecuteStatement"] == 1


def test_a_request_of_sixty_readings_inserts_them_twenty_five_to_a_request(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    calls = count_calls(stack.store.client)

    body = {"deviceId": "gw-1", "readings": [reading("u1", clock.iso(-i), id=f"r{i}") for i in range(60)]}
    assert stack.post_readings(authorizer_claims("acme"), body) == (200, {"accepted": 60, "duplicates": 0})
    stack.deliver()

    assert calls["BatchExecuteStatement"] == 3
    assert sorted(reading_ids(stack.take(connection_id))) == sorted(f"r{i}" for i in range(60))


def test_readings_of_a_message_already_stored_are_duplicates_and_only_the_new_ones_go_out(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    earlier = [reading("u1", clock.iso(-i), id=f"m{i}", temperature=float(i)) for i in range(4)]
    stack.publish_telemetry("acme", "dev-1", {"readings": earlier})
    stack.deliver()
    assert sorted(reading_ids(stack.take(connection_id))) == ["m0", "m1", "m2", "m3"]
    clock.advance(1)

    # Six new readings and the four again, one with another value: the first write wins.
    changed = [{**earlier[0], "temperature": 99.0}, *earlier[1:]]
    fresh = [reading("u1", clock.iso(-i), id=f"n{i}") for i in range(6)]
    outcome = stack.publish_telemetry("acme", "dev-1", {"readings": fresh + changed})
    stack.deliver()

    assert outcome == {"stored": 6, "duplicates": 4, "quarantined": 0}
    assert sorted(reading_ids(stack.take(connection_id))) == [f"n{i}" for i in range(6)]
    stored = stack.store.readings.between("acme", "u1", clock.now() - timedelta(hours=1), clock.now(), 20)
    assert {r.id: r.temperature for r in stored}["m0"] == 0.0


def test_a_units_registry_item_goes_out_with_each_message_and_its_device_every_few_minutes(
    stack: InProcessStack, clock: FakeClock
):
    batches: list[int] = []

    def remember(params: dict[str, Any], **_: Any) -> None:
        batches.append(len(next(iter(params["RequestItems"].values()))))

    stack.store.client.meta.events.register("before-parameter-build.dynamodb.BatchWriteItem", remember)

    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    clock.advance(60)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    clock.advance(stack.settings.registry_refresh_seconds)
    stack.publish_telemetry(
        "acme", "dev-1", {"readings": [reading("u1", clock.iso()), reading("u2", clock.iso())]}
    )

    # entry + device + unit, then entry + unit, then entry + device + both units: all in
    # the one batch write of each message.
    assert batches == [3, 2, 4]
    units = stack.store.readings.units_seen("acme")
    assert [(u.unit_id, u.device_id, u.last_seen_at) for u in units] == [
        ("u1", "dev-1", clock.now()),
        ("u2", "dev-1", clock.now()),
    ]


# --- the arrival second is taken at write time --------------------------------------------


def test_a_500_reading_request_delivers_every_reading_even_when_the_flush_reads_meanwhile(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    readings = [reading(f"u{i % 20}", clock.iso(-i * 0.01), id=f"r-{i:03d}") for i in range(500)]
    # The request's puts take seconds; the flush ticks before its outbox write is sent.
    clock_during_puts = iter(range(10_000))

    def slow_put(**_: Any) -> None:
        if next(clock_during_puts) % 100 == 99:
            clock.advance(1)

    stack.store.client.meta.events.register(before_call_event(stack.store.client, "PutItem"), slow_put)
    before_outbox_write(stack, lambda: stack.tick(advance=0.5))

    status, body = stack.post_readings(authorizer_claims("acme"), {"deviceId": "gw-1", "readings": readings})
    stack.deliver()

    assert (status, body) == (200, {"accepted": 500, "duplicates": 0})
    delivered = reading_ids(stack.take(connection_id))
    assert sorted(delivered) == sorted(r["id"] for r in readings)


def test_a_write_that_lands_after_the_flush_read_its_second_is_queued_again(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    clock.set(datetime.fromtimestamp(math.floor(clock.time()) + 0.5, UTC))
    stack.deliver()
    calls = count_calls(stack.store.client)

    def flush_reads_first() -> None:
        # The write is still on its way when its second ends and the flush reads it.
        clock.advance(1.5)
        stack.tick(advance=0)

    before_outbox_write(stack, flush_reads_first)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso(), id="late-1"))
    stack.deliver()

    assert reading_ids(stack.take(connection_id)) == ["late-1"]
    assert calls["BatchWriteItem"] == 2  # written, then queued again


def test_a_slow_write_is_not_queued_again_while_the_flush_has_not_read_its_second(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    clock.set(datetime.fromtimestamp(math.floor(clock.time()) + 0.5, UTC))
    calls = count_calls(stack.store.client)

    before_outbox_write(stack, lambda: clock.advance(1.5))  # slow, but the flush fell behind
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso(), id="slow-1"))
    stack.deliver()

    assert reading_ids(stack.take(connection_id)) == ["slow-1"]
    assert calls["BatchWriteItem"] == 1


# --- redeliveries --------------------------------------------------------------------------


def test_the_same_message_from_two_clients_at_once_is_stored_once_and_delivered_once(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    message = reading("u1", clock.iso(), id="twice-1")
    outcomes: list[dict[str, Any]] = []
    # The copy arrives between the first attempt's history put and its outbox write.
    before_outbox_write(stack, lambda: outcomes.append(stack.publish_telemetry("acme", "dev-1", message)))

    first = stack.publish_telemetry("acme", "dev-1", message)
    stack.deliver()
    stack.deliver()

    assert first["stored"] + outcomes[0]["stored"] == 1
    assert reading_ids(stack.take(connection_id)) == ["twice-1"]


def test_a_redelivery_queues_what_a_failed_attempt_stored_but_did_not_queue(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    message = {"readings": [reading("u1", clock.iso(), id="lost-1"), reading("u2", clock.iso(), id="lost-2")]}
    fail_operation(stack.store.client, "BatchWriteItem", "InternalServerError", 500, times=1)

    with pytest.raises(Exception, match="InternalServerError"):
        stack.publish_telemetry("acme", "dev-1", message)  # IoT retries the invocation
    clock.advance(60)
    retried = stack.publish_telemetry("acme", "dev-1", message)
    stack.deliver()

    assert retried == {"stored": 0, "duplicates": 2, "quarantined": 0}
    assert sorted(reading_ids(stack.take(connection_id))) == ["lost-1", "lost-2"]

    # A third delivery finds them queued (by the second) and queues nothing.
    calls = count_calls(stack.store.client)
    stack.publish_telemetry("acme", "dev-1", message)
    assert write_requests(calls) == 1  # the two refused history inserts, in one request
    stack.deliver()
    assert reading_ids(stack.take(connection_id)) == []


def test_a_redelivery_of_a_queued_message_queues_nothing(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    message = reading("u1", clock.iso(), id="once-1")
    stack.publish_telemetry("acme", "dev-1", message)
    stack.deliver()
    calls = count_calls(stack.store.client)

    clock.advance(30)
    assert stack.publish_telemetry("acme", "dev-1", message)["duplicates"] == 1

    assert write_requests(calls) == 1
    assert calls["BatchGetItem"] == 1  # whether the first attempt queued it
    stack.deliver()
    assert reading_ids(stack.take(connection_id)) == ["once-1"]


def test_a_redelivery_long_after_the_first_attempt_is_not_delivered_live_again(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    message = reading("u1", clock.iso(), id="old-1")
    fail_operation(stack.store.client, "BatchWriteItem", "InternalServerError", 500, times=1)
    with pytest.raises(Exception, match="InternalServerError"):
        stack.publish_telemetry("acme", "dev-1", message)
    clock.advance(stack.settings.recovery_window_seconds + 1)
    calls = count_calls(stack.store.client)

    stack.publish_telemetry("acme", "dev-1", message)
    assert calls["BatchGetItem"] == 0
    stack.deliver()

    assert reading_ids(stack.take(connection_id)) == []
    # Stored all the same: a resume or the history still has it.
    stored = stack.store.readings.between("acme", "u1", clock.now() - timedelta(hours=1), clock.now(), 10)
    assert [r.id for r in stored] == ["old-1"]
