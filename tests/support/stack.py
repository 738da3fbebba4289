"""The four Lambda handlers wired together in-process over moto, as API Gateway, IoT
Core and EventBridge would invoke them, with a fake clock and recorded posts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from itertools import count
from typing import Any

import pytest
import rules.handler
from moto.iotdata.models import iotdata_backends

import connect.handler
import ingest.handler
import publish.handler
from sensor_stream import clients
from sensor_stream.delivery import Flusher, TickReport
from sensor_stream.models import CommandMessage
from sensor_stream.settings import Settings, get_settings
from sensor_stream.store import SensorStore

from .clock import FakeClock
from .events import (
    ACCOUNT_ID,
    REGION,
    authorizer_claims,
    command_ack_event,
    http_api_event,
    http_readings_event,
    telemetry_event,
    websocket_connect_event,
    websocket_disconnect_event,
    websocket_message_event,
)
from .lambda_context import FakeLambdaContext
from .tokens import hs256_token, subprotocol_header
from .websocket import PostRecorder, ServerMessage

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def invoke(handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
    return handler(event, FakeLambdaContext())


def settle(flusher: Flusher, timeout: float = 30.0) -> None:
    """Wait (real time) until the flusher's posts and closes in the background ended."""
    deadline = time.monotonic() + timeout
    while flusher.fanout.in_flight():
        assert time.monotonic() < deadline, "posts still in flight"
        time.sleep(0.005)


class InProcessStack:
    """Events in through the handlers, ticks through a Flusher on the fake clock, and
    what each connection received out of the PostRecorder."""

    def __init__(self, clock: FakeClock, recorder: PostRecorder, jwt_secret: str) -> None:
        self.clock = clock
        self.recorder = recorder
        self.jwt_secret = jwt_secret
        self._connection_numbers = count(1)
        self._flushers: dict[str, Flusher] = {}
        self.wire_clients()

    def wire_clients(self) -> None:
        """The handlers' own cached clients, answered by the recorder and on the fake clock;
        again after clients.reset()."""
        self.recorder.attach(clients.gateway()._client)
        self.recorder.attach(clients.fanout_gateway()._client)
        clients.store().clock = self.clock.time

    def reconfigure(self, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
        """Change settings as a new Lambda container would see them."""
        self.close()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        clients.reset()
        self.wire_clients()

    def close(self) -> None:
        for flusher in self._flushers.values():
            flusher.close()
        self._flushers.clear()

    @property
    def store(self) -> SensorStore:
        return clients.store()

    @property
    def settings(self) -> Settings:
        return get_settings()

    # --- WebSocket ----------------------------------------------------------------------

    def new_connection_id(self) -> str:
        # API Gateway's ids look like this: 12 base64 characters ending in '='.
        return f"Cx{next(self._connection_numbers):09d}Q="

    def connect(self, subprotocols: str | None, connection_id: str | None = None) -> dict[str, Any]:
        event = websocket_connect_event(connection_id or self.new_connection_id(), subprotocols)
        return invoke(connect.handler.lambda_handler, event)

    def token(self, org: str | None = "acme", **claim_args: Any) -> str:
        return hs256_token(self.jwt_secret, org=org, **claim_args)

    def open(self, org: str = "acme", *, units: list[str] | None = None, sub: str = "user-1") -> str:
        """A connected browser of ``org``; returns its connection id."""
        connection_id = self.new_connection_id()
        response = self.connect(subprotocol_header(self.token(org, units=units, sub=sub)), connection_id)
        assert response == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "sensor-stream.v1"}}
        return connection_id

    def send(self, connection_id: str, message: str | dict[str, Any]) -> dict[str, Any]:
        """A client message, to the function its route integrates with."""
        event = websocket_message_event(connection_id, message)
        route = event["requestContext"]["routeKey"]
        handler = publish.handler if route == "sendCommand" else connect.handler
        return invoke(handler.lambda_handler, event)

    def request(self, connection_id: str, message: str | dict[str, Any]) -> list[ServerMessage]:
        """Send a client message and return what the connection got in answer."""
        self.recorder.take(connection_id)
        self.send(connection_id, message)
        return self.recorder.take(connection_id)

    def disconnect(self, connection_id: str) -> dict[str, Any]:
        return invoke(connect.handler.lambda_handler, websocket_disconnect_event(connection_id))

    def take(self, connection_id: str) -> list[ServerMessage]:
        return self.recorder.take(connection_id)

    # --- devices and HTTP ---------------------------------------------------------------

    def publish_telemetry(self, org: str, device: str, payload: Any) -> dict[str, Any]:
        return invoke(ingest.handler.lambda_handler, telemetry_event(org, device, payload, self.clock.now()))

    def device_ack(self, org: str, device: str, payload: Any) -> dict[str, Any]:
        return invoke(
            publish.handler.lambda_handler, command_ack_event(org, device, payload, self.clock.now())
        )

    def post_readings(
        self,
        claims: dict[str, Any] | None,
        body: str | dict[str, Any] | None,
        *,
        base64_encoded: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """``POST /readings``: (status, decoded JSON body)."""
        event = http_readings_event(body, claims, base64_encoded=base64_encoded)
        response = invoke(ingest.handler.lambda_handler, event)
        assert response["headers"]["Content-Type"] == "application/json"
        return response["statusCode"], json.loads(response["body"])

    def rules_request(
        self,
        route_key: str,
        claims: dict[str, Any],
        body: dict[str, Any] | str | None = None,
        rule_id: str | None = None,
    ) -> tuple[int, dict[str, Any] | None]:
        """The alert-rules HTTP API: (status, decoded JSON body or None)."""
        parameters = {"ruleId": rule_id} if rule_id is not None else None
        event = http_api_event(route_key, body, claims, path_parameters=parameters)
        response = invoke(rules.handler.lambda_handler, event)
        return response["statusCode"], json.loads(response["body"]) if response.get("body") else None

    def put_rule(self, org: str, rule_id: str, **rule: Any) -> dict[str, Any]:
        status, body = self.rules_request("PUT /alert-rules/{ruleId}", authorizer_claims(org), rule, rule_id)
        assert status == 200, body
        assert body is not None
        return body

    def published_commands(self) -> list[tuple[str, CommandMessage]]:
        """What was published through the IoT data plane: (topic, command) in order."""
        published = iotdata_backends[ACCOUNT_ID][REGION].published_payloads
        return [(topic, CommandMessage.model_validate_json(payload)) for topic, payload in published]

    # --- flush --------------------------------------------------------------------------

    def flusher(self, owner: str = "flusher-1") -> Flusher:
        if owner not in self._flushers:
            self._flushers[owner] = Flusher(
                self.store,
                clients.fanout_gateway(),
                self.settings,
                clock=self.clock.time,
                sleep=self.clock.sleep,
                owner=owner,
            )
        return self._flushers[owner]

    def tick(self, advance: float = 1.0, owner: str = "flusher-1") -> TickReport:
        """Let ``advance`` seconds pass, then run one tick."""
        self.clock.advance(advance)
        return self.flusher(owner).tick(self.clock.time())

    def settle(self, owner: str = "flusher-1", timeout: float = 30.0) -> None:
        """Wait (real time) until the flusher's posts and closes in the background ended:
        a tick waits for them only a while, which a loaded machine may exceed."""
        settle(self.flusher(owner), timeout)

    def deliver(self, owner: str = "flusher-1") -> TickReport:
        """One tick late enough to deliver everything that arrived until now."""
        return self.tick(1 + self.settings.flush_grace_seconds, owner)
