"""Small HTTP/1.1 servers on loopback for the emulated AWS endpoints.

The standard library's threading server keeps connections alive (botocore and browsers
reuse them); each endpoint is a plain function from :class:`HttpRequest` to
:class:`HttpResponse`. The Management API, which takes the flush's many posts, is served
by :class:`AsyncHttpServer` on the WebSocket emulator's event loop instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httptools

from devstack.config import LOOPBACK

log = logging.getLogger("devstack.http")

# Larger request bodies are refused before they are read (API Gateway's HTTP API: 10 MB).
MAX_BODY_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class HttpRequest:
    method: str
    # The path as sent, still percent-encoded (botocore encodes ids and topics).
    raw_path: str
    raw_query: str
    headers: Message
    body: bytes
    client_ip: str
    protocol: str

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.raw_query, keep_blank_values=True)


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, document: Any, headers: dict[str, str] | None = None) -> HttpResponse:
        return cls(
            status,
            json.dumps(document).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


Endpoint = Callable[[HttpRequest], HttpResponse]


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffered, so head and body leave in one write: two small writes on a kept-alive
    # connection meet Nagle's algorithm and delayed ACKs (40 ms a request).
    wbufsize = 64 * 1024
    endpoint: Endpoint
    server_name: str

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._send(HttpResponse.json(411, {"message": "Content-Length required"}), close=True)
            return
        if length > MAX_BODY_BYTES:
            self._send(HttpResponse.json(413, {"message": "Request Entity Too Large"}), close=True)
            return
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = HttpRequest(
            method=self.command,
            raw_path=parts.path,
            raw_query=parts.query,
            headers=self.headers,
            body=body,
            client_ip=self.client_address[0],
            protocol=self.request_version,
        )
        try:
            response = self.endpoint(request)
        except Exception:
            log.exception("%s: %s %s failed", self.server_name, self.command, parts.path)
            response = HttpResponse.json(500, {"message": "Internal Server Error"})
        self._send(response)

    def _send(self, response: HttpResponse, *, close: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.server_name, *args)


class BackgroundHttpServer:
    """A threading HTTP server on 127.0.0.1, served from a background thread."""

    def __init__(self, name: str, handler: Callable[..., BaseHTTPRequestHandler], port: int) -> None:
        self._server = ThreadingHTTPServer((LOOPBACK, port), handler)
        self._server.daemon_threads = True
        # A short poll: shutdown() waits for the loop to look, and the stack stops several.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"http-{name}", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class LoopbackHttpServer(BackgroundHttpServer):
    """Serves one endpoint function."""

    def __init__(self, name: str, endpoint: Endpoint, port: int) -> None:
        handler = type(
            f"{name}Handler", (_RequestHandler,), {"endpoint": staticmethod(endpoint), "server_name": name}
        )
        super().__init__(name, handler, port)


AsyncEndpoint = Callable[[HttpRequest], Awaitable[HttpResponse]]
# Answers a request on the spot, or None to leave it to the endpoint.
ImmediateEndpoint = Callable[[HttpRequest], HttpResponse | None]


class _AsyncHttpProtocol(asyncio.Protocol):
    """One client connection: requests parsed by httptools, answered in order by the
    endpoint (which may wait), on the event loop."""

    def __init__(self, server: AsyncHttpServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._requests: asyncio.Queue[HttpRequest | HttpResponse | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._client_ip = ""
        # Requests (and refusals) queued for the worker and not yet answered.
        self._unanswered = 0
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._header_names: list[str] = []
        self._header_values: list[str] = []
        self._body: list[bytes] = []
        self._size = 0
        self._refusal: HttpResponse | None = None

    # asyncio's callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client_ip = str(transport.get_extra_info("peername")[0])
        self._worker = asyncio.get_running_loop().create_task(self._answer_in_order())
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._queue(HttpResponse.json(400, {"message": "Bad Request"}))
            self._requests.put_nowait(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._requests.put_nowait(None)

    # httptools' callbacks
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_names.append(name.decode("latin-1"))
        self._header_values.append(value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        names = [name.lower() for name in self._header_names]
        if "transfer-encoding" in names:
            self._refusal = HttpResponse.json(411, {"message": "Content-Length required"})

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY_BYTES:
            self._refusal = HttpResponse.json(413, {"message": "Request Entity Too Large"})
        elif self._refusal is None:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._refusal is not None:
            self._queue(self._refusal)
            self._requests.put_nowait(None)  # and close, as the threaded server does
            self._reset()
            return
        parts = urlsplit(self._url.decode("latin-1"))
        headers = Message()
        for name, value in zip(self._header_names, self._header_values, strict=True):
            headers[name] = value
        request = HttpRequest(
            method=self._parser.get_method().decode(),
            raw_path=parts.path,
            raw_query=parts.query,
            headers=headers,
            body=b"".join(self._body),
            client_ip=self._client_ip,
            protocol=f"HTTP/{self._parser.get_http_version()}",
        )
        keep_alive = self._parser.should_keep_alive()
        self._reset()
        if not self._answered_at_once(request):
            self._queue(request)
        if not keep_alive:
            self._requests.put_nowait(None)

    def _answered_at_once(self, request: HttpRequest) -> bool:
        """The server's immediate endpoint answers here, without a trip through the
        worker's queue, when no earlier request of the connection is still unanswered."""
        immediate = self._server.immediate
        if immediate is None or self._unanswered or self._transport is None:
            return False
        try:
            response = immediate(request)
        except Exception:
            log.exception("%s: %s %s failed", self._server.name, request.method, request.raw_path)
            response = HttpResponse.json(500, {"message": "Internal Server Error"})
        if response is None:
            return False
        if not self._transport.is_closing():
            self._transport.write(_response_bytes(response, head_only=request.method == "HEAD"))
        return True

    def _queue(self, request: HttpRequest | HttpResponse) -> None:
        self._unanswered += 1
        self._requests.put_nowait(request)

    async def _answer_in_order(self) -> None:
        assert self._transport is not None
        while (request := await self._requests.get()) is not None:
            if isinstance(request, HttpResponse):
                response, method = request, "POST"
            else:
                method = request.method
                try:
                    response = await self._server.endpoint(request)
                except Exception:
                    log.exception("%s: %s %s failed", self._server.name, request.method, request.raw_path)
                    response = HttpResponse.json(500, {"message": "Internal Server Error"})
            self._unanswered -= 1
            if self._transport.is_closing():
                return
            self._transport.write(_response_bytes(response, head_only=method == "HEAD"))
        self._transport.close()


def _response_bytes(response: HttpResponse, *, head_only: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {_reason(response.status)}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    lines.append(f"Content-Length: {len(response.body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class AsyncHttpServer:
    """An HTTP/1.1 server on 127.0.0.1 served by the running event loop, for an endpoint
    that answers many small requests (the Management API's posts): no thread per client,
    and httptools' parser (llhttp) instead of the standard library's."""

    def __init__(
        self, name: str, endpoint: AsyncEndpoint, *, immediate: ImmediateEndpoint | None = None
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        # Tried first for each request (on the loop, as it is parsed); None: the endpoint's.
        self.immediate = immediate
        self.connections: set[_AsyncHttpProtocol] = set()
        self._server: asyncio.Server | None = None

    async def start(self, port: int, *, listener: socket.socket | None = None) -> None:
        """Listen on ``port`` of 127.0.0.1, or on ``listener``, a socket bound already."""
        loop = asyncio.get_running_loop()
        if listener is not None:
            self._server = await loop.create_server(lambda: _AsyncHttpProtocol(self), sock=listener)
        else:
            self._server = await loop.create_server(lambda: _AsyncHttpProtocol(self), LOOPBACK, port)

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                if connection._transport is not None:
                    connection._transport.close()
            await self._server.wait_closed()
