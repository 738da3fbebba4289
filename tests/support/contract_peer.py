"""A scripted peer of contract section 3 for the browser tests: a real WebSocket server
(``websockets``) that answers as the contract says and lets a test drop connections, refuse
handshakes, freeze, stop and start again, or hold back answers: the cases the full local stack
cannot produce on demand. Also a static server for ``web/`` with a config.json of the test's
choice, and JWT-shaped tokens the peer does not verify (the real stack does)."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from devstack.dashboard import DashboardServer

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
SUBPROTOCOL = Subprotocol("sensor-stream.v1")
WAIT_SECONDS = 15


def fake_jwt(claims: dict[str, Any]) -> str:
    """Shaped like a JWT; the scripted peer does not check signatures (the real stack does)."""

    def encode(part: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    return f"{encode({'alg': 'HS256', 'typ': 'JWT'})}.{encode(claims)}.c2lnbmF0dXJl"


def token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_ago(seconds: float) -> str:
    return iso(datetime.now(UTC) - timedelta(seconds=seconds))


def reading(
    reading_id: str,
    unit_id: str,
    recorded_at: str,
    received_at: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "id": reading_id,
        "unitId": unit_id,
        "siteId": "site-1",
        "deviceId": "dev-1",
        "temperature": 4.5,
        "humidity": 60.0,
        "battery": 90.0,
        "signalStrength": -70,
        "recordedAt": recorded_at,
        "receivedAt": received_at or recorded_at,
        "source": "iot",
        **fields,
    }


def batch(
    readings: list[dict[str, Any]], *, replay: bool = False, server_time: str = "2026-01-01T00:00:10.000Z"
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "sensor:readings:batch",
        "serverTime": server_time,
        "batches": [{"unitId": r["unitId"], "readings": [r], "count": 1} for r in readings],
    }
    if replay:
        message["replay"] = True
    return message


def wait_until(condition: Callable[[], Any], what: str, seconds: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class ContractPeer:
    """Answers hello/subscribe/unsubscribe/getLatest/getHistory/getAlerts/listUnits/ping/
    refreshToken/sendCommand as the contract says; records every handshake and message.
    Attributes tune the answers."""

    def __init__(self) -> None:
        self.handshakes: list[Request] = []
        self.received: list[dict[str, Any]] = []
        self.connections: list[ServerConnection] = []
        self.refuse_handshakes = False
        # Records what comes in but answers nothing (a server that hangs).
        self.frozen = False
        self.replay: list[dict[str, Any]] = []
        # getHistory answers from these, by unitId; getLatest from the newest of them if any.
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.answer_get_latest = True
        # History answers go out in this many parts (as the server splits a large answer),
        # the last part first when ``parts_reversed``.
        self.history_parts = 1
        self.parts_reversed = False
        # getAlerts answers these; listUnits these units, or (None) each unit of `history`
        # with its newest reading.
        self.alerts: list[dict[str, Any]] = []
        self.units: list[dict[str, Any]] | None = None
        self.command_outcome = "ack"  # ack | ack-before-accepted | error | timeout | unknown-device
        # The server's clock minus the real one: a browser whose clock is wrong, seen from here.
        self.clock_offset = timedelta(0)
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}"

    def now(self) -> str:
        return iso(datetime.now(UTC) + self.clock_offset)

    def start(self) -> None:
        self._server = serve(
            self._serve,
            "127.0.0.1",
            self._port,
            subprotocols=[SUBPROTOCOL],
            process_request=self._handshake,
        )
        self._port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down as in an outage: the port refuses connections and open ones are cut."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        for connection in self.connections:
            connection.close(1001, "going away")

    def messages(self, action: str) -> list[dict[str, Any]]:
        return [message for message in list(self.received) if message.get("action") == action]

    def push(self, message: dict[str, Any]) -> None:
        """Send to the newest connection, as the flush would."""
        self.connections[-1].send(json.dumps(message))

    def drop(self) -> None:
        """Close the newest connection as API Gateway does at its idle or 2-hour limit."""
        self.connections[-1].close(1001, "going away")

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None  # the client's reachability probe: websockets answers 426
        self.handshakes.append(request)
        if self.refuse_handshakes:
            body = b'{"error": {"code": "unauthorized", "message": "invalid token"}}'
            return Response(HTTPStatus.UNAUTHORIZED, "Unauthorized", Headers(), body)
        return None

    def _serve(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        subscription: dict[str, Any] = {"scope": "org", "unitIds": [], "siteIds": []}
        for raw in connection:
            message = json.loads(raw)
            self.received.append(message)
            if self.frozen:
                continue
            for answer in self._answers(message, subscription):
                connection.send(json.dumps(answer))

    def _answers(self, message: dict[str, Any], subscription: dict[str, Any]) -> list[dict[str, Any]]:
        request_id = message.get("requestId")
        match message["action"]:
            case "hello":
                answers: list[dict[str, Any]] = [
                    {
                        "type": "connection",
                        "requestId": request_id,
                        "status": "connected",
                        "connectionId": f"conn-{len(self.connections)}",
                        "serverTime": self.now(),
                        "subscription": subscription,
                    }
                ]
                if message.get("resume"):
                    replay = self.replay or self._arrived_since(message["resume"]["since"])
                    if replay:
                        answers.append(batch(replay, replay=True, server_time=self.now()))
                return answers
            case "subscribe":
                if message.get("scope") == "org":
                    subscription.update(scope="org", unitIds=[], siteIds=[])
                else:
                    units = [] if subscription["scope"] == "org" else subscription["unitIds"]
                    subscription.update(scope="selected", unitIds=sorted({*units, *message["unitIds"]}))
                return [{"type": "subscribed", "requestId": request_id, "subscription": subscription}]
            case "unsubscribe":
                removed = set(message.get("unitIds") or [])
                kept = [u for u in subscription["unitIds"] if u not in removed]
                subscription.update(scope="selected", unitIds=kept, siteIds=[])
                return [{"type": "subscribed", "requestId": request_id, "subscription": subscription}]
            case "getLatest":
                if not self.answer_get_latest:
                    return []
                unit_id = message["unitId"]
                known = self.history.get(unit_id)
                latest = known[-1] if known else None
                if latest is None and not self.history:
                    latest = reading("r-latest", unit_id, "2026-01-01T00:00:00.000Z")
                return [{"type": "latest", "requestId": request_id, "unitId": unit_id, "reading": latest}]
            case "getHistory":
                return self._in_parts(self._history(message), "readings")
            case "getAlerts":
                return [{"type": "alerts", "requestId": request_id, "active": list(self.alerts)}]
            case "listUnits":
                return [{"type": "units", "requestId": request_id, "units": self._units()}]
            case "ping":
                return [{"type": "pong", "requestId": request_id, "serverTime": self.now()}]
            case "sendCommand":
                return self._command_answers(request_id)
            case "refreshToken":
                claims = token_claims(message["token"])
                expires_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(claims["exp"]))
                return [{"type": "tokenRefreshed", "requestId": request_id, "expiresAt": expires_at}]
        return [
            {"type": "error", "requestId": request_id, "error": {"code": "unknown_action", "message": "?"}}
        ]

    def _units(self) -> list[dict[str, Any]]:
        if self.units is not None:
            return list(self.units)
        newest = {unit_id: readings[-1] for unit_id, readings in self.history.items() if readings}
        return [
            {"unitId": r["unitId"], "siteId": r["siteId"], "lastReading": r, "lastSeenAt": r["receivedAt"]}
            for r in newest.values()
        ]

    def _arrived_since(self, since: str) -> list[dict[str, Any]]:
        """What a resume replays: the newest 1,000 readings that arrived after ``since``."""
        arrived = [r for readings in self.history.values() for r in readings if r["receivedAt"] > since]
        return sorted(arrived, key=lambda r: r["receivedAt"])[-1000:]

    def _history(self, message: dict[str, Any]) -> dict[str, Any]:
        since, until = message.get("since", ""), message.get("until", "9999")
        limit = message.get("limit", 300)
        span = [r for r in self.history.get(message["unitId"], []) if since <= r["recordedAt"] < until]
        return {
            "type": "history",
            "requestId": message.get("requestId"),
            "unitId": message["unitId"],
            "readings": span[-limit:],
            "more": len(span) > limit,
        }

    def _in_parts(self, answer: dict[str, Any], field: str) -> list[dict[str, Any]]:
        if self.history_parts <= 1:
            return [answer]
        items, count = answer[field], self.history_parts
        size = -(-len(items) // count)
        parts = [
            {**answer, field: items[n * size : (n + 1) * size], "part": n + 1, "parts": count}
            for n in range(count)
        ]
        return parts[::-1] if self.parts_reversed else parts

    def _command_answers(self, request_id: str | None) -> list[dict[str, Any]]:
        command_id = f"cmd-{next(self._ids)}"
        accepted = {"type": "command:accepted", "requestId": request_id, "commandId": command_id}
        ack = {
            "type": "command:ack",
            "requestId": request_id,
            "commandId": command_id,
            "status": "ok",
            "detail": "blinking the status LED for 10 s",
        }
        match self.command_outcome:
            case "ack":
                return [accepted, ack]
            case "ack-before-accepted":
                # An ack whose requestId got lost, ahead of its command:accepted.
                return [{**ack, "requestId": None}, accepted]
            case "error":
                return [accepted, {**ack, "status": "error", "detail": "LED is broken"}]
            case "timeout":
                return [
                    accepted,
                    {"type": "command:timeout", "requestId": request_id, "commandId": command_id},
                ]
        return [
            {"type": "error", "requestId": request_id, "error": {"code": "not_found", "message": "no device"}}
        ]


class WebServer(DashboardServer):
    """Serves ``web/`` on a loopback port as the local stack does, with ``/config.json`` as
    the test sets it (``config``)."""

    def __init__(self) -> None:
        super().__init__(WEB_DIR, None, 0)
        self.start()

    @property
    def origin(self) -> str:
        return self.url

    def close(self) -> None:
        self.stop()
