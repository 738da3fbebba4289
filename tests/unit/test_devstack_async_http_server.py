"""devstack's event-loop HTTP/1.1 server (http_server.AsyncHttpServer), which serves the
Management API: requests read whole and answered in order on kept-alive connections, the
same refusals as the threaded server, and a slow answer holding only its own connection."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from devstack.http_server import AsyncHttpServer, HttpRequest, HttpResponse
from sensor_stream.lean_http import KeepAliveConnections


class Running:
    def __init__(self, server: AsyncHttpServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.seen: list[HttpRequest] = []


@pytest.fixture
def running() -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def endpoint(request: HttpRequest) -> HttpResponse:
        holder.seen.append(request)
        if request.raw_path == "/slow":
            await asyncio.sleep(0.5)
        return HttpResponse.json(200, {"path": request.raw_path, "body": request.body.decode()})

    def immediate(request: HttpRequest) -> HttpResponse | None:
        if not request.raw_path.startswith("/now"):
            return None
        return HttpResponse.json(200, {"path": request.raw_path, "at once": True})

    server = AsyncHttpServer("test", endpoint, immediate=immediate)
    holder = Running(server, loop)
    asyncio.run_coroutine_threadsafe(server.start(0), loop).result(10)
    yield holder
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()


def raw_exchange(port: int, data: bytes, *, answers: int = 1) -> bytes:
    """Send ``data`` as is and read until ``answers`` answers (by their Content-Length) came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(data)
        received = b""
        while received.count(b"HTTP/1.1 ") < answers or not _complete(received, answers):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def _complete(received: bytes, answers: int) -> bool:
    rest = received
    for _ in range(answers):
        head, separator, rest = rest.partition(b"\r\n\r\n")
        if not separator:
            return False
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        if len(rest) < length:
            return False
        rest = rest[length:]
    return True


def test_requests_on_one_kept_alive_connection_are_answered_in_order(running):
    pool = KeepAliveConnections(running.server.url, max_connections=1, connect_timeout=1, read_timeout=5)

    answers = [pool.urlopen("POST", f"/p{i}?q=1", body=f"b{i}".encode()) for i in range(5)]

    assert [json.loads(answer.data or b"") for answer in answers] == [
        {"path": f"/p{i}", "body": f"b{i}"} for i in range(5)
    ]
    assert [request.raw_query for request in running.seen] == ["q=1"] * 5
    assert running.seen[0].headers.get("content-length") == "2"  # names in any case
    assert len(running.server.connections) == 1


def test_pipelined_requests_are_answered_in_the_order_they_came_even_when_the_first_is_slow(running):
    two = (
        b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
        b"POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nb"
    )

    received = raw_exchange(running.server.port, two, answers=2)

    assert received.index(b'"/slow"') < received.index(b'"/fast"')


def test_a_slow_answer_holds_only_its_own_connection(running):
    pool = KeepAliveConnections(running.server.url, max_connections=2, connect_timeout=1, read_timeout=5)
    slow = threading.Thread(target=pool.urlopen, args=("POST", "/slow"))
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()

    assert pool.urlopen("POST", "/fast").status == 200
    fast_seconds = time.monotonic() - started
    slow.join()

    assert fast_seconds < 0.4  # the slow one takes 0.5 s


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", 411),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
    ],
    ids=["chunked", "garbage"],
)
def test_requests_it_cannot_take_are_refused_and_the_connection_closed(running, request_bytes, status):
    received = raw_exchange(running.server.port, request_bytes)

    assert received.startswith(b"HTTP/1.1 %d " % status)
    assert running.seen == []


def test_a_head_request_gets_the_head_only(running):
    received = raw_exchange(running.server.port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == b""


def test_what_the_immediate_endpoint_answers_never_reaches_the_endpoint(running):
    pool = KeepAliveConnections(running.server.url, max_connections=1, connect_timeout=1, read_timeout=5)

    now = pool.urlopen("POST", "/now", body=b"x")
    later = pool.urlopen("POST", "/later", body=b"y")

    assert json.loads(now.data or b"") == {"path": "/now", "at once": True}
    assert json.loads(later.data or b"") == {"path": "/later", "body": "y"}
    assert [request.raw_path for request in running.seen] == ["/later"]


def test_a_request_behind_an_unanswered_one_waits_its_turn_whoever_answers_it(running):
    three = (
        b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
        b"POST /now1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nb"
        b"POST /now2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nc"
    )

    received = raw_exchange(running.server.port, three, answers=3)

    assert received.index(b'"/slow"') < received.index(b'"/now1"') < received.index(b'"/now2"')


def test_an_immediate_answer_to_a_closing_request_closes_the_connection(running):
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=5) as connection:
        connection.sendall(b"GET /now HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := connection.recv(65536):  # to the end: the server closes
            received += chunk

    assert received.startswith(b"HTTP/1.1 200 OK")
    assert received.endswith(b'"at once": true}')
