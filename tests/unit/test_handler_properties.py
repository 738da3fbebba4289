"""The three ways in, over generated input: whatever a browser, a gateway or a device
sends, the function answers in the contract's shape (an answer or an error message on
the WebSocket, a JSON error body over HTTP) or quarantines the message with its reason;
no exception leaves the function."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

import ingest.handler
from sensor_stream import clients
from sensor_stream.ingestion import ingest_iot_event
from sensor_stream.models import ErrorMessage
from tests.support.clock import FakeClock
from tests.support.events import authorizer_claims, http_readings_event, telemetry_event
from tests.support.lambda_context import FakeLambdaContext
from tests.support.stack import InProcessStack
from tests.support.strategies import (
    client_messages,
    identifiers,
    ingest_bodies,
    mostly,
    odd_ids,
    telemetry_payloads,
    texts_of,
)
from tests.unit.conftest import START

pytestmark = pytest.mark.usefixtures("stack")

# One moto table (and one connection) serves all the examples of a test: each property
# holds whatever earlier examples stored or subscribed. The events name what the examples
# reached (pytest --hypothesis-show-statistics).
one_stack_for_all_examples = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

WEBSOCKET_ERROR_CODES = {
    "malformed_json",
    "unknown_action",
    "validation_error",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "unavailable",
}
HTTP_ERROR_STATUS = {
    "malformed_json": 400,
    "validation_error": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "payload_too_large": 413,
}


@pytest.fixture
def browser(stack: InProcessStack) -> str:
    return stack.open("acme", units=["u1", "u2"])


@one_stack_for_all_examples
@given(body=texts_of(client_messages()))
def test_every_client_message_is_answered_in_the_contracts_shape(
    stack: InProcessStack, browser: str, body: str
):
    response = stack.send(browser, body)

    # Each posted frame is checked to be exactly what its pydantic model writes.
    answers = stack.take(browser)
    assert response == {"statusCode": 200}
    assert answers, "every message gets an answer"
    hypothesis_event(
        f"answered {answers[0].type}"
        + (f" {answers[0].error.code}" if isinstance(answers[0], ErrorMessage) else "")
    )
    for answer in answers:
        if isinstance(answer, ErrorMessage):
            assert answer.error.code in WEBSOCKET_ERROR_CODES
            assert answer.error.message


def http_event(body: str | bytes, claims: dict[str, Any]) -> dict[str, Any]:
    """Text as a JSON body; bytes base64-encoded, as API Gateway passes a binary body."""
    if isinstance(body, str):
        return http_readings_event(body, claims)
    return http_readings_event(None, claims) | {
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


@one_stack_for_all_examples
@given(
    body=mostly(texts_of(ingest_bodies(START)), st.binary(), one_in=5),
    claims=st.sampled_from([authorizer_claims("acme"), authorizer_claims("acme", units=["u1", "u2"])]),
)
def test_every_ingest_request_is_answered_in_the_contracts_shape(body: str | bytes, claims: dict[str, Any]):
    response = ingest.handler.lambda_handler(http_event(body, claims), FakeLambdaContext())

    status, answer = response["statusCode"], json.loads(response["body"])
    hypothesis_event(f"status {status} {answer.get('error', {}).get('code', '')}")
    if status == 200:
        assert set(answer) == {"accepted", "duplicates"}
        assert answer["accepted"] >= 0
        assert answer["duplicates"] >= 0
    else:
        assert set(answer) == {"error"}
        error = answer["error"]
        assert {"code", "message"} <= set(error) <= {"code", "message", "details"}
        assert HTTP_ERROR_STATUS[error["code"]] == status
        assert isinstance(error["message"], str)
        assert error["message"]
        assert all(isinstance(item, dict) for item in error.get("details", []))


@one_stack_for_all_examples
@given(
    payload=mostly(texts_of(telemetry_payloads(START)).map(str.encode), st.binary(), one_in=5),
    device=st.one_of(identifiers(128), identifiers(128), odd_ids),
)
def test_every_telemetry_message_is_stored_or_quarantined_with_its_reason(
    clock: FakeClock, payload: bytes, device: str
):
    # A device id from the topic that is no thing name quarantines the event as unroutable.
    event = telemetry_event("acme", "dev-1", payload, clock.now()) | {
        "deviceId": device,
        "topic": f"orgs/acme/devices/{device}/telemetry",
    }

    outcome = ingest_iot_event(clients.store(), event, clock.now())
    hypothesis_event(f"stored {outcome.stored > 0}, quarantined {sorted(set(outcome.quarantined))[:1]}")

    assert outcome.stored + outcome.duplicates + len(outcome.quarantined) >= 1
    assert all(isinstance(reason, str) and reason for reason in outcome.quarantined)
