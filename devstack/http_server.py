"""Small HTTP/1.1 servers on loopback for the emulated AWS endpoints.

The standard library's threading server keeps connections alive (botocore and browsers
reuse them, which matters for the flush's many posts); each endpoint is a plain function
from :class:`HttpRequest` to :class:`HttpResponse`.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
