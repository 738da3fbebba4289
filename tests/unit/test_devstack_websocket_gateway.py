"""The API Gateway WebSocket emulator, driven by a real WebSocket client and by botocore's
``apigatewaymanagementapi`` client, with recording handlers in place of the functions."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from botocore.config import Config
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import CloseCode
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from devstack.faults import GatewayFaults, GatewayFaultSettings
from devstack.http_server import AsyncHttpServer
from devstack.lambda_runtime import InProcessFunction
from devstack.websocket_gateway import (
    MAX_FRAME_BYTES,
    GatewayLimits,
    Routes,
    TokenBucket,
    WebSocketGateway,
    _text_frames,
)

GOOD_TOKEN = "bearer.good-token"


class RecordingHandler:
    def __init__(self, respond: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._respond = respond or (lambda event: {"statusCode": 200})
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._lock:
            self.events.append(event)
        return self._respond(event)

    def routes(self) -> list[str]:
        with self._lock:
            return [event["requestContext"]["routeKey"] for event in self.events]

    def wait_for_route(self, route_key: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for event in self.events:
                    if event["requestContext"]["routeKey"] == route_key:
                        return event
            time.sleep(0.01)
        raise AssertionError(f"no {route_key} invocation; saw {self.routes()}")


def connect_handler(event: dict[str, Any]) -> dict[str, Any]:
    if event["requestContext"]["routeKey"] != "$connect":
        return {"statusCode": 200}
    offered = [p.strip() for p in event["headers"].get("Sec-WebSocket-Protocol", "").split(",")]
    if GOOD_TOKEN not in offered:
        return {"statusCode": 401, "body": '{"error": {"code": "unauthorized"}}'}
    return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "sensor-stream.v1"}}


@dataclass
class RunningGateway:
    gateway: WebSocketGateway
    websocket_url: str
    callback_url: str
    session_handler: RecordingHandler
    command_handler: RecordingHandler

    def management(self, attempts: int | None = None) -> Any:
        config = Config(retries={"mode": "standard", "total_max_attempts": attempts}) if attempts else None
        return boto3.client(
            "apigatewaymanagementapi", endpoint_url=self.callback_url, region_name="eu-west-1", config=config
        )

    def open(self, token: str = GOOD_TOKEN) -> ClientConnection:
        offer = [Subprotocol("sensor-stream.v1"), Subprotocol(token)]
        return connect(self.websocket_url, subprotocols=offer, open_timeout=10)

    def connection_id(self) -> str:
        return str(self.session_handler.wait_for_route("$connect")["requestContext"]["connectionId"])


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., RunningGateway]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started: list[tuple[WebSocketGateway, AsyncHttpServer]] = []

    def start(limits: GatewayLimits | None = None, faults: GatewayFaults | None = None) -> RunningGateway:
        sessions = RecordingHandler(connect_handler)
        commands = RecordingHandler()
        session_function = InProcessFunction("connect", sessions, timeout_seconds=5)
        routes = Routes(
            connect=session_function,
            disconnect=session_function,
            default=session_function,
            by_action={
                "hello": session_function,
                "sendCommand": InProcessFunction("publish", commands, timeout_seconds=5),
            },
        )
        gateway = WebSocketGateway(routes, stage="local", limits=limits, faults=faults)
        port = asyncio.run_coroutine_threadsafe(gateway.start(0), loop).result(10)
        # As the stack serves it: on the gateway's event loop.
        management = AsyncHttpServer("management", gateway.management_api)
        asyncio.run_coroutine_threadsafe(management.start(0), loop).result(10)
        started.append((gateway, management))
        return RunningGateway(
            gateway, f"ws://127.0.0.1:{port}", f"{management.url}/local", sessions, commands
        )

    yield start
    for gateway, management in started:
        asyncio.run_coroutine_threadsafe(management.stop(), loop).result(10)
        asyncio.run_coroutine_threadsafe(gateway.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()


def test_connect_passes_the_handshake_to_the_handler_and_echoes_its_subprotocol(start_gateway):
    running = start_gateway()
    with running.open() as client:
        assert client.subprotocol == "sensor-stream.v1"
    event = running.session_handler.wait_for_route("$connect")

    parsed = parse(event=event, model=APIGatewayWebSocketConnectEventModel)
    assert event["headers"]["Sec-WebSocket-Protocol"] == f"sensor-stream.v1, {GOOD_TOKEN}"
    assert event["multiValueHeaders"]["Sec-WebSocket-Protocol"] == [f"sensor-stream.v1, {GOOD_TOKEN}"]
    assert parsed.request_context.stage == "local"
    assert len(parsed.request_context.connection_id) == 16
    assert str(parsed.request_context.identity.source_ip).startswith("127.0.0.1")


def test_a_refusing_connect_handler_refuses_the_handshake_with_its_status(start_gateway):
    running = start_gateway()
    with pytest.raises(InvalidStatus) as refused:
        running.open("bearer.bad-token")

    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b'{"error": {"code": "unauthorized"}}'
    assert running.session_handler.routes() == ["$connect"]


def test_a_plain_http_request_gets_426_without_a_connect(start_gateway):
    running = start_gateway()
    request = urllib.request.Request(running.websocket_url.replace("ws://", "http://"))  # noqa: S310 - loopback
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback
    # The error holds the connection open, and the server waits for it to close (10 s).
    answer.value.close()

    assert answer.value.code == 426
    assert running.session_handler.events == []


def test_messages_are_routed_on_the_action_field(start_gateway):
    running = start_gateway()
    with running.open() as client:
        client.send(json.dumps({"action": "hello"}))
        client.send(json.dumps({"action": "sendCommand", "deviceId": "d1"}))
        client.send(json.dumps({"action": "somethingElse"}))
        client.send("not json at all")
        client.send(b"\x00\x01binary")
        running.command_handler.wait_for_route("sendCommand")
        deadline = time.monotonic() + 10
        while running.session_handler.routes().count("$default") < 3 and time.monotonic() < deadline:
            time.sleep(0.01)

    sessions = [e for e in running.session_handler.events if e["requestContext"]["eventType"] == "MESSAGE"]
    for event in sessions + running.command_handler.events:
        parse(event=event, model=APIGatewayWebSocketMessageEventModel)
    by_body = {e["body"]: e for e in sessions}
    assert by_body['{"action": "hello"}']["requestContext"]["routeKey"] == "hello"
    assert by_body['{"action": "somethingElse"}']["requestContext"]["routeKey"] == "$default"
    assert by_body["not json at all"]["requestContext"]["routeKey"] == "$default"
    binary = by_body["AAFiaW5hcnk="]
    assert (binary["requestContext"]["routeKey"], binary["isBase64Encoded"]) == ("$default", True)
    assert running.command_handler.events[0]["body"] == '{"action": "sendCommand", "deviceId": "d1"}'


@pytest.mark.parametrize(
    "body",
    [
        # json.loads raised RecursionError on the first, which killed the emulator's task
        # for the message: no route, no answer.
        '{"action": "hello", "x": ' + "[" * 50_000,
        '{"action": "hello", "x": ' + "1" * 5000 + "}",
    ],
    ids=["nested-50000-deep", "integer-of-5000-digits"],
)
def test_a_body_whose_action_cannot_be_read_is_routed_to_default(body: str):
    session_function = InProcessFunction("connect", RecordingHandler(), timeout_seconds=5)
    routes = Routes(
        connect=session_function,
        disconnect=session_function,
        default=session_function,
        by_action={"hello": InProcessFunction("hello", RecordingHandler(), timeout_seconds=5)},
    )

    assert routes.select(body) == ("$default", session_function)


def test_management_api_answers_like_api_gateway(start_gateway):
    running = start_gateway()
    management = running.management()
    with running.open() as client:
        connection_id = running.connection_id()
        management.post_to_connection(ConnectionId=connection_id, Data=b'{"type": "hello"}')
        received = client.recv(timeout=10)
        info = management.get_connection(ConnectionId=connection_id)
        with pytest.raises(management.exceptions.PayloadTooLargeException):
            management.post_to_connection(ConnectionId=connection_id, Data=b"x" * (128 * 1024 + 1))
        with pytest.raises(management.exceptions.GoneException):
            management.post_to_connection(ConnectionId="bm90LWEtY29ubmVjdGlvbg=", Data=b"{}")
        management.delete_connection(ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=10)
    disconnect = running.session_handler.wait_for_route("$disconnect")
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=connection_id, Data=b"{}")

    assert received == '{"type": "hello"}'
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    assert info["ConnectedAt"] <= info["LastActiveAt"]
    parse(event=disconnect, model=APIGatewayWebSocketDisconnectEventModel)


def test_a_large_post_arrives_whole(start_gateway):
    running = start_gateway()
    document = json.dumps({"text": "é" * 50_000}, ensure_ascii=False)
    with running.open() as client:
        running.management().post_to_connection(ConnectionId=running.connection_id(), Data=document.encode())
        assert client.recv(timeout=10) == document


def test_frames_over_32_kb_close_the_connection_but_fragmented_messages_pass(start_gateway):
    running = start_gateway()
    with running.open() as client:
        client.send(["a" * 20_000, "b" * 20_000])  # 40 KB in two frames
        running.session_handler.wait_for_route("$default")
        client.send("c" * (MAX_FRAME_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=10)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG


def test_messages_over_128_kb_close_the_connection(start_gateway):
    running = start_gateway()

    def send_oversized_then_wait(client: Any) -> None:
        client.send(["x" * 30_000] * 5)  # 150 KB in frames of 30 KB
        client.recv(timeout=10)

    # The gateway may close while the client is still sending the last frames: the close
    # then surfaces from send instead of recv.
    with running.open() as client, pytest.raises(ConnectionClosed) as closed:
        send_oversized_then_wait(client)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG
    assert "$default" not in running.session_handler.routes()


def test_an_idle_connection_is_closed_with_going_away(start_gateway):
    running = start_gateway(GatewayLimits(idle_seconds=0.3))
    with running.open() as client, pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=10)
    disconnect = running.session_handler.wait_for_route("$disconnect")

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.GOING_AWAY
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1001


@pytest.mark.parametrize("disconnect_on_drop", [True, False])
def test_a_client_that_drops_without_closing_may_get_no_disconnect(start_gateway, disconnect_on_drop):
    running = start_gateway(GatewayLimits(disconnect_on_drop=disconnect_on_drop))
    client = running.open()
    connection_id = running.connection_id()
    client.close_socket()
    management = running.management()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            management.get_connection(ConnectionId=connection_id)
        except management.exceptions.GoneException:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the dropped connection is still known")
    # A clean close of another client proves any $disconnect of the first would be in by now.
    with running.open():
        pass
    deadline = time.monotonic() + 10
    while running.session_handler.routes().count("$disconnect") < 1 + disconnect_on_drop:
        assert time.monotonic() < deadline, running.session_handler.routes()
        time.sleep(0.02)

    disconnects = [
        e for e in running.session_handler.events if e["requestContext"]["routeKey"] == "$disconnect"
    ]
    dropped = [e for e in disconnects if e["requestContext"]["connectionId"] == connection_id]
    assert [e["requestContext"]["disconnectStatusCode"] for e in dropped] == (
        [1006] if disconnect_on_drop else []
    )


@pytest.mark.parametrize(
    "text",
    ["short", "a" * (MAX_FRAME_BYTES + 5), "€" * 20_000, "x" + "😀" * 9_000],
    ids=["short", "ascii", "3-byte", "4-byte"],
)
def test_outgoing_text_is_cut_into_frames_of_32_kb_on_character_boundaries(text):
    frames, is_text = _text_frames(text.encode())

    pieces = [frames] if isinstance(frames, bytes) else frames
    assert is_text
    assert "".join(piece.decode() for piece in pieces) == text  # each piece decodes alone
    assert all(len(piece) <= MAX_FRAME_BYTES for piece in pieces)


@pytest.mark.parametrize("size", [10, MAX_FRAME_BYTES + 1])
def test_outgoing_bytes_that_are_not_utf8_stay_binary(size):
    data = b"\xff" * size

    frames, is_text = _text_frames(data)

    assert not is_text
    assert (frames if isinstance(frames, bytes) else b"".join(frames)) == data


def test_a_post_is_accepted_before_the_client_reads_and_a_full_buffer_answers_429_then_410(start_gateway):
    faults = GatewayFaults()
    running = start_gateway(GatewayLimits(client_buffer_bytes=10_000, stalled_close_seconds=0.3), faults)
    # No SDK retries: they would outlast the stall limit.
    management = running.management(attempts=1)
    with running.open() as client:
        connection_id = running.connection_id()
        # The client's link stops: the first message goes out, the rest stay buffered.
        faults.set_slow(connection_id, 0)
        management.post_to_connection(ConnectionId=connection_id, Data=b"first")
        first = client.recv(timeout=10)
        started = time.monotonic()
        for _ in range(2):
            management.post_to_connection(ConnectionId=connection_id, Data=b"x" * 4_000)
        accepted_in = time.monotonic() - started
        # 8 KB buffered of 10 KB: the next 4 KB do not fit.
        with pytest.raises(management.exceptions.LimitExceededException):
            management.post_to_connection(ConnectionId=connection_id, Data=b"x" * 4_000)
        time.sleep(0.4)
        # Still full after the stall limit: the gateway drops the client.
        with pytest.raises(management.exceptions.GoneException):
            management.post_to_connection(ConnectionId=connection_id, Data=b"x" * 4_000)
        disconnect = running.session_handler.wait_for_route("$disconnect")
        with pytest.raises(management.exceptions.GoneException):
            management.post_to_connection(ConnectionId=connection_id, Data=b"{}")
        del client

    assert first == "first"
    assert accepted_in < 5
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1001


def test_messages_beyond_the_stages_token_bucket_are_answered_too_many_requests(start_gateway):
    running = start_gateway(GatewayLimits(throttle_rate=0.001, throttle_burst=2))
    with running.open() as client:
        connection_id = running.connection_id()
        for number in range(3):
            client.send(json.dumps({"action": "hello", "n": number}))
        answer = json.loads(client.recv(timeout=10))
        time.sleep(0.2)

    hellos = [e for e in running.session_handler.events if e["requestContext"]["routeKey"] == "hello"]
    assert answer["message"] == "Too Many Requests"
    assert answer["connectionId"] == connection_id
    assert len(hellos) == 2


def test_gateway_faults_answer_410_for_chosen_connections_while_they_stay_open(start_gateway):
    faults = GatewayFaults()
    running = start_gateway(faults=faults)
    management = running.management()
    with running.open() as client:
        connection_id = running.connection_id()
        faults.settings = GatewayFaultSettings(gone_connection_ids=[connection_id])
        with pytest.raises(management.exceptions.GoneException):
            management.post_to_connection(ConnectionId=connection_id, Data=b"{}")
        faults.reset()
        management.post_to_connection(ConnectionId=connection_id, Data=b'{"after": "reset"}')
        received = client.recv(timeout=10)

    assert received == '{"after": "reset"}'


def test_post_latency_holds_back_the_answer_of_every_post(start_gateway):
    faults = GatewayFaults()
    running = start_gateway(faults=faults)
    management = running.management()
    with running.open() as client:
        connection_id = running.connection_id()
        faults.settings = GatewayFaultSettings.model_validate({"postLatencyMs": {"median": 300, "p99": 300}})
        started = time.monotonic()
        management.post_to_connection(ConnectionId=connection_id, Data=b"late")
        posted_in = time.monotonic() - started
        with pytest.raises(management.exceptions.GoneException):
            management.post_to_connection(ConnectionId="bm90LWEtY29ubmVjdGlvbg=", Data=b"{}")
        refused_in = time.monotonic() - started - posted_in
        received = client.recv(timeout=10)

    assert received == "late"
    # Lower bounds only: a sleep never ends early; how much later it ends says nothing.
    assert posted_in >= 0.3
    assert refused_in >= 0.3


def test_the_token_bucket_refills_at_its_rate_up_to_its_burst():
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])

    first = [bucket.take() for _ in range(4)]
    now[0] = 1.0
    after_a_second = [bucket.take() for _ in range(3)]
    now[0] = 100.0
    after_long = [bucket.take() for _ in range(4)]

    assert first == [True, True, True, False]
    assert after_a_second == [True, True, False]
    assert after_long == [True, True, True, False]


def test_a_post_during_connect_is_gone_as_in_api_gateway(start_gateway):
    running = start_gateway()
    management = running.management(attempts=1)
    outcomes: list[str] = []

    def post_to_itself_then_accept(event: dict[str, Any]) -> dict[str, Any]:
        context = event["requestContext"]
        if context["routeKey"] == "$connect":
            try:
                management.post_to_connection(ConnectionId=context["connectionId"], Data=b"{}")
                outcomes.append("delivered")
            except management.exceptions.GoneException:
                outcomes.append("gone")
        return connect_handler(event)

    running.session_handler._respond = post_to_itself_then_accept
    with running.open():
        pass

    assert outcomes == ["gone"]


def test_a_client_that_leaves_while_connect_runs_is_forgotten_quietly(start_gateway, caplog):
    caplog.set_level(logging.INFO)
    running = start_gateway()
    client_left = threading.Event()

    def connect_after_the_client_left(event: dict[str, Any]) -> dict[str, Any]:
        if event["requestContext"]["routeKey"] == "$connect":
            client_left.wait(10)
            time.sleep(0.2)  # the gateway has seen the socket close
        return connect_handler(event)

    running.session_handler._respond = connect_after_the_client_left
    host, port = running.websocket_url.removeprefix("ws://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: sensor-stream.v1, " + GOOD_TOKEN.encode() + b"\r\n\r\n"
        )
        connection_id = running.connection_id()
    client_left.set()

    def told() -> bool:
        said = f"{connection_id}: the client left during $connect"
        return any(record.getMessage() == said for record in caplog.records)

    deadline = time.monotonic() + 10
    while not told() and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(running.management().exceptions.GoneException):
        running.management().post_to_connection(ConnectionId=connection_id, Data=b"{}")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert told()
    # The gateway goes on serving: the next client connects as usual.
    running.session_handler._respond = connect_handler
    with running.open() as again:
        assert again.subprotocol == "sensor-stream.v1"
