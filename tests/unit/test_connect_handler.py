"""connect: $connect authentication, $disconnect, and every client action's answers and
errors, as posted to the connection."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

import connect.handler
from sensor_stream.catalog import CLIENT_ACTIONS
from sensor_stream.models import ConnectionRecord
from tests.support.clock import FakeClock
from tests.support.events import websocket_connect_event
from tests.support.lambda_context import FakeLambdaContext
from tests.support.readings import reading
from tests.support.stack import InProcessStack
from tests.support.tokens import hs256_token, subprotocol_header
from tests.support.websocket import PostRecorder, wire
from tests.support.websocket import error_answer as error

pytestmark = pytest.mark.usefixtures("stack")

ORG_SUBSCRIPTION = {"scope": "org", "unitIds": [], "siteIds": []}


def record(stack: InProcessStack, connection_id: str) -> ConnectionRecord | None:
    return stack.store.connections.get(connection_id, stack.clock.time())


# --- $connect ----------------------------------------------------------------------------


def test_connect_selects_the_subprotocol_and_records_the_connection(
    stack: InProcessStack, clock: FakeClock, posts: PostRecorder
):
    token = stack.token("acme", sub="alice", units=["fridge-1", "fridge-2"])

    response = stack.connect(subprotocol_header(token), connection_id="Abc123Conn0=")

    assert response == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "sensor-stream.v1"}}
    assert record(stack, "Abc123Conn0=") == ConnectionRecord(
        connection_id="Abc123Conn0=",
        org_id="acme",
        user_id="alice",
        allowed_units=["fridge-1", "fridge-2"],
        connected_at=clock.now(),
        expires_at=int(clock.time()) + stack.settings.connection_ttl_seconds,
        token_expires_at=jwt.decode(token, options={"verify_signature": False})["exp"],
        version=1,
    )
    # Nothing can be posted to a connection before $connect returns.
    assert posts.posts == []


def test_connect_reads_the_header_in_any_case(stack: InProcessStack):
    event = websocket_connect_event("Abc123Conn1=", None)
    event["headers"]["sec-websocket-protocol"] = subprotocol_header(stack.token("acme"))

    assert connect.handler.lambda_handler(event, FakeLambdaContext())["statusCode"] == 200


def unauthorized(message: str) -> dict[str, Any]:
    return {
        "statusCode": 401,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"error": {"code": "unauthorized", "message": message}}),
    }


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "the 'sensor-stream.v1' subprotocol is required"),
        ("bearer.a.b.c", "the 'sensor-stream.v1' subprotocol is required"),
        ("sensor-stream.v1", "offer exactly one 'bearer.<token>' subprotocol"),
        ("sensor-stream.v1, bearer.not-a-jwt", "invalid token: Not enough segments"),
    ],
)
def test_connect_without_a_usable_token_is_refused(
    stack: InProcessStack, posts: PostRecorder, header: str | None, message: str
):
    assert stack.connect(header, connection_id="Abc123Conn2=") == unauthorized(message)
    assert record(stack, "Abc123Conn2=") is None
    assert posts.posts == []


@pytest.mark.parametrize(
    ("token_args", "message"),
    [
        ({"expires_in": -1}, "token has expired"),
        ({"org": None}, "token lacks the 'org' claim"),
        ({"org": 123}, "token claim 'org' must be a string of 1-64 characters of [A-Za-z0-9_.:-]"),
        (
            {"units": ["ok", "not ok"]},
            "token claim 'units' must be a list of unit ids (or one string of comma-separated ones), "
            "each 1-64 characters of [A-Za-z0-9_.:-]",
        ),
    ],
)
def test_connect_with_a_bad_token_is_refused(stack: InProcessStack, token_args: dict[str, Any], message: str):
    token = hs256_token(stack.jwt_secret, **token_args)

    assert stack.connect(subprotocol_header(token), connection_id="Abc123Conn3=") == unauthorized(message)
    assert record(stack, "Abc123Conn3=") is None


def test_connect_with_a_token_of_another_signer_is_refused(stack: InProcessStack):
    token = hs256_token("someone-elses-secret-also-32-bytes-long")

    assert stack.connect(subprotocol_header(token)) == unauthorized(
        "invalid token: Signature verification failed"
    )


# --- $disconnect -------------------------------------------------------------------------


def test_disconnect_forgets_the_connection(stack: InProcessStack):
    connection_id = stack.open("acme")

    assert stack.disconnect(connection_id) == {"statusCode": 200}

    assert record(stack, connection_id) is None
    assert stack.store.connections.of_org("acme", stack.clock.time()) == []
    assert wire(stack.request(connection_id, {"action": "hello", "requestId": "r1"})) == [
        error("unauthorized", "this connection is not registered (expired?); reconnect", "r1")
    ]


def test_disconnect_of_an_unknown_connection_is_fine(stack: InProcessStack):
    assert stack.disconnect("NeverSeen00=") == {"statusCode": 200}


def test_expired_connection_record_is_treated_as_gone(stack: InProcessStack, clock: FakeClock):
    # $disconnect is not guaranteed; the record's TTL is, but TTL deletes lazily.
    connection_id = stack.open("acme")
    clock.advance(stack.settings.connection_ttl_seconds + 1)

    assert wire(stack.request(connection_id, {"action": "hello"})) == [
        error("unauthorized", "this connection is not registered (expired?); reconnect")
    ]
    assert stack.store.connections.of_org("acme", clock.time()) == []


# --- hello ---------------------------------------------------------------------------------


def test_hello_answers_connected_with_the_subscription(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")

    assert wire(stack.request(connection_id, {"action": "hello", "requestId": "r-1"})) == [
        {
            "type": "connection",
            "requestId": "r-1",
            "status": "connected",
            "connectionId": connection_id,
            "serverTime": clock.iso(),
            "subscription": ORG_SUBSCRIPTION,
        }
    ]


def test_hello_without_request_id_omits_it(stack: InProcessStack):
    connection_id = stack.open("acme")

    [answer] = wire(stack.request(connection_id, {"action": "hello"}))

    assert "requestId" not in answer


# --- subscribe / unsubscribe ---------------------------------------------------------------


def subscription(
    scope: str = "selected", units: list[str] | None = None, sites: list[str] | None = None
) -> dict[str, Any]:
    return {"scope": scope, "unitIds": units or [], "siteIds": sites or []}


def test_subscribe_narrows_the_org_to_the_given_units_then_adds(stack: InProcessStack):
    connection_id = stack.open("acme")

    first = stack.request(connection_id, {"action": "subscribe", "unitIds": ["u2", "u1"], "requestId": "s1"})
    second = stack.request(connection_id, {"action": "subscribe", "siteIds": ["site-9"], "unitIds": ["u1"]})
    back = stack.request(connection_id, {"action": "subscribe", "scope": "org"})

    assert wire(first) == [
        {"type": "subscribed", "requestId": "s1", "subscription": subscription(units=["u1", "u2"])}
    ]
    assert wire(second) == [
        {"type": "subscribed", "subscription": subscription(units=["u1", "u2"], sites=["site-9"])}
    ]
    assert wire(back) == [{"type": "subscribed", "subscription": ORG_SUBSCRIPTION}]
    stored = record(stack, connection_id)
    assert stored is not None
    assert stored.subscription.to_wire() == ORG_SUBSCRIPTION
    [by_org] = stack.store.connections.of_org("acme", stack.clock.time())
    assert by_org.subscription.to_wire() == ORG_SUBSCRIPTION


def test_unsubscribe_drops_units_and_sites_from_the_selection(stack: InProcessStack):
    connection_id = stack.open("acme")
    stack.request(connection_id, {"action": "subscribe", "unitIds": ["u1", "u2"], "siteIds": ["s1", "s2"]})

    dropped = stack.request(connection_id, {"action": "unsubscribe", "unitIds": ["u2"], "siteIds": ["s1"]})
    everything = stack.request(connection_id, {"action": "unsubscribe", "requestId": "u-all"})

    assert wire(dropped) == [{"type": "subscribed", "subscription": subscription(units=["u1"], sites=["s2"])}]
    assert wire(everything) == [{"type": "subscribed", "requestId": "u-all", "subscription": subscription()}]


def test_subscribe_within_the_token_scope_is_allowed(stack: InProcessStack):
    connection_id = stack.open("acme", units=["u1", "u2"])

    assert wire(stack.request(connection_id, {"action": "subscribe", "unitIds": ["u2"]})) == [
        {"type": "subscribed", "subscription": subscription(units=["u2"])}
    ]


def test_subscribe_outside_the_token_scope_is_forbidden(stack: InProcessStack):
    connection_id = stack.open("acme", units=["u1"])

    answer = stack.request(
        connection_id, {"action": "subscribe", "unitIds": ["u1", "u9", "u8"], "requestId": "x"}
    )

    assert wire(answer) == [error("forbidden", "your token does not allow units u8, u9", "x")]
    stored = record(stack, connection_id)
    assert stored is not None
    assert stored.subscription.scope == "org"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"action": "subscribe", "scope": "org", "unitIds": ["u1"]},
            error("validation_error", "give either scope 'org' or unitIds/siteIds, not both"),
        ),
        ({"action": "subscribe"}, error("validation_error", "give unitIds, siteIds or scope 'org'")),
        (
            {"action": "subscribe", "scope": "everything"},
            error(
                "validation_error",
                "invalid 'subscribe' request",
                details=[{"field": "scope", "message": "Input should be 'org'"}],
            ),
        ),
        (
            {"action": "subscribe", "unitIds": ["ok", "not ok"]},
            error(
                "validation_error",
                "invalid 'subscribe' request",
                details=[
                    {"field": "unitIds.1", "message": "String should match pattern '^[A-Za-z0-9_.:-]+$'"}
                ],
            ),
        ),
        (
            {"action": "subscribe", "unitIds": "u1"},
            error(
                "validation_error",
                "invalid 'subscribe' request",
                details=[{"field": "unitIds", "message": "Input should be a valid list"}],
            ),
        ),
        (
            {"action": "unsubscribe", "unitIds": ["u1"]},
            error(
                "conflict",
                "subscribed to the whole org; "
                "subscribe to the unitIds/siteIds you want instead of unsubscribing",
            ),
        ),
    ],
)
def test_invalid_subscription_requests_are_refused(
    stack: InProcessStack, message: dict[str, Any], expected: dict[str, Any]
):
    connection_id = stack.open("acme")

    assert wire(stack.request(connection_id, message)) == [expected]


# --- getLatest -----------------------------------------------------------------------------


def test_get_latest_answers_the_newest_reading(stack: InProcessStack, clock: FakeClock):
    connection_id = stack.open("acme")
    stack.publish_telemetry(
        "acme",
        "dev-1",
        {"readings": [reading("u1", clock.iso(-5), temperature=4), reading("u1", clock.iso(-9))]},
    )

    [answer] = wire(stack.request(connection_id, {"action": "getLatest", "unitId": "u1", "requestId": "g"}))

    assert answer["type"] == "latest"
    assert (answer["requestId"], answer["unitId"]) == ("g", "u1")
    assert (answer["reading"]["temperature"], answer["reading"]["recordedAt"]) == (4, clock.iso(-5))


def test_get_latest_of_an_unknown_unit_is_null(stack: InProcessStack):
    connection_id = stack.open("acme")

    assert wire(stack.request(connection_id, {"action": "getLatest", "unitId": "nope"})) == [
        {"type": "latest", "unitId": "nope", "reading": None}
    ]


def test_get_latest_outside_the_token_scope_is_forbidden(stack: InProcessStack, clock: FakeClock):
    stack.publish_telemetry("acme", "dev-1", reading("u9", clock.iso()))
    connection_id = stack.open("acme", units=["u1"])

    assert wire(stack.request(connection_id, {"action": "getLatest", "unitId": "u9"})) == [
        error("forbidden", "your token does not allow units u9")
    ]


# --- malformed and unknown messages --------------------------------------------------------


KNOWN = ", ".join(CLIENT_ACTIONS)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '{"action": "hello"',
            error(
                "malformed_json",
                "message is not valid JSON: Expecting ',' delimiter: line 1 column 19 (char 18)",
            ),
        ),
        ("", error("malformed_json", "message is not valid JSON: Expecting value: line 1 column 1 (char 0)")),
        ('["hello"]', error("malformed_json", "message must be a JSON object with an 'action'")),
        # These three were answered "Internal server error" by API Gateway (the function raised).
        pytest.param(
            '{"action": "hello", "requestId": ' + "7" * 5000 + "}",
            error("malformed_json", "message has an integer of more than 4300 digits"),
            id="integer-of-5000-digits",
        ),
        pytest.param(
            '{"action": "hello", "requestId": "r", "resume": ' + "[" * 50_000,
            error("malformed_json", "message nests arrays and objects more than 32 levels deep"),
            id="nested-50000-deep",
        ),
        (
            '{"action": "hello", "requestId": "\\ud800"}',
            error("malformed_json", "message has a string with an unpaired surrogate escape"),
        ),
        (
            '{"action": "hello", "requestId": "h1", "resume": {"since": "9999-12-31T23:59:59-05:00"}}',
            error(
                "validation_error",
                "invalid 'hello' request",
                "h1",
                details=[
                    {"field": "resume.since", "message": "Value error, is out of range once converted to UTC"}
                ],
            ),
        ),
        (
            '{"action": "dance", "requestId": "d1"}',
            error("unknown_action", f"unknown action 'dance'; expected one of {KNOWN}", "d1"),
        ),
        ('{"unitId": "u1"}', error("unknown_action", f"unknown action None; expected one of {KNOWN}")),
        ('{"action": 7}', error("unknown_action", f"unknown action 7; expected one of {KNOWN}")),
        (
            '{"action": "getLatest", "requestId": "g1"}',
            error(
                "validation_error",
                "invalid 'getLatest' request",
                "g1",
                details=[{"field": "unitId", "message": "Field required"}],
            ),
        ),
        (
            '{"action": "hello", "resume": {"since": "last tuesday"}}',
            error(
                "validation_error",
                "invalid 'hello' request",
                details=[
                    {
                        "field": "resume.since",
                        "message": "Value error, must be an ISO-8601 string such as 2026-01-31T12:00:00Z",
                    }
                ],
            ),
        ),
    ],
)
def test_bad_messages_are_answered_with_the_exact_error(
    stack: InProcessStack, body: str, expected: dict[str, Any]
):
    connection_id = stack.open("acme")

    assert wire(stack.request(connection_id, body)) == [expected]


def test_an_answer_does_not_grow_with_the_request(stack: InProcessStack, posts: PostRecorder):
    # Backslashes double in repr and again in JSON: 120 KB in, 180 KB out, over API
    # Gateway's 128 KB for a post, and the client got no answer at all.
    connection_id = stack.open("acme")
    backslashes = "\\" * 30_000
    stack.request(connection_id, {"action": backslashes, "requestId": backslashes})

    [frame] = posts.frames(connection_id)
    assert json.loads(frame) == error(
        "unknown_action", f"unknown action {repr(backslashes)[:64]}...; expected one of {KNOWN}"
    )
    assert len(frame) < 1000


def test_a_request_id_too_long_to_echo_is_a_validation_error(stack: InProcessStack):
    connection_id = stack.open("acme")

    assert wire(stack.request(connection_id, {"action": "hello", "requestId": "r" * 129})) == [
        error(
            "validation_error",
            "invalid 'hello' request",
            details=[{"field": "requestId", "message": "String should have at most 128 characters"}],
        )
    ]
