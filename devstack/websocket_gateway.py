"""An API Gateway WebSocket API on loopback: the client side (a WebSocket server that
turns the connection's life into ``$connect``/message/``$disconnect`` invocations) and the
Management API (``POST/GET/DELETE /{stage}/@connections/{id}``) the functions call back.

As in API Gateway, a post is accepted into the connection's outgoing buffer and answered
at once; a writer per connection drains that buffer into the socket. A client that reads
slower than it is sent to fills its buffer: further posts get 429
``LimitExceededException`` ("the WebSocket client side buffer is full"), and a client
whose buffer stays full for ``stalled_close_seconds`` is disconnected (later posts: 410).
Client messages pass the stage's token bucket (``sensor_stream.api_limits``); a message
that finds it empty is answered on the socket with API Gateway's error document and
reaches no function.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import string
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from devstack.config import LOOPBACK
from devstack.events import (
    WebSocketCaller,
    epoch_ms,
    request_id,
    selected_route,
    websocket_connect_event,
    websocket_disconnect_event,
    websocket_message_event,
)
from devstack.faults import GatewayFaults
from devstack.http_server import HttpRequest, HttpResponse
from devstack.lambda_runtime import Function, StackStopping
from sensor_stream.api_limits import (
    WEBSOCKET_THROTTLE_BURST_LIMIT,
    WEBSOCKET_THROTTLE_RATE_LIMIT,
)

log = logging.getLogger("devstack.websocket")

# API Gateway WebSocket limits.
MAX_FRAME_BYTES = 32 * 1024
MAX_MESSAGE_BYTES = 128 * 1024
# Integration timeout of API Gateway (29 s); a $connect slower than that is refused.
INTEGRATION_TIMEOUT_SECONDS = 29.0


@dataclass(frozen=True)
class Routes:
    """Route keys (selected on ``$request.body.action``) and the function behind each."""

    connect: Function
    disconnect: Function
    default: Function
    by_action: Mapping[str, Function]

    def select(self, body: str | bytes) -> tuple[str, Function]:
        route_key = selected_route(body, self.by_action)
        return route_key, self.by_action.get(route_key, self.default)


@dataclass(frozen=True)
class GatewayLimits:
    idle_seconds: float = 600.0
    max_seconds: float = 7200.0
    # API Gateway does not guarantee $disconnect; False = never for a client that vanishes.
    disconnect_on_drop: bool = True
    # Bytes posted to a connection and not yet taken by its client; more gets 429.
    client_buffer_bytes: int = 1024 * 1024
    # A client whose buffer stays full this long is disconnected.
    stalled_close_seconds: float = 30.0
    # The stage's token bucket for client messages.
    throttle_rate: float = WEBSOCKET_THROTTLE_RATE_LIMIT
    throttle_burst: int = WEBSOCKET_THROTTLE_BURST_LIMIT


class TokenBucket:
    """API Gateway's throttle: ``rate`` tokens a second refill a bucket of ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _new_connection_id() -> str:
    # Like AWS's ids (e.g. "L0SM9cOFvHcCIhw="): 11 random bytes in base64, url-safe so that
    # the id is one path segment even once botocore has percent-encoded it.
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def _new_api_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))


def _iso(epoch_ms: int) -> str:
    return (
        datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _text_frames(data: bytes) -> tuple[bytes | list[bytes], bool]:
    """The message as API Gateway delivers it: text when it is UTF-8 (sent as the bytes
    they are, not decoded and encoded again), in frames of 32 KB; and whether it is text."""
    text = data.isascii()  # JSON from the functions: checked in C, without decoding
    if not text:
        try:
            data.decode("utf-8")
            text = True
        except UnicodeDecodeError:
            pass
    if len(data) <= MAX_FRAME_BYTES:
        return data, text
    chunks: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + MAX_FRAME_BYTES, len(data))
        # Never cut text inside a UTF-8 sequence: back off over continuation bytes.
        while text and end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        chunks.append(data[start:end])
        start = end
    return chunks, text


class _FrameLimitedProtocol(ServerProtocol):
    """websockets limits whole messages only; API Gateway also limits each frame to 32 KB.

    The parser allows ``max_size - cur_size`` bytes for the next frame, where ``cur_size``
    is what the message already holds, so a ``max_size`` that follows ``cur_size`` caps
    every frame while the message limit still holds."""

    message_limit: int = MAX_MESSAGE_BYTES

    @property
    def max_size(self) -> int:
        received = self.cur_size or 0
        return min(self.message_limit, received + MAX_FRAME_BYTES)

    @max_size.setter
    def max_size(self, value: int | None) -> None:
        self.message_limit = value or MAX_MESSAGE_BYTES

    # Set when the client left before its handshake could be answered.
    left_unanswered = False

    def send_response(self, response: Response) -> None:
        # A client that left while $connect ran has no one to answer; websockets would
        # assert CONNECTING and log two tracebacks (python-websockets/websockets#984).
        if self.state is State.CLOSED:
            self.left_unanswered = True
        else:
            super().send_response(response)


class _GatewayServerConnection(ServerConnection):
    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        # websockets builds the protocol itself; give it the frame limit before any data.
        protocol.__class__ = _FrameLimitedProtocol
        super().__init__(protocol, *args, **kwargs)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().handshake(*args, **kwargs)
        except ConnectionClosed:
            # A client that left while $connect ran (the gateway logged it): the connection
            # never opened, websockets drops the socket. Anything else is reported as before.
            if not (isinstance(self.protocol, _FrameLimitedProtocol) and self.protocol.left_unanswered):
                raise


@dataclass
class _Connection:
    connection_id: str
    socket: ServerConnection
    connected_at_ms: int
    source_ip: str
    user_agent: str
    domain_name: str
    opened: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    last_active_ms: int = field(default_factory=epoch_ms)
    # (code, reason) when the gateway itself closes the connection.
    closed_by_gateway: tuple[int, str] | None = None
    # Posted and not yet written to the socket (appended from Management API threads).
    outbox: deque[bytes] = field(default_factory=deque)
    buffered_bytes: int = 0
    # Since when posts have been refused for a full buffer (monotonic), if they are.
    full_since: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def caller(self, api_id: str, stage: str) -> WebSocketCaller:
        return WebSocketCaller(
            api_id,
            stage,
            self.domain_name,
            self.connection_id,
            self.connected_at_ms,
            self.source_ip,
            self.user_agent,
        )

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_active_ms = epoch_ms()


@dataclass
class _Handshake:
    connection_id: str
    connected_at_ms: int
    subprotocol: str | None = None


class WebSocketGateway:
    def __init__(
        self,
        routes: Routes,
        *,
        stage: str,
        limits: GatewayLimits | None = None,
        faults: GatewayFaults | None = None,
    ) -> None:
        self._routes = routes
        self.stage = stage
        self.api_id = _new_api_id()
        self._limits = limits or GatewayLimits()
        self._faults = faults or GatewayFaults()
        self._throttle = TokenBucket(self._limits.throttle_rate, self._limits.throttle_burst)
        # Weak: a client that leaves mid-handshake must not pin its entry.
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, _Handshake] = (
            weakref.WeakKeyDictionary()
        )
        self._connections: dict[str, _Connection] = {}
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    # --- client side ----------------------------------------------------------------

    async def start(self, port: int) -> int:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._server = await serve(
            self._serve_connection,
            LOOPBACK,
            port,
            process_request=self._on_handshake_request,
            process_response=self._on_handshake_response,
            create_connection=_GatewayServerConnection,
            # API Gateway neither compresses nor pings; it answers the client's pings.
            compression=None,
            ping_interval=None,
            max_size=MAX_MESSAGE_BYTES,
            server_header=None,
        )
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _invoke(self, function: Function, event: dict[str, Any]) -> Any:
        return await asyncio.wrap_future(function.submit(event))

    async def _on_handshake_request(self, socket: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            # A plain HTTP request (a browser tab, a probe): no $connect for it.
            return socket.respond(
                HTTPStatus.UPGRADE_REQUIRED, "WebSocket endpoint: connect with a WebSocket client\n"
            )
        connection_id = _new_connection_id()
        connected_at_ms = epoch_ms()
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.raw_items():
            headers.setdefault(name, []).append(value)
        source_ip = str(socket.remote_address[0])
        headers["X-Forwarded-For"] = [source_ip]
        headers["X-Forwarded-Port"] = [str(socket.local_address[1])]
        headers["X-Forwarded-Proto"] = ["http"]
        caller = WebSocketCaller(
            self.api_id,
            self.stage,
            request.headers.get("Host", LOOPBACK),
            connection_id,
            connected_at_ms,
            source_ip,
            request.headers.get("User-Agent", ""),
        )
        event = websocket_connect_event(caller, headers, urlsplit(request.path).query)
        try:
            result = await asyncio.wait_for(
                self._invoke(self._routes.connect, event), timeout=INTEGRATION_TIMEOUT_SECONDS
            )
        except Exception as error:
            if not isinstance(error, StackStopping):
                log.exception("$connect failed for %s", connection_id)
            return socket.respond(HTTPStatus.INTERNAL_SERVER_ERROR, '{"message": "Internal server error"}')
        if socket.protocol.state is State.CLOSED:
            # Nothing to answer; posts to its id get 410, as to any connection that never opened.
            log.info("%s: the client left during $connect", connection_id)
            return None
        status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
        if not 200 <= status < 300:
            body = result.get("body") if isinstance(result, dict) else None
            return socket.respond(status, body if isinstance(body, str) else "")
        response_headers = Headers(result.get("headers") or {}) if isinstance(result, dict) else Headers()
        self._handshakes[socket] = _Handshake(
            connection_id, connected_at_ms, response_headers.get("Sec-WebSocket-Protocol")
        )
        return None

    def _on_handshake_response(self, socket: ServerConnection, request: Request, response: Response) -> None:
        handshake = self._handshakes.get(socket)
        # Echo only what $connect selected: a browser that offered subprotocols closes
        # the socket when none comes back, exactly as it would against AWS.
        if response.status_code == HTTPStatus.SWITCHING_PROTOCOLS and handshake and handshake.subprotocol:
            response.headers["Sec-WebSocket-Protocol"] = handshake.subprotocol

    async def _serve_connection(self, socket: ServerConnection) -> None:
        handshake = self._handshakes.pop(socket, None)
        if handshake is None:  # $connect never ran for it; nothing can address it
            await socket.close(1011, "Internal server error")
            return
        request = socket.request
        connection = _Connection(
            connection_id=handshake.connection_id,
            socket=socket,
            connected_at_ms=handshake.connected_at_ms,
            source_ip=str(socket.remote_address[0]),
            user_agent=request.headers.get("User-Agent", "") if request else "",
            domain_name=request.headers.get("Host", LOOPBACK) if request else LOOPBACK,
        )
        self._connections[connection.connection_id] = connection
        watchdog = asyncio.create_task(self._enforce_limits(connection))
        writer = asyncio.create_task(self._write_posts(connection))
        try:
            async for message in socket:
                connection.touch()
                if self._throttle.take():
                    self._spawn(self._on_message(connection, message))
                else:
                    self._spawn(self._refuse_throttled(connection))
        except ConnectionClosed:
            pass
        finally:
            watchdog.cancel()
            writer.cancel()
            self._connections.pop(connection.connection_id, None)
        await self._on_closed(connection)

    async def _write_posts(self, connection: _Connection) -> None:
        """Drain the connection's buffer into its socket, in the order of the posts."""
        while True:
            await connection.wakeup.wait()
            connection.wakeup.clear()
            while connection.outbox:
                data = connection.outbox[0]
                frames, text = _text_frames(data)
                try:
                    await connection.socket.send(frames, text=text)
                except ConnectionClosed:
                    return
                with connection.lock:
                    connection.outbox.popleft()
                    connection.buffered_bytes -= len(data)
                    connection.full_since = None
                connection.touch()
                bytes_per_second = self._faults.bytes_per_second(connection.connection_id)
                if bytes_per_second is not None:
                    # A slow link: this message takes its time; 0 = a client that stopped reading.
                    await asyncio.sleep(len(data) / bytes_per_second if bytes_per_second else 3600.0)

    async def _refuse_throttled(self, connection: _Connection) -> None:
        # API Gateway's answer to a throttled message (its 429), in the shape of its other
        # error documents on the socket; no integration runs.
        error = {
            "message": "Too Many Requests",
            "connectionId": connection.connection_id,
            "requestId": request_id(),
        }
        await connection.socket.send(json.dumps(error))

    def _spawn(self, coroutine: Any) -> None:
        # Like API Gateway, messages of one connection are handled concurrently.
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _enforce_limits(self, connection: _Connection) -> None:
        while True:
            deadline = min(
                connection.last_active + self._limits.idle_seconds,
                connection.opened + self._limits.max_seconds,
            )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                connection.closed_by_gateway = (1001, "Going away")
                await connection.socket.close(1001, "Going away")
                return
            await asyncio.sleep(remaining)

    async def _on_message(self, connection: _Connection, message: str | bytes) -> None:
        route_key, function = self._routes.select(message)
        event = websocket_message_event(connection.caller(self.api_id, self.stage), route_key, message)
        try:
            await self._invoke(function, event)
        except StackStopping:
            return
        except Exception:
            log.exception("route %s failed for %s", route_key, connection.connection_id)
            # What API Gateway sends the client when the integration fails.
            error = {
                "message": "Internal server error",
                "connectionId": connection.connection_id,
                "requestId": event["requestContext"]["requestId"],
            }
            self.post(connection.connection_id, json.dumps(error).encode())

    async def _on_closed(self, connection: _Connection) -> None:
        if self._stopping:
            return
        received = connection.socket.protocol.close_rcvd
        if connection.closed_by_gateway is not None:
            code, reason = connection.closed_by_gateway
        elif received is not None:
            code = received.code
            reason = f"Client-side close frame status code '{code}' - with reason '{received.reason}'"
        else:
            if not self._limits.disconnect_on_drop:
                log.info("%s vanished without a close frame; no $disconnect", connection.connection_id)
                return
            code, reason = 1006, "Connection closed abnormally"
        event = websocket_disconnect_event(connection.caller(self.api_id, self.stage), code, reason)
        try:
            await self._invoke(self._routes.disconnect, event)
        except StackStopping:
            return
        except Exception:
            log.exception("$disconnect failed for %s", connection.connection_id)

    # --- Management API (on the event loop, or from HTTP server threads) ----------------

    def post(self, connection_id: str, data: bytes) -> int:
        """Accept ``data`` into the connection's buffer: 200, 410 (gone) or 429 (full)."""
        connection = self._connections.get(connection_id)
        if connection is None or connection.closed_by_gateway is not None:
            return 410
        if self._faults.post_is_gone(connection_id):
            return 410
        with connection.lock:
            if connection.buffered_bytes + len(data) > self._limits.client_buffer_bytes:
                now = time.monotonic()
                if connection.full_since is None:
                    connection.full_since = now
                elif now - connection.full_since > self._limits.stalled_close_seconds:
                    self._close_stalled(connection)
                    return 410
                return 429
            connection.outbox.append(data)
            connection.buffered_bytes += len(data)
        assert self._loop is not None, "the gateway is not started"
        if threading.get_ident() == self._loop_thread:
            connection.wakeup.set()
        else:
            self._loop.call_soon_threadsafe(connection.wakeup.set)
        return 200

    def _close_stalled(self, connection: _Connection) -> None:
        """A client that stopped reading cannot take a close frame either: drop the TCP
        connection; ``$disconnect`` follows with 1001 (the gateway closed it)."""
        log.warning("%s stopped reading; disconnecting it", connection.connection_id)
        connection.closed_by_gateway = (1001, "Going away")
        assert self._loop is not None
        transport = connection.socket.transport
        self._loop.call_soon_threadsafe(transport.abort)

    def _info(self, connection_id: str) -> dict[str, Any] | None:
        connection = self._connections.get(connection_id)
        if connection is None or connection.closed_by_gateway is not None:
            return None
        return {
            "connectedAt": _iso(connection.connected_at_ms),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            "lastActiveAt": _iso(connection.last_active_ms),
        }

    def _delete(self, connection_id: str) -> bool:
        connection = self._connections.get(connection_id)
        if connection is None or connection.closed_by_gateway is not None:
            return False
        connection.closed_by_gateway = (1000, "Connection closed by the server")
        assert self._loop is not None, "the gateway is not started"
        # Answered at once, as API Gateway does; the close handshake runs on.
        asyncio.run_coroutine_threadsafe(connection.socket.close(1000), self._loop)
        return True

    async def management_api(self, request: HttpRequest) -> HttpResponse:
        """``/{stage}/@connections/{connectionId}``, answered as API Gateway does, served
        on the gateway's event loop (devstack/http_server.AsyncHttpServer): a post's
        latency holds the answer on its own HTTP connection only."""
        latency = self._faults.post_latency_seconds() if request.method == "POST" else 0.0
        if latency > 0:
            await asyncio.sleep(latency)
        return self._management_answer(request)

    def management_answer_at_once(self, request: HttpRequest) -> HttpResponse | None:
        """:meth:`management_api`'s answer, given as the request is parsed; None when a
        post latency (fault injection) may hold posts back: those take the endpoint."""
        if request.method == "POST" and self._faults.holds_posts:
            return None
        return self._management_answer(request)

    def _management_answer(self, request: HttpRequest) -> HttpResponse:
        segments = request.raw_path.strip("/").split("/")
        if len(segments) != 3 or segments[0] != self.stage or segments[1] != "@connections":
            return HttpResponse.json(404, {"message": "Not Found"}, {"x-amzn-ErrorType": "NotFoundException"})
        connection_id = unquote(segments[2])
        request_id = {"x-amzn-RequestId": str(uuid.uuid4())}
        if request.method == "POST":
            if len(request.body) > MAX_MESSAGE_BYTES:
                return HttpResponse.json(
                    413,
                    {"message": f"Message too long; the limit is {MAX_MESSAGE_BYTES} bytes"},
                    {"x-amzn-ErrorType": "PayloadTooLargeException", **request_id},
                )
            status = self.post(connection_id, request.body)
            if status == 200:
                return HttpResponse(200, headers=request_id)
            if status == 429:
                return HttpResponse.json(
                    429,
                    {"message": "The WebSocket client side buffer is full"},
                    {"x-amzn-ErrorType": "LimitExceededException", **request_id},
                )
        elif request.method == "GET":
            info = self._info(connection_id)
            if info is not None:
                return HttpResponse.json(200, info, request_id)
        elif request.method == "DELETE":
            if self._delete(connection_id):
                return HttpResponse(204, headers=request_id)
        else:
            return HttpResponse.json(405, {"message": "Method Not Allowed"}, request_id)
        return HttpResponse.json(410, {"message": None}, {"x-amzn-ErrorType": "GoneException", **request_id})
