"""Lambda events shaped as AWS sends them (examples of the API Gateway, EventBridge and
IoT rule documentation), so that the handlers' Powertools parser models accept them."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt

from devstack.http_api import flatten_claim
from sensor_stream.catalog import CLIENT_ACTIONS
from sensor_stream.iot_rules import command_ack_topic, telemetry_topic

ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
WEBSOCKET_API_ID = "wsapi12345"
WEBSOCKET_STAGE = "prod"
HTTP_API_ID = "httpapi123"
ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_example"
# The issuer's key for the gateways' tokens: API Gateway checks the signature, ingest never does.
ISSUER_KEY = "issuer-key-that-only-api-gateway-checks-32-bytes"
# The WebSocket API's route keys; anything else goes to $default (route selection
# expression `$request.body.action`).
WEBSOCKET_ROUTES = frozenset(CLIENT_ACTIONS)


def _epoch_ms(at: datetime | None) -> int:
    return int((at or datetime.now(UTC)).timestamp() * 1000)


def _request_time(at: datetime | None) -> str:
    return (at or datetime.now(UTC)).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _request_id() -> str:
    return base64.b64encode(uuid.uuid4().bytes[:6]).decode()


def _websocket_request_context(
    route_key: str, event_type: str, connection_id: str, at: datetime | None
) -> dict[str, Any]:
    request_id = _request_id()
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": _request_time(at),
        "messageDirection": "IN",
        "stage": WEBSOCKET_STAGE,
        "connectedAt": _epoch_ms(at),
        "requestTimeEpoch": _epoch_ms(at),
        "identity": {"userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "sourceIp": "192.0.2.10"},
        "requestId": request_id,
        "domainName": f"{WEBSOCKET_API_ID}.execute-api.{REGION}.amazonaws.com",
        "connectionId": connection_id,
        "apiId": WEBSOCKET_API_ID,
    }


def websocket_connect_event(
    connection_id: str, subprotocols: str | None, at: datetime | None = None
) -> dict[str, Any]:
    """``$connect``; ``subprotocols`` is the raw ``Sec-WebSocket-Protocol`` header (None: absent)."""
    headers = {
        "Host": f"{WEBSOCKET_API_ID}.execute-api.{REGION}.amazonaws.com",
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
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": _websocket_request_context("$connect", "CONNECT", connection_id, at),
        "isBase64Encoded": False,
    }


def websocket_disconnect_event(connection_id: str, at: datetime | None = None) -> dict[str, Any]:
    headers = {
        "Host": f"{WEBSOCKET_API_ID}.execute-api.{REGION}.amazonaws.com",
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    }
    context = _websocket_request_context("$disconnect", "DISCONNECT", connection_id, at)
    context |= {"disconnectStatusCode": 1005, "disconnectReason": "Client-side close frame status not set"}
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def route_key_for(body: str) -> str:
    """What API Gateway selects for a message body: its ``action`` if a route has it."""
    try:
        action = json.loads(body).get("action")
    except (ValueError, RecursionError, AttributeError):
        return "$default"
    return action if isinstance(action, str) and action in WEBSOCKET_ROUTES else "$default"


def websocket_message_event(
    connection_id: str, body: str | dict[str, Any], at: datetime | None = None
) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    context = _websocket_request_context(route_key_for(text), "MESSAGE", connection_id, at)
    context["messageId"] = _request_id()
    return {"requestContext": context, "body": text, "isBase64Encoded": False}


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
    method, _, template = route_key.partition(" ")
    path = template
    for name, value in (path_parameters or {}).items():
        path = path.replace("{" + name + "}", value)
    text = body if body is None or isinstance(body, str) else json.dumps(body)
    if text is not None and base64_encoded:
        text = base64.b64encode(text.encode()).decode()
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": HTTP_API_ID,
        "domainName": f"{HTTP_API_ID}.execute-api.{REGION}.amazonaws.com",
        "domainPrefix": HTTP_API_ID,
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "198.51.100.7",
            "userAgent": "gateway/1.0",
        },
        "requestId": _request_id(),
        "routeKey": route_key,
        "stage": "$default",
        "time": _request_time(at),
        "timeEpoch": _epoch_ms(at),
    }
    if claims is not None:
        verified = {name: flatten_claim(value) for name, value in claims.items()}
        request_context["authorizer"] = {"jwt": {"claims": verified, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "authorization": f"Bearer {jwt.encode(claims or {}, ISSUER_KEY, algorithm='HS256')}",
            "content-type": "application/json",
            "host": f"{HTTP_API_ID}.execute-api.{REGION}.amazonaws.com",
            "user-agent": "gateway/1.0",
        },
        "requestContext": request_context,
        "isBase64Encoded": base64_encoded,
    }
    if path_parameters:
        event["pathParameters"] = path_parameters
    if text is not None:
        event["body"] = text
    return event


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


def iot_rule_event(
    topic: str, payload: bytes | str | dict[str, Any] | list[Any], received_at: datetime | None = None
) -> dict[str, Any]:
    """The SELECT result of the project's topic rules (iot_rules.py): the raw payload in
    base64, org and device from topic levels 2 and 4, the arrival time in epoch ms."""
    levels = topic.split("/")
    return {
        "payload": base64.b64encode(_raw_payload(payload)).decode(),
        "orgId": levels[1],
        "deviceId": levels[3],
        "topic": topic,
        "receivedAt": _epoch_ms(received_at),
    }


def telemetry_event(
    org_id: str,
    device_id: str,
    payload: bytes | str | dict[str, Any] | list[Any],
    received_at: datetime | None = None,
) -> dict[str, Any]:
    return iot_rule_event(telemetry_topic(org_id, device_id), payload, received_at)


def command_ack_event(
    org_id: str, device_id: str, payload: bytes | str | dict[str, Any], received_at: datetime | None = None
) -> dict[str, Any]:
    return iot_rule_event(command_ack_topic(org_id, device_id), payload, received_at)
