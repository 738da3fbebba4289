"""Lambda events for the handlers, built by devstack/events.py (the shapes AWS sends, which
the local stack sends too) with the fixed ids, hosts and headers of the API Gateway,
EventBridge and IoT rule documentation's examples."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jwt

from devstack import events

# Re-exported: the tests look into moto's backends of this account and region.
from devstack.config import ACCOUNT_ID as ACCOUNT_ID
from devstack.config import REGION as REGION
from devstack.iot_sql import CompiledRule, Message, compile_rule
from devstack.schedule import RULE_NAME
from sensor_stream.catalog import CLIENT_ACTIONS
from sensor_stream.iot_rules import (
    COMMAND_ACK_RULE,
    TELEMETRY_RULE,
    TopicRuleSpec,
    command_ack_topic,
    telemetry_topic,
)

WEBSOCKET_API_ID = "wsapi12345"
WEBSOCKET_STAGE = "prod"
WEBSOCKET_HOST = f"{WEBSOCKET_API_ID}.execute-api.{REGION}.amazonaws.com"
HTTP_API_ID = "httpapi123"
ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_example"
# The issuer's key for the gateways' tokens: API Gateway checks the signature, ingest never does.
ISSUER_KEY = "issuer-key-that-only-api-gateway-checks-32-bytes"
# The WebSocket API's route keys; anything else goes to $default (route selection
# expression `$request.body.action`).
WEBSOCKET_ROUTES = frozenset(CLIENT_ACTIONS)


def _caller(connection_id: str, at: datetime | None) -> events.WebSocketCaller:
    return events.WebSocketCaller(
        api_id=WEBSOCKET_API_ID,
        stage=WEBSOCKET_STAGE,
        domain_name=WEBSOCKET_HOST,
        connection_id=connection_id,
        connected_at_ms=events.epoch_ms(at),
        source_ip="192.0.2.10",
        user_agent="Mozilla/5.0 (X11; Linux x86_64)",
    )


def websocket_connect_event(
    connection_id: str, subprotocols: str | None, at: datetime | None = None
) -> dict[str, Any]:
    """``$connect``; ``subprotocols`` is the raw ``Sec-WebSocket-Protocol`` header (None: absent)."""
    headers = {
        "Host": WEBSOCKET_HOST,
        "Origin": "https://dashboard.example.com",
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Key": base64.b64encode(uuid.uuid4().bytes).decode(),
        "Sec-WebSocket-Version": "13",
        "X-Amzn-Trace-Id": "Root=1-65c6a5df-0123456789abcdef01234567",
        "X-Forwarded-For": "192.0.2.10",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if subprotocols is not None:
        headers["Sec-WebSocket-Protocol"] = subprotocols
    caller = _caller(connection_id, at)
    return events.websocket_connect_event(
        caller, {name: [value] for name, value in headers.items()}, at_ms=events.epoch_ms(at)
    )


def websocket_disconnect_event(connection_id: str, at: datetime | None = None) -> dict[str, Any]:
    caller = _caller(connection_id, at)
    reason = "Client-side close frame status not set"
    return events.websocket_disconnect_event(caller, 1005, reason, at_ms=events.epoch_ms(at))


def route_key_for(body: str) -> str:
    """What API Gateway selects for a message body: its ``action`` if a route has it."""
    return events.selected_route(body, WEBSOCKET_ROUTES)


def websocket_message_event(
    connection_id: str, body: str | dict[str, Any], at: datetime | None = None
) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    caller = _caller(connection_id, at)
    return events.websocket_message_event(caller, route_key_for(text), text, at_ms=events.epoch_ms(at))


def http_api_event(
    route_key: str,
    body: str | dict[str, Any] | None,
    claims: dict[str, Any] | None,
    *,
    path_parameters: dict[str, str] | None = None,
    base64_encoded: bool = False,
    at: datetime | None = None,
) -> dict[str, Any]:
    """A request to the HTTP API (payload v2) with a JWT authorizer, as API Gateway delivers
    it: ``claims`` are the bearer token's (as signed), which the event carries in the
    Authorization header and, flattened to strings, as the authorizer's verified claims;
    None means no authorizer context at all."""
    path = route_key.partition(" ")[2]
    for name, value in (path_parameters or {}).items():
        path = path.replace("{" + name + "}", value)
    text = body if body is None or isinstance(body, str) else json.dumps(body)
    if text is not None and base64_encoded:
        text = base64.b64encode(text.encode()).decode()
    headers = {
        "accept": "*/*",
        "authorization": f"Bearer {jwt.encode(claims or {}, ISSUER_KEY, algorithm='HS256')}",
        "content-type": "application/json",
        "host": f"{HTTP_API_ID}.execute-api.{REGION}.amazonaws.com",
        "user-agent": "gateway/1.0",
    }
    return events.http_api_event(
        route_key,
        api_id=HTTP_API_ID,
        raw_path=path,
        headers=headers,
        claims=claims,
        source_ip="198.51.100.7",
        path_parameters=path_parameters,
        body=text,
        base64_encoded=base64_encoded,
        at_ms=events.epoch_ms(at),
    )


def scheduled_event(at: datetime | None = None) -> dict[str, Any]:
    """The flush schedule's event."""
    return events.scheduled_event(RULE_NAME, at)


def http_readings_event(
    body: str | dict[str, Any] | None,
    claims: dict[str, Any] | None,
    *,
    base64_encoded: bool = False,
    at: datetime | None = None,
) -> dict[str, Any]:
    """``POST /readings`` (see http_api_event)."""
    return http_api_event("POST /readings", body, claims, base64_encoded=base64_encoded, at=at)


def authorizer_claims(org: Any, sub: Any = "gateway-1", units: Any = None, **extra: Any) -> dict[str, Any]:
    """A gateway's token claims (``http_readings_event`` hands them to ingest as the HTTP
    API's JWT authorizer does); org None leaves the org claim out."""
    claims = {
        "sub": sub,
        "iss": ISSUER,
        "exp": int(datetime.now(UTC).timestamp()) + 3600,
        **extra,
    }
    if org is not None:
        claims["org"] = org
    if units is not None:
        claims["units"] = units
    return claims


def _raw_payload(payload: bytes | str | dict[str, Any] | list[Any]) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


@cache
def _compiled(rule: TopicRuleSpec) -> CompiledRule:
    return compile_rule(rule.sql)


def iot_rule_event(
    rule: TopicRuleSpec,
    topic: str,
    payload: bytes | str | dict[str, Any] | list[Any],
    received_at: datetime | None = None,
) -> dict[str, Any]:
    """The SELECT result of one of the project's topic rules (iot_rules.py) for a message,
    evaluated as the local stack's rule runner does: the raw payload in base64, org and
    device from topic levels 2 and 4, the arrival time in epoch ms."""
    message = Message(topic=topic, payload=_raw_payload(payload), timestamp_ms=events.epoch_ms(received_at))
    return _compiled(rule).evaluate(message)


def telemetry_event(
    org_id: str,
    device_id: str,
    payload: bytes | str | dict[str, Any] | list[Any],
    received_at: datetime | None = None,
) -> dict[str, Any]:
    return iot_rule_event(TELEMETRY_RULE, telemetry_topic(org_id, device_id), payload, received_at)


def command_ack_event(
    org_id: str, device_id: str, payload: bytes | str | dict[str, Any], received_at: datetime | None = None
) -> dict[str, Any]:
    return iot_rule_event(COMMAND_ACK_RULE, command_ack_topic(org_id, device_id), payload, received_at)
