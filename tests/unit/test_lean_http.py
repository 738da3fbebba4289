"""The lean clients' HTTP/1.1 transport (sensor_stream/lean_http.py) against scripted
servers on loopback: what it sends, how it reads answers however they are framed, when it
keeps a connection, and the botocore exceptions its failures raise."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor_stream.lean_http import AsyncKeepAliveConnections, KeepAliveConnections

# One answer per request: the bytes to send back, given the request's bytes.
Script = Callable[[bytes], bytes | None]


class ScriptedServer:
    """Reads whole requests (head and Content-Length body) and answers each by ``script``;
    ``None`` closes the connection instead, and ``hang_up`` closes it after each answer.
    Counts connections and records requests."""

    def __init__(self, script: Script, *, tls: ssl.SSLContext | None = None, hang_up: bool = False) -> None:
        self.script = script
        self._hang_up = hang_up
        self.requests: list[bytes] = []
        self.connections = 0
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        if self._tls is not None:
            try:
                connection = self._tls.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError):
                connection.close()
                return
        with contextlib.suppress(OSError):  # closed under it by drop_idle_connections or close
            self._answer_requests(connection)

    def _answer_requests(self, connection: socket.socket) -> None:
        pending = b""
        with connection:
            while True:
                while b"\r\n\r\n" not in pending:
                    data = connection.recv(65536)
                    if not data:
                        return
                    pending += data
                head, _, pending = pending.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(pending) < length:
                    pending += connection.recv(65536)
                request, pending = head + b"\r\n\r\n" + pending[:length], pending[length:]
                self.requests.append(request)
                answer = self.script(request)
                if answer is None:
                    return
                connection.sendall(answer)
                if self._hang_up:
                    return

    def drop_idle_connections(self) -> None:
        # shutdown sends the FIN at once (close alone waits for the thread's recv to end).
        for connection in self._open:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def close(self) -> None:
        self._listener.close()
        self.drop_idle_connections()


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script, **options: object) -> ScriptedServer:
        server = ScriptedServer(script, **options)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def ok(body: bytes = b"{}", extra: bytes = b"") -> Script:
    return lambda _: (
        b"HTTP/1.1 200 OK\r\nx-amzn-RequestId: r-1\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


class OnEventLoop:
    """AsyncKeepAliveConnections behind ``urlopen``: its requests run on one event loop in
    a thread of its own (kept-alive connections belong to a loop), so that every test of
    the threads' client holds for the fan-out's too."""

    def __init__(self, pool: AsyncKeepAliveConnections) -> None:
        self._pool = pool
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def _idle(self) -> Any:
        return self._pool._idle

    def urlopen(
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        request = self._pool.request(method, url, body or b"", headers or {})
        return asyncio.run_coroutine_threadsafe(request, self._loop).result()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._pool.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@pytest.fixture(params=["threads", "event loop"])
def connections(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """The client on the flush's threads (DynamoDB writes) or on its fan-out's event loop."""
    on_loops: list[OnEventLoop] = []

    def make(port: int, *, read_timeout: float = 5.0, scheme: str = "http") -> Any:
        options = {"max_connections": 4, "connect_timeout": 1.0, "read_timeout": read_timeout}
        url = f"{scheme}://127.0.0.1:{port}/live"
        if request.param == "threads":
            return KeepAliveConnections(url, **options)  # type: ignore[arg-type]
        on_loops.append(OnEventLoop(AsyncKeepAliveConnections(url, **options)))  # type: ignore[arg-type]
        return on_loops[-1]

    yield make
    for on_loop in on_loops:
        on_loop.close()


def test_a_request_carries_its_method_path_host_headers_and_body_in_http_1_1(serve, connections):
    server = serve(ok(b'{"a": 1}'))

    answer = connections(server.port).urlopen(
        "POST", "/live/@connections/a%3D", body=b"hello", headers={"X-A": "b"}
    )

    assert (answer.status, answer.data) == (200, b'{"a": 1}')
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /live/@connections/a%3D HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "X-A: b" in lines
    assert "Content-Length: 5" in lines
    assert body == b"hello"


def test_the_request_frames_its_body_itself_whatever_the_headers_say(serve, connections):
    # botocore's prepared requests carry Content-Length: sent twice, servers answer 400.
    server = serve(ok())
    headers = {"Content-Length": "999", "content-length": "7", "Host": "elsewhere", "Connection": "close"}

    connections(server.port).urlopen("POST", "/", body=b"four", headers=headers)

    head = server.requests[0].partition(b"\r\n\r\n")[0].decode().lower().split("\r\n")
    assert [line for line in head if line.startswith("content-length")] == ["content-length: 4"]
    assert [line for line in head if line.startswith("host")] == [f"host: 127.0.0.1:{server.port}"]
    assert not [line for line in head if line.startswith("connection")]


def test_a_whole_url_is_sent_as_its_path_and_query(serve, connections):
    server = serve(ok())

    connections(server.port).urlopen("DELETE", f"http://127.0.0.1:{server.port}/live/x?y=1", headers={})

    assert server.requests[0].startswith(b"DELETE /live/x?y=1 HTTP/1.1\r\n")
    assert b"Content-Length: 0\r\n" in server.requests[0]


def test_headers_are_read_in_any_case(serve, connections):
    server = serve(ok(extra=b"X-Amzn-ErrorType: GoneException\r\n"))

    answer = connections(server.port).urlopen("POST", "/", body=b"")

    assert answer.headers.get("x-amzn-errortype") == "GoneException"
    assert answer.headers["X-Amzn-ErrorType"] == "GoneException"
    assert "x-amzn-requestid" in answer.headers
    assert answer.headers.get("missing") is None


def test_connections_are_kept_alive_and_reused(serve, connections):
    server = serve(ok())
    pool = connections(server.port)

    for _ in range(5):
        assert pool.urlopen("POST", "/", body=b"x").status == 200

    assert server.connections == 1


def test_concurrent_requests_each_get_their_own_connection_and_at_most_max_stay_open(serve, connections):
    server = serve(ok())
    pool = connections(server.port)
    barrier = threading.Barrier(8)

    def request(_: int) -> int:
        barrier.wait()
        return pool.urlopen("POST", "/", body=b"x").status

    with ThreadPoolExecutor(8) as executor:
        assert list(executor.map(request, range(8))) == [200] * 8

    assert 1 < server.connections <= 8
    assert len(pool._idle) <= 4


def test_an_idle_connection_the_server_closed_is_not_used_again(serve, connections):
    server = serve(ok())
    pool = connections(server.port)
    pool.urlopen("POST", "/", body=b"x")
    server.drop_idle_connections()

    assert pool.urlopen("POST", "/", body=b"x").status == 200
    assert server.connections == 2


def test_an_answer_that_says_connection_close_is_not_kept(serve, connections):
    server = serve(ok(extra=b"Connection: close\r\n"))
    pool = connections(server.port)

    pool.urlopen("POST", "/", body=b"x")
    pool.urlopen("POST", "/", body=b"x")

    assert server.connections == 2


def test_a_chunked_answer_is_read_whole(serve, connections):
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    server = serve(lambda _: chunked)
    pool = connections(server.port)

    assert pool.urlopen("POST", "/", body=b"x").data == b"abcde"
    assert pool.urlopen("POST", "/", body=b"x").data == b"abcde"
    assert server.connections == 1


def test_an_answer_without_length_ends_with_its_connection(serve, connections):
    server = serve(lambda _: b"HTTP/1.1 500 Internal Server Error\r\n\r\n<html>oops</html>", hang_up=True)

    answer = connections(server.port).urlopen("POST", "/", body=b"x")

    assert (answer.status, answer.data) == (500, b"<html>oops</html>")


def test_an_answer_cut_short_is_botocores_connection_closed_error(serve, connections):
    server = serve(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", hang_up=True)

    with pytest.raises(ConnectionClosedError):
        connections(server.port).urlopen("POST", "/", body=b"x")


def test_no_answer_at_all_is_botocores_connection_closed_error(serve, connections):
    server = serve(lambda _: None)

    with pytest.raises(ConnectionClosedError):
        connections(server.port).urlopen("POST", "/", body=b"x")


def test_an_answer_that_is_not_http_is_an_http_client_error(serve, connections):
    server = serve(lambda _: b"SSH-2.0-OpenSSH\r\n\r\n")

    with pytest.raises(HTTPClientError):
        connections(server.port).urlopen("POST", "/", body=b"x")


def test_a_slow_answer_is_botocores_read_timeout_and_its_connection_is_not_reused(serve, connections):
    slow = threading.Event()

    def script(request: bytes) -> bytes | None:
        if not slow.is_set():
            slow.set()
            threading.Event().wait(0.6)
        return ok()(request)

    server = serve(script)
    pool = connections(server.port, read_timeout=0.2)

    with pytest.raises(ReadTimeoutError):
        pool.urlopen("POST", "/", body=b"x")
    # The late answer must not be read as the next request's.
    assert pool.urlopen("POST", "/", body=b"x").status == 200
    assert server.connections == 2


def test_a_refused_connection_is_botocores_endpoint_connection_error(connections):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]

    with pytest.raises(EndpointConnectionError):
        connections(port).urlopen("POST", "/", body=b"x")


@pytest.mark.parametrize("client", [KeepAliveConnections, AsyncKeepAliveConnections])
def test_only_http_and_https_endpoints_are_accepted(client: type[KeepAliveConnections]):
    with pytest.raises(ValueError, match="not an http"):
        client("ftp://example.com", max_connections=1, connect_timeout=1, read_timeout=1)


def _self_signed(directory: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


def test_https_verifies_the_servers_certificate(serve, connections, tmp_path):
    # A certificate no CA in botocore's bundle signed: refused, as botocore refuses it.
    server = serve(ok(), tls=_self_signed(tmp_path))

    with pytest.raises(SSLError):
        connections(server.port, scheme="https").urlopen("POST", "/", body=b"x")


@settings(max_examples=40, deadline=None)
@given(
    body=st.binary(max_size=3000),
    pieces=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20),
)
def test_a_chunked_answer_in_any_chunk_sizes_reads_back_its_body(body, pieces):
    chunks, rest = [], body
    for size in pieces:
        if not rest:
            break
        chunks.append(rest[:size])
        rest = rest[size:]
    if rest:
        chunks.append(rest)
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    server = ScriptedServer(lambda _: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + encoded)
    try:
        pool = KeepAliveConnections(
            f"http://127.0.0.1:{server.port}/", max_connections=1, connect_timeout=1, read_timeout=5
        )
        assert pool.urlopen("POST", "/", body=b"x").data == body
    finally:
        server.close()


def test_the_event_loop_client_never_reuses_a_connection_of_a_loop_that_ended(serve):
    # A warm Lambda environment: each flush invocation's fan-out runs a loop of its own over
    # the same client; the connections the last one kept would be served by no loop.
    server = serve(ok())
    pool = AsyncKeepAliveConnections(
        f"http://127.0.0.1:{server.port}/live", max_connections=4, connect_timeout=1.0, read_timeout=1.0
    )

    async def post() -> int:
        return (await pool.request("POST", "/", b"x", {})).status

    assert asyncio.run(post()) == 200
    assert asyncio.run(post()) == 200

    assert server.connections == 2
