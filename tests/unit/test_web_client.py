"""web/sensor-stream-client.js in headless Chromium against a scripted contract peer.

The peer is a real WebSocket server (``websockets``) that answers as contract section 3
says and lets a test drop connections, refuse handshakes or hold back answers: the cases
the full local stack cannot produce on demand.
"""

from __future__ import annotations

import base64
import functools
import http.server
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from tests.support.browser import debian_chromium

pytestmark = pytest.mark.browser

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
WAIT_SECONDS = 15
SUBPROTOCOL = Subprotocol("sensor-stream.v1")


def fake_jwt(claims: dict[str, Any]) -> str:
    """Shaped like a JWT; the scripted peer does not check signatures (the real stack does)."""

    def encode(part: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    return f"{encode({'alg': 'HS256', 'typ': 'JWT'})}.{encode(claims)}.c2lnbmF0dXJl"


VALID_TOKEN = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 3600})


def reading(
    reading_id: str, unit_id: str, recorded_at: str, received_at: str | None = None
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
    }


def batch(readings: list[dict[str, Any]], *, replay: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "sensor:readings:batch",
        "serverTime": "2026-01-01T00:00:10.000Z",
        "batches": [{"unitId": r["unitId"], "readings": [r], "count": 1} for r in readings],
    }
    if replay:
        message["replay"] = True
    return message


def wait_until(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class ContractPeer:
    """Answers hello/subscribe/unsubscribe/getLatest/sendCommand as the contract says;
    records every handshake and message. Attributes tune the answers per test."""

    def __init__(self) -> None:
        self.handshakes: list[Request] = []
        self.received: list[dict[str, Any]] = []
        self.connections: list[ServerConnection] = []
        self.refuse_handshakes = False
        self.replay: list[dict[str, Any]] = []
        self.answer_get_latest = True
        self.command_outcome = "ack"  # ack | ack-before-accepted | error | timeout
        self._ids = itertools.count(1)
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}"

    def start(self) -> None:
        self._server = serve(
            self._serve, "127.0.0.1", 0, subprotocols=[SUBPROTOCOL], process_request=self._handshake
        )
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

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
                        "serverTime": "2026-01-01T00:00:00.000Z",
                        "subscription": subscription,
                    }
                ]
                if message.get("resume") and self.replay:
                    answers.append(batch(self.replay, replay=True))
                return answers
            case "subscribe":
                if message.get("scope") == "org":
                    subscription.update(scope="org", unitIds=[], siteIds=[])
                else:
                    units = [] if subscription["scope"] == "org" else subscription["unitIds"]
                    subscription.update(scope="selected", unitIds=sorted({*units, *message["unitIds"]}))
                return [{"type": "subscribed", "requestId": request_id, "subscription": subscription}]
            case "getLatest":
                if not self.answer_get_latest:
                    return []
                latest = reading("r-latest", message["unitId"], "2026-01-01T00:00:00.000Z")
                return [
                    {
                        "type": "latest",
                        "requestId": request_id,
                        "unitId": message["unitId"],
                        "reading": latest,
                    }
                ]
            case "sendCommand":
                return self._command_answers(request_id)
            case "refreshToken":
                claims = json.loads(base64.urlsafe_b64decode(message["token"].split(".")[1] + "=="))
                expires_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(claims["exp"]))
                return [{"type": "tokenRefreshed", "requestId": request_id, "expiresAt": expires_at}]
        return [
            {"type": "error", "requestId": request_id, "error": {"code": "unknown_action", "message": "?"}}
        ]

    def _command_answers(self, request_id: str | None) -> list[dict[str, Any]]:
        command_id = f"cmd-{next(self._ids)}"
        accepted = {"type": "command:accepted", "requestId": request_id, "commandId": command_id}
        ack = {"type": "command:ack", "requestId": request_id, "commandId": command_id, "status": "ok"}
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


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def web_origin() -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(WEB_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from debian_chromium()


@pytest.fixture
def peer() -> Iterator[ContractPeer]:
    contract_peer = ContractPeer()
    contract_peer.start()
    yield contract_peer
    contract_peer.stop()


@pytest.fixture
def page(browser: Browser, web_origin: str) -> Iterator[Page]:
    context = browser.new_context()
    harness = context.new_page()
    # Any page really served from loopback (a 404 does): the module imports as in the dashboard,
    # and Chromium's local network access checks let a loopback page reach the loopback peer.
    harness.goto(f"{web_origin}/harness")
    yield harness
    context.close()


def start_client(
    page: Page, url: str, token: str = VALID_TOKEN, *, tokens: list[str] | None = None, **options: Any
) -> None:
    """Create ``window.client`` with short retry delays; its events collect in ``window.events``.
    With ``tokens``, its token option is a function handing them out in turn."""
    page.evaluate(
        """async ({ url, token, tokens, options }) => {
            const { SensorStreamClient } = await import("/sensor-stream-client.js");
            const fast = { minRetryDelayMs: 50, maxRetryDelayMs: 200 };
            const next = async () => (tokens.length > 1 ? tokens.shift() : tokens[0]);
            const client = new SensorStreamClient({ url, token: tokens ? next : token, ...fast, ...options });
            window.client = client;
            window.events = [];
            for (const type of ["status", "readings", "subscription", "error"]) {
                client.addEventListener(type, (event) => window.events.push({ type, detail: event.detail }));
            }
            client.connect();
        }""",
        {"url": url, "token": token, "tokens": tokens, "options": options},
    )


def events(page: Page, event_type: str) -> list[Any]:
    return page.evaluate(
        "(type) => window.events.filter((e) => e.type === type).map((e) => e.detail)", event_type
    )


def statuses(page: Page) -> list[str]:
    return [detail["status"] for detail in events(page, "status")]


def wait_for_status(page: Page, status: str, count: int = 1) -> None:
    wait_until(lambda: statuses(page).count(status) >= count, f"status {status!r} x{count}")


def call(page: Page, expression: str) -> Any:
    """Await ``expression`` in the page; a rejection comes back as ``{"rejected": {code, message}}``."""
    return page.evaluate(
        f"""async () => {{
            try {{ return {{ resolved: await ({expression}) }}; }}
            catch (error) {{ return {{ rejected: {{ code: error.code, message: error.message }} }}; }}
        }}"""
    )


def test_connects_with_the_token_as_subprotocol_and_says_hello(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url)
    wait_for_status(page, "connected")

    (request,) = peer.handshakes
    assert request.headers["Sec-WebSocket-Protocol"] == f"{SUBPROTOCOL}, bearer.{VALID_TOKEN}"
    assert request.path == "/"
    (hello,) = peer.messages("hello")
    assert "resume" not in hello
    assert hello["requestId"]
    assert statuses(page) == ["connecting", "connected"]
    assert page.evaluate("window.client.connectionId") == "conn-1"
    assert events(page, "subscription") == [{"scope": "org", "unitIds": [], "siteIds": []}]


def test_a_refused_handshake_ends_in_unauthorized_without_retrying_forever(
    page: Page, peer: ContractPeer
) -> None:
    peer.refuse_handshakes = True
    start_client(page, peer.url, maxRefusals=2)
    wait_for_status(page, "unauthorized")

    assert len(peer.handshakes) == 2
    assert statuses(page) == ["connecting", "reconnecting", "reconnecting", "unauthorized"]
    # Many retry delays (at most 200 ms here) later, nothing was tried again.
    time.sleep(1.5)
    assert len(peer.handshakes) == 2
    assert call(page, "window.client.getLatest('u1')") == {
        "rejected": {"code": "not_connected", "message": "not connected (unauthorized)"}
    }


def test_an_expired_token_is_not_even_offered(page: Page, peer: ContractPeer) -> None:
    expired = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) - 60})
    start_client(page, peer.url, token=expired)
    wait_for_status(page, "unauthorized")

    assert peer.handshakes == []
    assert events(page, "status")[-1]["reason"] == "the token has expired"


def test_reconnects_and_resumes_from_the_newest_reading_without_duplicates(
    page: Page, peer: ContractPeer
) -> None:
    start_client(page, peer.url, resumeOverlapMs=0)
    wait_for_status(page, "connected")
    first = reading("r1", "u1", "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:01.200Z")
    # A device clock running ahead: its receivedAt (server time) is the earlier of the two.
    ahead = reading("r2", "u2", "2026-01-01T00:04:00.000Z", "2026-01-01T00:00:02.300Z")
    peer.push(batch([first, ahead]))
    wait_until(lambda: events(page, "readings"), "the first readings")

    missed = reading("r3", "u1", "2026-01-01T00:00:03.000Z")
    peer.replay = [ahead, missed]  # the replay overlaps what the client has
    peer.drop()
    wait_for_status(page, "connected", count=2)
    wait_until(lambda: len(events(page, "readings")) >= 2, "the replayed readings")

    second_hello = peer.messages("hello")[1]
    assert second_hello["resume"] == {"since": "2026-01-01T00:00:02.300Z"}
    assert len(peer.handshakes) == 2
    assert statuses(page)[:3] == ["connecting", "connected", "reconnecting"]
    live, replayed = events(page, "readings")
    assert [r["id"] for r in live["readings"]] == ["r1", "r2"]
    assert live["replay"] is False
    assert [r["id"] for r in replayed["readings"]] == ["r3"]
    assert replayed["replay"] is True


def test_the_subscription_is_restored_after_a_reconnect(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    answer = call(page, "window.client.subscribe({ unitIds: ['u1'] })")
    assert answer == {"resolved": {"scope": "selected", "unitIds": ["u1"], "siteIds": []}}

    peer.drop()
    wait_until(lambda: len(peer.messages("subscribe")) == 2, "the subscription to be restored")
    assert peer.messages("subscribe")[1]["unitIds"] == ["u1"]
    wait_until(lambda: len(events(page, "subscription")) == 3, "the restored subscription")
    assert events(page, "subscription")[-1]["unitIds"] == ["u1"]

    # Whatever the server still sends outside the selection is not surfaced.
    peer.push(batch([reading("other", "u2", "2026-01-01T00:00:05.000Z")]))
    peer.push(batch([reading("mine", "u1", "2026-01-01T00:00:05.000Z")]))
    wait_until(lambda: events(page, "readings"), "readings")
    assert [r["id"] for detail in events(page, "readings") for r in detail["readings"]] == ["mine"]


def test_readings_are_deduplicated_with_bounded_memory(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url, maxRememberedIds=2)
    wait_for_status(page, "connected")
    a, b, c = (reading(i, "u1", f"2026-01-01T00:00:0{n}.000Z") for n, i in enumerate("abc", start=1))
    peer.push(batch([a, b]))
    peer.push(batch([b]))  # a repeat: not surfaced
    peer.push(batch([c]))  # remembering c forgets a, the oldest
    peer.push(batch([a]))
    wait_until(lambda: len(events(page, "readings")) >= 3, "three fresh batches")
    assert [[r["id"] for r in detail["readings"]] for detail in events(page, "readings")] == [
        ["a", "b"],
        ["c"],
        ["a"],
    ]


def test_get_latest_resolves_with_the_reading_or_times_out(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url, requestTimeoutMs=300)
    wait_for_status(page, "connected")
    answer = call(page, "window.client.getLatest('u7')")
    assert answer["resolved"]["unitId"] == "u7"

    peer.answer_get_latest = False
    assert call(page, "window.client.getLatest('u7')")["rejected"]["code"] == "timeout"


@pytest.mark.parametrize("outcome", ["ack", "ack-before-accepted"])
def test_send_command_resolves_with_the_ack(page: Page, peer: ContractPeer, outcome: str) -> None:
    peer.command_outcome = outcome
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    result = page.evaluate(
        """async () => {
            const accepted = [];
            const ack = await window.client.sendCommand("dev-1", "blink", { times: 2 }, {
                onAccepted: (commandId) => accepted.push(commandId),
            });
            return { ack, accepted };
        }"""
    )
    assert result["ack"]["status"] == "ok"
    assert result["accepted"] == [result["ack"]["commandId"]]
    (sent,) = peer.messages("sendCommand")
    assert sent["deviceId"] == "dev-1"
    assert sent["command"] == "blink"
    assert sent["params"] == {"times": 2}


@pytest.mark.parametrize(
    ("outcome", "code"),
    [("error", "command_failed"), ("timeout", "command_timeout"), ("unknown-device", "not_found")],
)
def test_send_command_rejects_when_the_command_fails(
    page: Page, peer: ContractPeer, outcome: str, code: str
) -> None:
    peer.command_outcome = outcome
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    assert call(page, "window.client.sendCommand('dev-1', 'blink')")["rejected"]["code"] == code


def test_errors_no_request_claims_reach_the_caller_as_events(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    peer.push({"type": "error", "error": {"code": "throttled", "message": "slow down"}})
    wait_until(lambda: events(page, "error"), "the error event")
    assert events(page, "error") == [{"code": "throttled", "message": "slow down"}]


def test_pending_requests_fail_when_the_connection_drops(page: Page, peer: ContractPeer) -> None:
    peer.answer_get_latest = False
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    page.evaluate("() => { window.pending = window.client.getLatest('u1').catch((error) => error.code); }")
    wait_until(lambda: peer.messages("getLatest"), "the request")
    peer.drop()
    assert page.evaluate("window.pending") == "disconnected"


def test_a_connection_the_server_forgot_is_replaced(page: Page, peer: ContractPeer) -> None:
    start_client(page, peer.url)
    wait_for_status(page, "connected")
    forgotten = {"code": "unauthorized", "message": "this connection is not registered; reconnect"}
    peer.push({"type": "error", "error": forgotten})
    wait_for_status(page, "connected", count=2)
    assert len(peer.handshakes) == 2


def test_a_token_function_extends_the_session_before_the_token_expires(
    page: Page, peer: ContractPeer
) -> None:
    short = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 3})
    fresh = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 3600})
    start_client(page, peer.url, tokens=[short, fresh], refreshAheadMs=2500)
    wait_for_status(page, "connected")

    wait_until(lambda: peer.messages("refreshToken"), "a refreshToken request")

    assert peer.messages("refreshToken")[0]["token"] == fresh
    assert len(peer.handshakes) == 1  # the same connection, extended
    assert events(page, "error") == []


def test_a_session_ended_at_token_expiry_reconnects_with_a_fresh_token_and_resumes(
    page: Page, peer: ContractPeer
) -> None:
    first = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 3600})
    second = fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 7200})
    start_client(page, peer.url, tokens=[first, second], refreshAheadMs=0)
    wait_for_status(page, "connected")
    peer.push(batch([reading("r1", "u1", "2026-01-01T00:00:01.000Z")]))
    wait_until(lambda: events(page, "readings"), "the first reading")

    # What the flush does when a token expires: says so, then closes the connection.
    peer.push({"type": "error", "error": {"code": "token_expired", "message": "your token expired"}})
    peer.drop()
    wait_for_status(page, "connected", count=2)

    assert peer.handshakes[1].headers["Sec-WebSocket-Protocol"] == f"{SUBPROTOCOL}, bearer.{second}"
    assert peer.messages("hello")[1]["resume"] == {"since": "2025-12-31T23:59:56.000Z"}
