"""hello with resume: the readings missed since a time are replayed after the connection
answer, marked ``replay: true``, within the token scope and bounded."""

from __future__ import annotations

from typing import Any

import pytest

from sensor_stream.models import ConnectionMessage, ReadingsBatchMessage
from tests.support.clock import FakeClock
from tests.support.readings import reading
from tests.support.stack import InProcessStack

pytestmark = pytest.mark.usefixtures("stack")


def replayed(messages: list[Any]) -> list[tuple[str, str]]:
    pairs = []
    for message in messages:
        assert isinstance(message, ReadingsBatchMessage)
        assert message.replay is True
        assert message.to_wire()["replay"] is True
        for batch in message.batches:
            pairs += [(r.unit_id, r.to_wire()["recordedAt"]) for r in batch.readings]
    return pairs


def test_resume_replays_what_was_missed_within_the_token_scope(stack: InProcessStack, clock: FakeClock):
    stack.publish_telemetry(
        "acme",
        "dev-1",
        {
            "readings": [
                reading("u1", clock.iso(-50)),
                reading("u1", clock.iso(-30)),
                reading("u2", clock.iso(-20)),
                reading("u3", clock.iso(-10)),
            ]
        },
    )
    stack.publish_telemetry("globex", "dev-9", reading("u1", clock.iso(-5)))
    connection_id = stack.open("acme", units=["u1", "u2"])

    answers = stack.request(
        connection_id, {"action": "hello", "requestId": "h", "resume": {"since": clock.iso(-50)}}
    )

    hello, *replay = answers
    assert isinstance(hello, ConnectionMessage)
    assert hello.request_id == "h"
    # "since" is exclusive: the client already has the reading recorded then.
    assert replayed(replay) == [("u1", clock.iso(-30)), ("u2", clock.iso(-20))]


def test_resume_follows_the_subscription(stack: InProcessStack, clock: FakeClock):
    stack.publish_telemetry("acme", "dev-1", {"readings": [reading(u, clock.iso(-5)) for u in ("u1", "u2")]})
    connection_id = stack.open("acme")
    stack.request(connection_id, {"action": "subscribe", "unitIds": ["u2"]})

    _, *replay = stack.request(connection_id, {"action": "hello", "resume": {"since": clock.iso(-60)}})

    assert replayed(replay) == [("u2", clock.iso(-5))]


def test_resume_with_nothing_missed_answers_only_the_connection(stack: InProcessStack, clock: FakeClock):
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso(-5)))
    connection_id = stack.open("acme")

    answers = stack.request(connection_id, {"action": "hello", "resume": {"since": clock.iso(-5)}})

    assert [type(a) for a in answers] == [ConnectionMessage]


def test_resume_replays_at_most_the_newest_resume_max_readings(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, RESUME_MAX_READINGS="4")
    stack.publish_telemetry(
        "acme", "dev-1", {"readings": [reading(f"u{i % 2}", clock.iso(-20 + i)) for i in range(10)]}
    )
    connection_id = stack.open("acme")

    _, *replay = stack.request(connection_id, {"action": "hello", "resume": {"since": clock.iso(-100)}})

    assert sorted(replayed(replay), key=lambda pair: pair[1]) == [
        ("u0", clock.iso(-14)),
        ("u1", clock.iso(-13)),
        ("u0", clock.iso(-12)),
        ("u1", clock.iso(-11)),
    ]


def test_resume_reaches_back_at_most_resume_max_seconds(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, RESUME_MAX_SECONDS="60")
    stack.publish_telemetry(
        "acme", "dev-1", {"readings": [reading("u1", clock.iso(-120)), reading("u1", clock.iso(-30))]}
    )
    connection_id = stack.open("acme")

    _, *replay = stack.request(connection_id, {"action": "hello", "resume": {"since": clock.iso(-3600)}})

    assert replayed(replay) == [("u1", clock.iso(-30))]


def test_live_batches_after_a_resume_are_not_marked_replay(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.request(connection_id, {"action": "hello", "resume": {"since": clock.iso(-60)}})
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))

    stack.deliver()

    [live] = stack.take(connection_id)
    assert isinstance(live, ReadingsBatchMessage)
    assert "replay" not in live.to_wire()
