"""hello with resume: the readings that arrived since a time are replayed after the
connection answer, marked ``replay: true``, within the token scope and bounded."""

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


def test_resume_replays_what_arrived_since_within_the_token_scope(stack: InProcessStack, clock: FakeClock):
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso(-50)))
    clock.advance(10)
    since = clock.iso()
    clock.advance(1)
    stack.publish_telemetry(
        "acme",
        "dev-1",
        {
            "readings": [
                reading("u1", clock.iso(-30)),
                reading("u2", clock.iso(-20)),
                reading("u3", clock.iso(-10)),
            ]
        },
    )
    stack.publish_telemetry("globex", "dev-9", reading("u1", clock.iso(-5)))
    connection_id = stack.open("acme", units=["u1", "u2"])

    answers = stack.request(connection_id, {"action": "hello", "requestId": "h", "resume": {"since": since}})

    hello, *replay = answers
    assert isinstance(hello, ConnectionMessage)
    assert hello.request_id == "h"
    # What arrived after `since`, whenever it was recorded; u3 is outside the token's units.
    assert replayed(replay) == [("u1", clock.iso(-30)), ("u2", clock.iso(-20))]


def test_a_late_reading_that_arrived_while_the_browser_was_away_is_replayed(
    stack: InProcessStack, clock: FakeClock
):
    connection_id = stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso(), id="seen"))
    stack.deliver()
    [seen] = [r for m in stack.take(connection_id) for b in m.batches for r in b.readings]  # type: ignore[union-attr]
    # The browser drops; a device that was offline sends a reading recorded a minute ago.
    clock.advance(2)
    stack.publish_telemetry("acme", "dev-2", reading("u2", clock.iso(-60), id="late"))

    _, *replay = stack.request(
        connection_id, {"action": "hello", "resume": {"since": seen.to_wire()["receivedAt"]}}
    )

    assert [r.id for m in replay for b in m.batches for r in b.readings] == ["late"]  # type: ignore[union-attr]


def test_resume_follows_the_subscription(stack: InProcessStack, clock: FakeClock):
    since = clock.iso(-1)
    stack.publish_telemetry("acme", "dev-1", {"readings": [reading(u, clock.iso(-5)) for u in ("u1", "u2")]})
    connection_id = stack.open("acme")
    stack.request(connection_id, {"action": "subscribe", "unitIds": ["u2"]})

    _, *replay = stack.request(connection_id, {"action": "hello", "resume": {"since": since}})

    assert replayed(replay) == [("u2", clock.iso(-5))]


def test_resume_with_nothing_missed_answers_only_the_connection(stack: InProcessStack, clock: FakeClock):
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso(-5)))
    connection_id = stack.open("acme")

    answers = stack.request(connection_id, {"action": "hello", "resume": {"since": clock.iso()}})

    assert [type(a) for a in answers] == [ConnectionMessage]


def test_resume_replays_at_most_the_newest_resume_max_readings(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, RESUME_MAX_READINGS="4")
    since = clock.iso()
    sent = []
    for i in range(10):
        clock.advance(0.5)
        sent.append((f"u{i % 2}", clock.iso(-100 + i)))
        stack.publish_telemetry("acme", "dev-1", reading(*sent[-1]))
    connection_id = stack.open("acme")

    _, *replay = stack.request(connection_id, {"action": "hello", "resume": {"since": since}})

    # The four that arrived last.
    assert sorted(replayed(replay), key=lambda pair: pair[1]) == sent[-4:]


def test_resume_reaches_back_at_most_resume_max_seconds(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, RESUME_MAX_SECONDS="60")
    since = clock.iso()
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    clock.advance(90)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    connection_id = stack.open("acme")

    _, *replay = stack.request(connection_id, {"action": "hello", "resume": {"since": since}})

    assert replayed(replay) == [("u1", clock.iso())]


def test_live_batches_after_a_resume_are_not_marked_replay(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.request(connection_id, {"action": "hello", "resume": {"since": clock.iso(-60)}})
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))

    stack.deliver()

    [live] = stack.take(connection_id)
    assert isinstance(live, ReadingsBatchMessage)
    assert "replay" not in live.to_wire()
