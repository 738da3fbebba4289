"""The whole data path in-process: IoT and HTTP events in, flush ticks, and exactly what
each WebSocket connection received."""

from __future__ import annotations

from typing import Any

import pytest

from sensor_stream.gateway import MAX_MESSAGE_BYTES
from sensor_stream.models import ReadingsBatchMessage
from tests.support.clock import FakeClock
from tests.support.events import authorizer_claims
from tests.support.readings import full_reading, reading
from tests.support.stack import InProcessStack
from tests.support.websocket import PostRecorder

pytestmark = pytest.mark.usefixtures("stack")


def readings_of(messages: list[Any]) -> list[tuple[str, str]]:
    """(unitId, recordedAt) of every delivered reading, in delivery order; every message
    must be a live (not replayed) batch."""
    pairs = []
    for message in messages:
        assert isinstance(message, ReadingsBatchMessage)
        assert message.replay is None
        for batch in message.batches:
            pairs += [(r.unit_id, r.to_wire()["recordedAt"]) for r in batch.readings]
    return pairs


def units_of(messages: list[Any]) -> list[str]:
    return [unit for unit, _ in readings_of(messages)]


# --- isolation and scope -----------------------------------------------------------------------


def test_readings_reach_only_their_own_org(stack: InProcessStack, clock: FakeClock):
    acme, globex = stack.open("acme"), stack.open("globex")
    # Both orgs happen to name a unit the same.
    stack.publish_telemetry("acme", "dev-1", reading("fridge-1", clock.iso(-2), temperature=1))
    stack.post_readings(
        authorizer_claims("globex"),
        {
            "deviceId": "gw",
            "readings": [reading("fridge-1", clock.iso(-1), temperature=2), reading("g1", clock.iso())],
        },
    )

    stack.deliver()

    [to_acme] = stack.take(acme)
    [to_globex] = stack.take(globex)
    assert isinstance(to_acme, ReadingsBatchMessage)
    assert isinstance(to_globex, ReadingsBatchMessage)
    assert [(r.unit_id, r.device_id, r.temperature) for b in to_acme.batches for r in b.readings] == [
        ("fridge-1", "dev-1", 1)
    ]
    assert [(r.unit_id, r.device_id, r.temperature) for b in to_globex.batches for r in b.readings] == [
        ("fridge-1", "gw", 2),
        ("g1", "gw", 21.5),
    ]


def test_get_latest_of_another_orgs_unit_reveals_nothing(stack: InProcessStack, clock: FakeClock):
    stack.publish_telemetry("globex", "dev-9", reading("g-unit", clock.iso()))
    stack.publish_telemetry("globex", "dev-9", reading("fridge-1", clock.iso(), temperature=9))
    stack.publish_telemetry("acme", "dev-1", reading("fridge-1", clock.iso(-60), temperature=1))
    acme = stack.open("acme")

    [unknown] = stack.request(acme, {"action": "getLatest", "unitId": "g-unit"})
    [own] = stack.request(acme, {"action": "getLatest", "unitId": "fridge-1"})

    assert unknown.to_wire() == {"type": "latest", "unitId": "g-unit", "reading": None}
    assert own.to_wire()["reading"]["temperature"] == 1


def test_command_to_another_orgs_device_is_not_found(stack: InProcessStack, clock: FakeClock):
    stack.publish_telemetry("globex", "dev-9", reading("g-unit", clock.iso()))
    acme = stack.open("acme")

    [answer] = stack.request(acme, {"action": "sendCommand", "deviceId": "dev-9", "command": "reboot"})

    assert answer.to_wire() == {
        "type": "error",
        "error": {"code": "not_found", "message": "device 'dev-9' is not known in your organization"},
    }
    assert stack.published_commands() == []


def test_units_claim_limits_delivery(stack: InProcessStack, clock: FakeClock):
    everything, limited = stack.open("acme"), stack.open("acme", units=["u1", "u3"])
    stack.publish_telemetry(
        "acme",
        "dev-1",
        {"readings": [reading(u, clock.iso(-1), siteId="site-a") for u in ("u1", "u2", "u3")]},
    )

    stack.deliver()

    assert units_of(stack.take(everything)) == ["u1", "u2", "u3"]
    assert units_of(stack.take(limited)) == ["u1", "u3"]


def test_site_subscription_never_widens_the_units_claim(stack: InProcessStack, clock: FakeClock):
    limited = stack.open("acme", units=["u1"])
    stack.request(limited, {"action": "subscribe", "siteIds": ["site-a"]})
    stack.publish_telemetry(
        "acme", "dev-1", {"readings": [reading(u, clock.iso(), siteId="site-a") for u in ("u1", "u2")]}
    )

    stack.deliver()

    assert units_of(stack.take(limited)) == ["u1"]


def test_subscribe_outside_the_units_claim_is_forbidden_and_changes_nothing(
    stack: InProcessStack, clock: FakeClock
):
    limited = stack.open("acme", units=["u1"])

    [refusal] = stack.request(limited, {"action": "subscribe", "unitIds": ["u2"], "requestId": "s"})
    stack.publish_telemetry("acme", "dev-1", {"readings": [reading(u, clock.iso()) for u in ("u1", "u2")]})
    stack.deliver()

    assert refusal.to_wire() == {
        "type": "error",
        "requestId": "s",
        "error": {"code": "forbidden", "message": "your token does not allow units u2"},
    }
    assert units_of(stack.take(limited)) == ["u1"]


# --- subscriptions -----------------------------------------------------------------------------


def test_subscription_narrowing_and_unsubscribe(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    bystander = stack.open("acme")

    def deliver_one_of_each() -> list[str]:
        stack.publish_telemetry(
            "acme",
            "dev-1",
            {
                "readings": [
                    reading("u1", clock.iso(), siteId="s1"),
                    reading("u2", clock.iso(), siteId="s2"),
                    reading("u3", clock.iso()),
                ]
            },
        )
        stack.deliver()
        assert units_of(stack.take(bystander)) == ["u1", "u2", "u3"]
        return units_of(stack.take(connection_id))

    assert deliver_one_of_each() == ["u1", "u2", "u3"]
    stack.request(connection_id, {"action": "subscribe", "unitIds": ["u1"]})
    assert deliver_one_of_each() == ["u1"]
    stack.request(connection_id, {"action": "subscribe", "siteIds": ["s2"]})
    assert deliver_one_of_each() == ["u1", "u2"]
    stack.request(connection_id, {"action": "unsubscribe", "unitIds": ["u1"]})
    assert deliver_one_of_each() == ["u2"]
    stack.request(connection_id, {"action": "unsubscribe"})
    assert deliver_one_of_each() == []
    stack.request(connection_id, {"action": "subscribe", "scope": "org"})
    assert deliver_one_of_each() == ["u1", "u2", "u3"]


def test_disconnected_connection_gets_nothing(stack: InProcessStack, clock: FakeClock, posts: PostRecorder):
    leaving, staying = stack.open("acme"), stack.open("acme")
    stack.disconnect(leaving)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))

    assert stack.deliver().fanout.messages_sent == 1

    assert posts.connection_ids() == {staying}


def test_expired_connection_gets_nothing(stack: InProcessStack, clock: FakeClock, posts: PostRecorder):
    # $disconnect never came; the record's expiry (TTL, deleted lazily) still counts.
    stale = stack.open("acme")
    clock.advance(stack.settings.connection_ttl_seconds + 1)
    fresh = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))

    stack.deliver()

    assert posts.connection_ids() == {fresh}
    assert stale not in posts.connection_ids()


# --- delivery guarantees -----------------------------------------------------------------------


def test_gone_connection_is_deleted_and_the_others_still_get_their_readings(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    gone, alive = stack.open("acme"), stack.open("acme")
    posts.gone.add(gone)  # the browser went away without $disconnect
    clock.advance(stack.settings.connect_grace_seconds)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))

    report = stack.deliver()

    assert (report.fanout.connections_gone, report.fanout.messages_sent) == (1, 1)
    assert stack.store.connections.get(gone, clock.time()) is None
    assert [c.connection_id for c in stack.store.connections.of_org("acme", clock.time())] == [alive]
    assert units_of(stack.take(alive)) == ["u1"]

    refused_before = len(posts.refused)
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver()
    assert len(posts.refused) == refused_before  # no further post to the gone connection
    assert units_of(stack.take(alive)) == ["u2"]


def test_410_right_after_connect_is_a_handshake_in_progress_not_a_gone_connection(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    # API Gateway answers 410 to posts until the $connect handshake has completed.
    connecting = stack.open("acme")
    posts.gone.add(connecting)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))

    report = stack.deliver()

    assert report.fanout.connections_gone == 0
    assert stack.store.connections.get(connecting, clock.time()) is not None
    posts.gone.discard(connecting)  # the handshake completed
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    stack.deliver()
    # What the refused post carried is retried, not lost to this browser.
    assert units_of(stack.take(connecting)) == ["u1", "u2"]


def test_a_young_connection_that_stays_gone_past_the_handshake_grace_is_deleted(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    vanished = stack.open("acme")  # the browser went away before its handshake completed
    posts.gone.add(vanished)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    assert stack.deliver().fanout.connections_gone == 0

    clock.advance(stack.settings.connect_grace_seconds)
    report = stack.deliver()

    assert report.fanout.connections_gone == 1
    assert stack.store.connections.get(vanished, clock.time()) is None


def test_redelivered_iot_message_is_stored_once_and_delivered_once(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    message = {"readings": [reading("u1", clock.iso(-2)), reading("u2", clock.iso(-1))]}

    stack.publish_telemetry("acme", "dev-1", message)
    stack.publish_telemetry("acme", "dev-1", message)  # IoT retried before the tick
    stack.deliver()
    stack.publish_telemetry("acme", "dev-1", message)  # and once more after it
    stack.deliver()
    stack.deliver()

    assert units_of(stack.take(connection_id)) == ["u1", "u2"]


def test_http_duplicates_are_counted_and_delivered_once(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    body = {
        "deviceId": "gw",
        "readings": [reading("u1", clock.iso(-1), id="gw-1"), reading("u1", clock.iso(), id="gw-2")],
    }

    assert stack.post_readings(authorizer_claims("acme"), body) == (200, {"accepted": 2, "duplicates": 0})
    assert stack.post_readings(authorizer_claims("acme"), body) == (200, {"accepted": 0, "duplicates": 2})
    stack.deliver()
    stack.deliver()

    [message] = stack.take(connection_id)
    assert isinstance(message, ReadingsBatchMessage)
    assert [r.id for batch in message.batches for r in batch.readings] == ["gw-1", "gw-2"]


def test_readings_are_ordered_by_recorded_at_per_unit_whatever_the_arrival_order(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso(-1)))
    clock.advance(0.5)
    stack.post_readings(
        authorizer_claims("acme"),
        {"deviceId": "gw", "readings": [reading("u1", clock.iso(-30)), reading("u0", clock.iso(-20))]},
    )
    stack.publish_telemetry("acme", "dev-2", reading("u1", clock.iso(-10)))
    expected = [
        ("u0", clock.iso(-20)),
        ("u1", clock.iso(-30)),
        ("u1", clock.iso(-10)),
        ("u1", clock.iso(-1.5)),
    ]

    stack.deliver()

    [message] = stack.take(connection_id)
    assert readings_of([message]) == expected


def test_a_large_tick_is_split_under_32_kb_each_reading_once_in_order(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    connection_id = stack.open("acme")
    readings = [
        full_reading(
            f"refrigerated-unit-{i % 3:02d}", clock.iso(-300 + (i * 7919) % 150), id=f"gw-{i:04d}-" + "r" * 40
        )
        for i in range(150)
    ]
    stack.post_readings(
        authorizer_claims("acme"), {"deviceId": "gateway-with-a-long-name", "readings": readings}
    )

    report = stack.deliver()

    frames = posts.frames(connection_id)
    assert report.fanout.messages_sent == len(frames) > 1
    assert max(len(frame) for frame in frames) <= MAX_MESSAGE_BYTES
    delivered = readings_of(stack.take(connection_id))
    assert sorted(delivered) == sorted((r["unitId"], r["recordedAt"]) for r in readings)
    for unit in {u for u, _ in delivered}:
        times = [t for u, t in delivered if u == unit]
        assert times == sorted(times)
