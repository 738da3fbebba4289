"""The events AWS hands the functions, in the shapes of AWS's documentation: API Gateway's
WebSocket API (``$connect``, a message, ``$disconnect``) and HTTP API (payload format 2.0,
JWT authorizer) events, EventBridge's scheduled event, and route selection. The local
stack invokes the functions with them; the tests build theirs here too
(tests/support/events.py), so both hand the handlers what AWS does."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from devstack.config import ACCOUNT_ID, REGION

DEFAULT_ROUTE = "$default"


def epoch_ms(at: datetime | None = None) -> int:
    return time.time_ns() // 1_000_000 if at is None else int(at.timestamp() * 1000)


def request_time(epoch_ms: int) -> str:
    """API Gateway's ``requestTime`` and ``time``: ``22/Nov/2026:10:00:00 +0000``."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def request_id() -> str:
    """An id in the shape of API Gateway's request and message ids."""
    return base64.b64encode(secrets.token_bytes(6)).decode()


def flatten_claim(value: Any) -> str:
    """A claim value as API Gateway's JWT authorizer hands it to the integration: every
    value a string, arrays flattened to ``"[a b]"``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(flatten_claim(item) for item in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# --- WebSocket API ---------------------------------------------------------------------


def selected_route(body: str | bytes, route_keys: Container[str]) -> str:
    """The route API Gateway selects for a message (``$request.body.action``): its action
    when a route has that key, else ``$default`` (also for a body it cannot evaluate)."""
    action = None
    if isinstance(body, str):
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = None
        if isinstance(document, dict):
            action = document.get("action")
    return action if isinstance(action, str) and action in route_keys else DEFAULT_ROUTE


@dataclass(frozen=True)
class WebSocketCaller:
    """A connection of a WebSocket API as its events describe it."""

    api_id: str
    stage: str
    domain_name: str
    connection_id: str
    connected_at_ms: int
    source_ip: str
    user_agent: str

    def request_context(self, route_key: str, event_type: str, at_ms: int | None = None) -> dict[str, Any]:
        now_ms = epoch_ms() if at_ms is None else at_ms
        request = request_id()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request,
            "requestTime": request_time(now_ms),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": self.connected_at_ms,
            "requestTimeEpoch": now_ms,
            "identity": {"sourceIp": self.source_ip, "userAgent": self.user_agent},
            "requestId": request,
            "domainName": self.domain_name,
            "connectionId": self.connection_id,
            "apiId": self.api_id,
        }


def websocket_connect_event(
    caller: WebSocketCaller, headers: Mapping[str, Iterable[str]], query: str = "", at_ms: int | None = None
) -> dict[str, Any]:
    """``$connect`` with the handshake's headers (each name's values, in order) and query."""
    multi_value_headers = {name: list(values) for name, values in headers.items()}
    event: dict[str, Any] = {
        "headers": {name: values[-1] for name, values in multi_value_headers.items()},
        "multiValueHeaders": multi_value_headers,
        "requestContext": caller.request_context("$connect", "CONNECT", at_ms),
        "isBase64Encoded": False,
    }
    if query:
        values = parse_qs(query, keep_blank_values=True)
        event["queryStringParameters"] = {name: value[-1] for name, value in values.items()}
        event["multiValueQueryStringParameters"] = values
    return event


def websocket_message_event(
    caller: WebSocketCaller, route_key: str, body: str | bytes, at_ms: int | None = None
) -> dict[str, Any]:
    """A client message on ``route_key``; a binary one arrives base64-encoded."""
    context = caller.request_context(route_key, "MESSAGE", at_ms)
    context["messageId"] = request_id()
    binary = isinstance(body, bytes)
    return {
        "requestContext": context,
        "body": base64.b64encode(body).decode() if isinstance(body, bytes) else body,
        "isBase64Encoded": binary,
    }


def websocket_disconnect_event(
    caller: WebSocketCaller, status_code: int, reason: str, at_ms: int | None = None
) -> dict[str, Any]:
    context = caller.request_context("$disconnect", "DISCONNECT", at_ms)
    context |= {"disconnectStatusCode": status_code, "disconnectReason": reason}
    headers = {"Host": caller.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }


# --- HTTP API --------------------------------------------------------------------------


def http_api_event(
    route_key: str,
    *,
    api_id: str,
    raw_path: str,
    headers: Mapping[str, str],
    claims: Mapping[str, Any] | None,
    source_ip: str,
    method: str | None = None,
    protocol: str = "HTTP/1.1",
    raw_query: str = "",
    query: Mapping[str, str] | None = None,
    path_parameters: Mapping[str, str] | None = None,
    cookies: Iterable[str] = (),
    body: str | None = None,
    base64_encoded: bool = False,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """A request to the HTTP API (payload format 2.0) on ``route_key``: ``headers`` with
    lower-case names, ``claims`` the JWT authorizer's verified claims (None: no authorizer
    context), ``method`` the request's when it is not the route key's."""
    now_ms = epoch_ms() if at_ms is None else at_ms
    host = headers.get("host", "localhost")
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": host.split(".")[0],
        "http": {
            "method": method or route_key.partition(" ")[0],
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id(),
        "routeKey": route_key,
        "stage": "$default",
        "time": request_time(now_ms),
        "timeEpoch": now_ms,
    }
    if claims is not None:
        verified = {name: flatten_claim(value) for name, value in claims.items()}
        request_context["authorizer"] = {"jwt": {"claims": verified, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": dict(headers),
        "requestContext": request_context,
        "isBase64Encoded": base64_encoded,
    }
    cookie_list = list(cookies)
    if cookie_list:
        event["cookies"] = cookie_list
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if query is not None:
        event["queryStringParameters"] = dict(query)
    if body is not None:
        event["body"] = body
    return event


# --- EventBridge -----------------------------------------------------------------------


def scheduled_event(rule_name: str, at: datetime | None = None) -> dict[str, Any]:
    """What a schedule rule (``rate(...)``) sends its target."""
    moment = (at or datetime.now(UTC)).replace(microsecond=0)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule_name}"],
        "detail": {},
    }
