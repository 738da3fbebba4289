"""A lane is closed as stalled when its connection has taken nothing for
FLUSH_STALLED_CONNECTION_SECONDS, not when it merely always has something waiting: on a
busy shard (or to a slow browser) each post may end after the next tick queued more, and
such a connection still takes a post every tick or two."""

from __future__ import annotations

from typing import Any

import pytest

from sensor_stream.models import ReadingsBatchMessage
from tests.support.clock import FakeClock
from tests.support.readings import reading
from tests.support.stack import InProcessStack
from tests.support.websocket import PostRecorder

pytestmark = pytest.mark.usefixtures("stack")


def recorded_at(messages: list[Any]) -> list[str]:
    return [
        r.to_wire()["recordedAt"]
        for message in messages
        if isinstance(message, ReadingsBatchMessage)
        for batch in message.batches
        for r in batch.readings
    ]


def test_a_connection_whose_posts_end_a_tick_late_is_not_closed_as_stalled(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, FLUSH_TICK_POST_WAIT_SECONDS="0.05")
    connection_id = stack.open("acme")
    sent = []
    ticks = 0
    while (
        ticks * (1 + stack.settings.flush_grace_seconds)
        <= 2 * stack.settings.flush_stalled_connection_seconds
    ):
        release = posts.hold(connection_id)
        for _ in range(2):  # the first tick's post ends only after the second queued more
            sent.append(clock.iso())
            stack.publish_telemetry("acme", "dev-1", reading("u1", sent[-1]))
            stack.deliver()
            ticks += 1
        release.set()
        stack.settle()
    stack.deliver()
    stack.settle()

    assert posts.deleted == []
    assert recorded_at(stack.take(connection_id)) == sent


def test_a_connection_throttled_for_longer_than_the_stall_limit_is_kept_and_gets_everything(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    # At the account's post rate API Gateway answers 429 at once: that is not the browser's
    # fault, and closing it would only add a reconnect to the load.
    connection_id = stack.open("acme")
    posts.failing.add(connection_id)
    sent = []
    for _ in range(2 * round(stack.settings.flush_stalled_connection_seconds)):
        sent.append(clock.iso())
        stack.publish_telemetry("acme", "dev-1", reading("u1", sent[-1]))
        stack.deliver()
    posts.failing.discard(connection_id)
    stack.deliver()
    stack.settle()

    assert posts.deleted == []
    assert len(posts.refused) >= 2 * stack.settings.flush_stalled_connection_seconds - 1
    assert recorded_at(stack.take(connection_id)) == sent


def test_a_connection_whose_posts_wait_behind_other_connections_posts_is_not_closed(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    # One posting thread, taken by a connection whose post hangs: the other connection's
    # posts wait in the flush's own queue. The flush is behind, not that browser: it must
    # get everything later, not be closed as stalled.
    stack.reconfigure(monkeypatch, FLUSH_POST_CONCURRENCY="1", FLUSH_TICK_POST_WAIT_SECONDS="0.05")
    hanging = stack.open("acme")
    waiting = stack.open("acme")
    release = posts.hold(hanging)
    sent = []
    for _ in range(2 * round(stack.settings.flush_stalled_connection_seconds)):
        sent.append(clock.iso())
        stack.publish_telemetry("acme", "dev-1", reading("u1", sent[-1]))
        stack.deliver()
    release.set()
    stack.settle()
    stack.deliver()
    stack.settle()

    assert hanging in posts.deleted  # its own post hung: that one is stalled
    assert waiting not in posts.deleted
    assert recorded_at(stack.take(waiting)) == sent


def test_a_lane_closed_while_its_post_is_in_flight_gets_that_post_before_its_connection_closes(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder, monkeypatch: pytest.MonkeyPatch
):
    # A hand-over past its drain closes the lanes still posting: their browsers resume, but
    # what a post already took must not be cut off by the close, nor by the invocation's end.
    stack.reconfigure(monkeypatch, FLUSH_TICK_POST_WAIT_SECONDS="0.05")
    connection_id = stack.open("acme")
    release = posts.hold(connection_id)
    sent = clock.iso()
    stack.publish_telemetry("acme", "dev-1", reading("u1", sent))
    stack.deliver()
    fanout = stack.flusher().fanout

    fanout.abandon_in_flight()
    assert posts.deleted == []  # not while its post is in flight
    release.set()
    fanout.close()  # as the invocation ends: its posts and closes end first

    assert recorded_at(stack.take(connection_id)) == [sent]
    assert posts.deleted == [connection_id]
