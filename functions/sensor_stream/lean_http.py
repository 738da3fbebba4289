"""What the lean clients (management_api.py, dynamodb_writes.py) share: kept-alive HTTP/1.1
connections to one endpoint, whose failures raise the botocore exceptions botocore's own
URLLib3Session raises, so callers and botocore's retry rules read them as they read
boto3's; and the signer botocore's ``choose-signer`` event picks.

The connections are plain sockets (TLS by the standard library's ``ssl``, verified
against botocore's CA bundle) with httptools' parser (llhttp, Node's) reading the answer.
A request through urllib3 cost 440-490 us of CPU, through http.client 265-305 us, and
this way 83-94 us (the same 400-byte POST to a loopback server, 5,000 requests, three
runs each; this machine, 23 November 2026): urllib3 and http.client spend most of it on
their own layers (URL parsing, timeouts, header objects, the email parser), which ingest
paid twice a message and the flush once a post (devstack/README.md, "What bounds
throughput").
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httptools
from botocore import UNSIGNED
from botocore.auth import AUTH_TYPE_MAPS
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import get_cert_path

_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# One read; an answer of the Management API or a DynamoDB write fits in one or two.
RECEIVE_BYTES = 65536


def chosen_signer(events: Any, *, service: str, operation: str, region: str, default: str) -> Any:
    """The signer class that the handlers of ``events``' ``choose-signer`` event pick for
    ``operation``, as boto3's clients let them (else ``default``'s); None: unsigned."""
    chosen = events.emit_until_response(
        f"choose-signer.{service}.{operation}",
        signing_name=service,
        region_name=region,
        signature_version=default,
        context={},
    )[1]
    signature = chosen if chosen is not None else default
    return None if signature is UNSIGNED else AUTH_TYPE_MAPS[signature]


class Headers(dict[str, str]):
    """An answer's headers, names lower-cased; looked up in any case."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class HttpAnswer(Protocol):
    """What the lean clients read of an answer (urllib3's responses have it too)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def data(self) -> bytes | None: ...


class Answer:
    """An answer; its headers decoded when first asked for (a post's 200 never is)."""

    __slots__ = ("_header_lines", "_headers", "data", "status")

    def __init__(self, status: int, header_lines: list[tuple[bytes, bytes]], data: bytes) -> None:
        self.status = status
        self._header_lines = header_lines
        self._headers: Headers | None = None
        self.data = data

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in self._header_lines
            )
        return self._headers


class ConnectionPool(Protocol):
    """What the lean clients need of an endpoint's connections (tests answer in-process)."""

    def urlopen(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> HttpAnswer: ...


class AsyncConnectionPool(Protocol):
    """The same on an event loop: the flush's fan-out (tests answer in-process)."""

    async def request(self, method: str, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer: ...

    def close(self) -> None:
        """Close the connections kept idle (on the loop that used them)."""


class _Reader:
    """httptools' callbacks: collects one answer."""

    __slots__ = ("body", "complete", "header_names", "header_values", "keep_alive", "parser")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.header_names: list[bytes] = []
        self.header_values: list[bytes] = []
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_names.append(name)
        self.header_values.append(value)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        # Only valid here: the parser resets once the message is over.
        self.keep_alive = self.parser.should_keep_alive()

    def answer(self) -> Answer:
        header_lines = list(zip(self.header_names, self.header_values, strict=True))
        return Answer(self.parser.get_status_code(), header_lines, b"".join(self.body))


class _Endpoint:
    """Where the requests go, and the limits both clients keep."""

    def __init__(
        self, endpoint_url: str, *, max_connections: int, connect_timeout: float, read_timeout: float
    ) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url!r}")
        self.endpoint_url = endpoint_url
        self._hostname = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._host_header = parts.netloc.rpartition("@")[2].encode("idna")
        self._tls = (
            ssl.create_default_context(cafile=get_cert_path(True)) if parts.scheme == "https" else None
        )
        self._max_idle = max_connections
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: deque[Any] = deque()


class KeepAliveConnections(_Endpoint):
    """HTTP/1.1 requests to the endpoint of ``endpoint_url`` over kept-alive connections:
    as many as are in use at once, of which ``max_connections`` stay open between
    requests (as urllib3's pool with ``block=False``). Safe to share between threads.
    Never retries: a failure raises botocore's exception for it."""

    # deque's append and pop are atomic: threads share it without a lock.
    _idle: deque[socket.socket]

    def urlopen(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> Answer:
        """One request (``url``: a path, or a URL on this endpoint), its answer read whole."""
        request = _request_bytes(method, url, self._host_header, body or b"", headers or {})
        connection = self._take()
        try:
            connection.sendall(request)
            reader = self._read(connection)
        except BaseException:
            connection.close()
            raise
        if reader.keep_alive and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.close()
        return reader.answer()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _take(self) -> socket.socket:
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return self._connect()
            if not _dropped(connection):
                return connection
            connection.close()

    def _connect(self) -> socket.socket:
        try:
            connection = socket.create_connection((self._hostname, self._port), timeout=self._connect_timeout)
        except TimeoutError as error:
            raise ConnectTimeoutError(endpoint_url=self.endpoint_url, error=error) from error
        except OSError as error:  # refused, unreachable, DNS
            raise EndpointConnectionError(endpoint_url=self.endpoint_url, error=error) from error
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            try:
                connection = self._tls.wrap_socket(connection, server_hostname=self._hostname)
            except ssl.SSLError as error:
                connection.close()
                raise SSLError(endpoint_url=self.endpoint_url, error=error) from error
            except TimeoutError as error:
                connection.close()
                raise ConnectTimeoutError(endpoint_url=self.endpoint_url, error=error) from error
            except OSError as error:
                connection.close()
                raise EndpointConnectionError(endpoint_url=self.endpoint_url, error=error) from error
        connection.settimeout(self._read_timeout)
        return connection

    def _read(self, connection: socket.socket) -> _Reader:
        reader = _Reader()
        try:
            while not reader.complete:
                data = connection.recv(RECEIVE_BYTES)
                if not data:
                    if reader.parser.get_status_code() and not reader.keep_alive and _read_to_close(reader):
                        return reader  # an answer whose body ends with the connection
                    raise ConnectionClosedError(endpoint_url=self.endpoint_url, request=None)
                reader.parser.feed_data(data)
        except TimeoutError as error:
            raise ReadTimeoutError(endpoint_url=self.endpoint_url, error=error) from error
        except ssl.SSLError as error:
            raise SSLError(endpoint_url=self.endpoint_url, error=error) from error
        except httptools.HttpParserError as error:
            raise HTTPClientError(error=error) from error
        except ConnectionError as error:  # reset, broken pipe
            raise ConnectionClosedError(endpoint_url=self.endpoint_url, request=None) from error
        return reader


def _request_bytes(
    method: str, url: str, host_header: bytes, payload: bytes, headers: Mapping[str, str]
) -> bytes:
    if not url.startswith("/"):
        url = urlsplit(url)._replace(scheme="", netloc="").geturl() or "/"
    lines = [f"{method} {url} HTTP/1.1", f"Host: {host_header.decode()}"]
    # Host and the body's length are this request's own, whatever ``headers`` says
    # (botocore's prepared requests carry a Content-Length: a second one is a 400).
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in _FRAMING]
    lines.append(f"Content-Length: {len(payload)}")
    # Head and body in one write: two small writes meet Nagle's algorithm.
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


class _AsyncConnection(asyncio.Protocol):
    """One kept-alive connection on the event loop; one request at a time."""

    def __init__(self, endpoint_url: str) -> None:
        self._endpoint_url = endpoint_url
        self.transport: asyncio.Transport | None = None
        self.reader: _Reader | None = None
        self.answered: asyncio.Future[_Reader] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's TCP transports set TCP_NODELAY themselves.
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.reader is None or self.answered is None or self.answered.done():
            self.lost = True  # bytes no request asked for: not reusable
            return
        try:
            self.reader.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.answered.set_exception(HTTPClientError(error=error))
            return
        if self.reader.complete:
            self.answered.set_result(self.reader)

    def eof_received(self) -> bool | None:
        reader, answered = self.reader, self.answered
        if reader is None or answered is None or answered.done():
            return None
        if reader.parser.get_status_code() and not reader.keep_alive and _read_to_close(reader):
            answered.set_result(reader)  # an answer whose body ends with the connection
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.answered is not None and not self.answered.done():
            self.answered.set_exception(ConnectionClosedError(endpoint_url=self._endpoint_url, request=None))


class AsyncKeepAliveConnections(_Endpoint):
    """KeepAliveConnections on an asyncio event loop: one loop posts many requests at once
    without a thread each (the flush's fan-out: ~40 % less CPU a post than its threads,
    docs/posting.md). The same failures, as botocore's exceptions; never retries. Use it
    from one event loop (connections kept idle belong to it)."""

    _idle: deque[_AsyncConnection]
    # The loop the idle connections belong to.
    _loop: asyncio.AbstractEventLoop | None = None

    async def request(self, method: str, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        request = _request_bytes(method, url, self._host_header, body, headers)
        connection = await self._take()
        loop = asyncio.get_running_loop()
        connection.reader = reader = _Reader()
        connection.answered = answered = loop.create_future()
        assert connection.transport is not None
        connection.transport.write(request)
        timer = loop.call_later(self._read_timeout, self._time_out, answered)
        try:
            await answered
        except BaseException:
            connection.transport.close()
            raise
        finally:
            timer.cancel()
            connection.reader = connection.answered = None
        if reader.keep_alive and not connection.lost and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.transport.close()
        return reader.answer()

    def close(self) -> None:
        while self._idle:
            connection = self._idle.pop()
            if connection.transport is not None:
                connection.transport.close()

    def _time_out(self, answered: asyncio.Future[_Reader]) -> None:
        if not answered.done():
            answered.set_exception(
                ReadTimeoutError(endpoint_url=self.endpoint_url, error=TimeoutError("no answer in time"))
            )

    async def _take(self) -> _AsyncConnection:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Another loop's connections (a warm Lambda environment's next invocation)
            # would be served by a loop that no longer runs.
            self._idle.clear()
            self._loop = loop
        while self._idle:
            connection = self._idle.pop()
            assert connection.transport is not None
            # The loop may not have read the server's FIN yet: asked as the threads ask.
            if not connection.lost and not _dropped(connection.transport.get_extra_info("socket")):
                return connection
            connection.transport.close()
        return await self._connect()

    async def _connect(self) -> _AsyncConnection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _AsyncConnection(self.endpoint_url),
                    self._hostname,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._hostname if self._tls is not None else None,
                ),
                self._connect_timeout,
            )
        except TimeoutError as error:
            raise ConnectTimeoutError(endpoint_url=self.endpoint_url, error=error) from error
        except ssl.SSLError as error:
            raise SSLError(endpoint_url=self.endpoint_url, error=error) from error
        except OSError as error:  # refused, unreachable, DNS
            raise EndpointConnectionError(endpoint_url=self.endpoint_url, error=error) from error
        return connection


def _read_to_close(reader: _Reader) -> bool:
    """An answer with neither a length nor chunks ends where the connection does."""
    return not any(name.lower() in (b"content-length", b"transfer-encoding") for name in reader.header_names)


def _dropped(connection: Any) -> bool:
    """Whether an idle connection was closed by the server (readable while idle means the
    end of the stream, or bytes no request asked for): as urllib3 checks before reuse."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def endpoint_pool(
    endpoint_url: str, *, max_connections: int, connect_timeout: float, read_timeout: float
) -> ConnectionPool:
    """The endpoint's kept-alive connections (at most ``max_connections`` kept idle)."""
    return KeepAliveConnections(
        endpoint_url,
        max_connections=max_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
