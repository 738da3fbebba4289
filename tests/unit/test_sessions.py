"""A WebSocket session under concurrency and abuse: concurrent changes of one connection,
bounded selections, per-connection request throttling, a session that ends with its
token unless refreshed, and a resume whose work is bounded."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from sensor_stream.models import ConnectionMessage, ReadingsBatchMessage
from sensor_stream.store.connections import _LocalWindows
from tests.support.botocore_hooks import count_calls
from tests.support.clock import FakeClock
from tests.support.readings import reading
from tests.support.stack import InProcessStack
from tests.support.tokens import subprotocol_header
from tests.support.websocket import PostRecorder, wire
from tests.support.websocket import error_answer as error

pytestmark = pytest.mark.usefixtures("stack")


def first_put_of_a_connection_record(stack: InProcessStack, action: Any) -> None:
    """Run ``action()`` just before the next save of a connection record is sent."""
    done: list[bool] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if not done and params.get("Item", {}).get("pk", {}).get("S", "").startswith("CONN#"):
            done.append(True)
            action()

    stack.store.client.meta.events.register("before-parameter-build.dynamodb.PutItem", hook)


# --- concurrent requests of one connection -------------------------------------------------


def test_concurrent_subscribes_of_one_connection_lose_nothing(stack: InProcessStack):
    connection_id = stack.open("acme")
    stack.request(connection_id, {"action": "subscribe", "unitIds": ["u0"]})
    # Each subscribe's save is overtaken by another one that read the same record.
    pending = [f"u{i}" for i in range(1, 20)]

    def interleave() -> None:
        if pending:
            unit = pending.pop()
            first_put_of_a_connection_record(stack, interleave)
            stack.send(connection_id, {"action": "subscribe", "unitIds": [unit]})

    first_put_of_a_connection_record(stack, interleave)
    stack.send(connection_id, {"action": "subscribe", "unitIds": ["u20"]})

    record = stack.store.connections.get(connection_id, stack.clock.time())
    assert record is not None
    assert sorted(record.subscription.unit_ids) == sorted(f"u{i}" for i in range(21))
    [by_org] = stack.store.connections.of_org("acme", stack.clock.time())
    assert by_org == record


def test_the_org_copy_never_goes_back_to_an_older_version(stack: InProcessStack):
    connection_id = stack.open("acme")
    record = stack.store.connections.get(connection_id, stack.clock.time())
    assert record is not None
    newer = stack.store.connections.save(record.model_copy(update={"allowed_units": ["a"]}))

    # An older save's org copy landing late changes nothing.
    stack.store.connections._put_org_copy(stack.store.connections._items(record)[1], record.version)

    assert stack.store.connections.of_org("acme", stack.clock.time()) == [newer]


# --- bounded selections --------------------------------------------------------------------


def test_a_selection_has_a_bounded_size_with_a_clear_error(stack: InProcessStack):
    connection_id = stack.open("acme")
    for batch in range(2):
        units = [f"unit-{batch}-{i:03d}" for i in range(250)]
        stack.request(connection_id, {"action": "subscribe", "unitIds": units})

    answers = stack.request(
        connection_id, {"action": "subscribe", "unitIds": ["one-more"], "requestId": "s3"}
    )

    assert wire(answers) == [
        error(
            "limit_exceeded",
            "a subscription selects at most 500 units and 100 sites (this one would select 501 units "
            "and 0 sites); subscribe to scope 'org' or to sites instead",
            "s3",
        )
    ]
    # The connection still works, with the selection it had.
    [hello] = stack.request(connection_id, {"action": "hello"})
    assert isinstance(hello, ConnectionMessage)
    assert len(hello.subscription.unit_ids) == 500


# --- throttling ----------------------------------------------------------------------------


def test_a_connection_over_its_request_allowance_is_throttled_and_others_are_not(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, CONNECTION_REQUEST_LIMIT="5", CONNECTION_REQUEST_WINDOW_SECONDS="10")
    clock.set(datetime.fromtimestamp(math.floor(clock.time() / 10) * 10 + 1, UTC))
    flooder, neighbour = stack.open("acme"), stack.open("globex")

    answers = [stack.request(flooder, {"action": "hello", "requestId": f"h{i}"}) for i in range(7)]

    assert all(isinstance(a[0], ConnectionMessage) for a in answers[:5])
    assert wire(answers[5]) == [
        error("throttled", "more than 5 requests in 10 s on this connection; wait and try again", "h5")
    ]
    assert isinstance(stack.request(neighbour, {"action": "hello"})[0], ConnectionMessage)
    # Counted in the table too: another container (no local count) refuses as well.
    monkeypatch.setattr(stack.store.connections, "_local_windows", _LocalWindows())
    assert wire(stack.request(flooder, {"action": "hello"}))[0]["error"]["code"] == "throttled"

    clock.advance(10)  # the next window
    assert isinstance(stack.request(flooder, {"action": "hello"})[0], ConnectionMessage)


def test_a_flood_is_refused_in_memory_without_a_table_write_per_request(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, CONNECTION_REQUEST_LIMIT="5")
    clock.set(datetime.fromtimestamp(math.floor(clock.time() / 10) * 10 + 1, UTC))
    flooder = stack.open("acme")
    calls = count_calls(stack.store.client)

    for _ in range(100):
        stack.send(flooder, "not even json")

    assert calls["UpdateItem"] == 5


# --- the session follows the token ---------------------------------------------------------


@pytest.fixture
def real_time(stack: InProcessStack, clock: FakeClock) -> FakeClock:
    """Tokens are checked against the real clock (PyJWT): start the system clock at now."""
    clock.set(datetime.now(UTC))
    return clock


def test_a_session_ends_when_its_token_expires(
    stack: InProcessStack, real_time: FakeClock, posts: PostRecorder
):
    clock = real_time
    connection_id = stack.new_connection_id()
    stack.connect(subprotocol_header(stack.token("acme", expires_in=5)), connection_id)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    stack.deliver()
    assert len(stack.take(connection_id)) == 1

    clock.advance(5)
    assert wire(stack.request(connection_id, {"action": "hello", "requestId": "late"})) == [
        error(
            "unauthorized", "your token has expired; send refreshToken with a fresh one, or reconnect", "late"
        )
    ]
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    report = stack.deliver()

    assert report.sessions_expired == 1
    assert wire(stack.take(connection_id)) == [
        {
            "type": "error",
            "error": {
                "code": "token_expired",
                "message": "your token expired; reconnect (and resume) with a fresh token",
            },
        }
    ]
    assert posts.deleted == [connection_id]
    assert stack.store.connections.get(connection_id, clock.time()) is None


def test_refreshing_the_token_keeps_the_session_open_past_the_old_expiry(
    stack: InProcessStack, real_time: FakeClock, posts: PostRecorder
):
    clock = real_time
    connection_id = stack.new_connection_id()
    stack.connect(subprotocol_header(stack.token("acme", expires_in=5)), connection_id)
    fresh = stack.token("acme", expires_in=3600, units=["u2"])

    [answer] = wire(
        stack.request(connection_id, {"action": "refreshToken", "token": fresh, "requestId": "r"})
    )

    assert (answer["type"], answer["requestId"]) == ("tokenRefreshed", "r")
    assert datetime.fromisoformat(answer["expiresAt"]).timestamp() > clock.time() + 3000
    clock.advance(10)
    stack.publish_telemetry(
        "acme", "dev-1", {"readings": [reading("u1", clock.iso()), reading("u2", clock.iso())]}
    )
    report = stack.deliver()
    assert report.sessions_expired == 0
    # The new token's units claim applies from now on.
    [batch] = stack.take(connection_id)
    assert isinstance(batch, ReadingsBatchMessage)
    assert [b.unit_id for b in batch.batches] == ["u2"]
    assert posts.deleted == []


@pytest.mark.parametrize(
    ("claims", "code", "message"),
    [
        (
            {"org": "globex"},
            "forbidden",
            "the new token is for another user or org; reconnect with it instead",
        ),
        (
            {"sub": "mallory"},
            "forbidden",
            "the new token is for another user or org; reconnect with it instead",
        ),
        ({"expires_in": -1}, "unauthorized", "token has expired"),
    ],
)
def test_a_refresh_with_a_token_for_someone_else_or_expired_is_refused(
    stack: InProcessStack, claims: dict[str, Any], code: str, message: str
):
    connection_id = stack.open("acme", sub="alice")
    token = stack.token(**{"org": "acme", "sub": "alice", **claims})

    answers = wire(stack.request(connection_id, {"action": "refreshToken", "token": token, "requestId": "r"}))

    assert answers == [error(code, message, "r")]


# --- resume does bounded work --------------------------------------------------------------


def test_resume_reads_only_its_orgs_outbox_shards_over_the_gap_and_replays_the_newest(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, RESUME_MAX_READINGS="100", OUTBOX_SHARDS="4")
    connection_id = stack.open("acme")
    gone_at = clock.iso()
    for _ in range(25):  # 25 s away: 3 windows of arrival seconds
        stack.publish_telemetry(
            "acme", "dev-1", {"readings": [reading(f"u{unit:02d}", clock.iso()) for unit in range(10)]}
        )
        stack.publish_telemetry("globex", "dev-9", reading("g1", clock.iso()))
        clock.advance(1)
    queries: list[str] = []

    def remember(params: dict[str, Any], **_: Any) -> None:
        queries.append(params["ExpressionAttributeValues"][":pk"]["S"])

    stack.store.client.meta.events.register("before-parameter-build.dynamodb.Query", remember)

    _, *replay = stack.request(connection_id, {"action": "hello", "resume": {"since": gone_at}})

    replayed = [
        r.to_wire()["receivedAt"]
        for message in replay
        if isinstance(message, ReadingsBatchMessage)
        for batch in message.batches
        for r in batch.readings
    ]
    # The newest 100 of the 240 acme readings that arrived after gone_at: the last 10 seconds.
    assert len(replayed) == 100
    assert min(replayed) == clock.iso(-10)
    # One query per window of the gap, all on acme's shard, none per unit.
    [shard] = stack.store.readings.org_shards("acme")
    assert len(queries) == 3
    assert all(pk.endswith(f"#{shard}") for pk in queries)


# --- heartbeat and history -----------------------------------------------------------------


def test_ping_is_answered_with_the_server_time(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")

    assert wire(stack.request(connection_id, {"action": "ping", "requestId": "p1"})) == [
        {"type": "pong", "requestId": "p1", "serverTime": clock.iso()}
    ]


def test_history_answers_a_units_readings_in_a_span_newest_last_and_says_if_there_is_more(
    stack: InProcessStack, clock: FakeClock
):
    stack.publish_telemetry("acme", "dev-1", {"readings": [reading("u1", clock.iso(-s)) for s in range(10)]})
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso(-1)))
    stack.publish_telemetry("globex", "dev-9", reading("u1", clock.iso(-1)))
    connection_id = stack.open("acme")

    [recent] = wire(stack.request(connection_id, {"action": "getHistory", "unitId": "u1", "limit": 3}))
    [span] = wire(
        stack.request(
            connection_id,
            {"action": "getHistory", "unitId": "u1", "since": clock.iso(-8), "until": clock.iso(-6)},
        )
    )

    assert recent["more"] is True
    assert [r["recordedAt"] for r in recent["readings"]] == [clock.iso(-2), clock.iso(-1), clock.iso(0)]
    assert span["more"] is False
    assert [r["recordedAt"] for r in span["readings"]] == [clock.iso(-8), clock.iso(-7), clock.iso(-6)]
    assert {r["deviceId"] for r in recent["readings"] + span["readings"]} == {"dev-1"}


def test_history_outside_the_token_scope_is_forbidden(stack: InProcessStack):
    connection_id = stack.open("acme", units=["u1"])

    [answer] = wire(stack.request(connection_id, {"action": "getHistory", "unitId": "u2", "requestId": "h"}))

    assert answer == error("forbidden", "your token does not allow units u2", "h")
