"""The AWS APIs (DynamoDB) on moto, in a process of its own.

moto keeps its state in memory, so all of DynamoDB lives in this one process and its one
GIL: the requests per second it answers bound the whole stack (devstack/README.md has the
figures). moto's own server is replaced to raise that bound:

- werkzeug's development server answers every request with ``Connection: close`` and
  then waits up to 10 ms for stray request bytes, and its threaded variant runs a thread
  per client connection that takes the GIL from the others at every request. moto's app
  is served here by ``http_server.AsyncHttpServer`` instead: HTTP/1.1 keep-alive
  (botocore's and the lean clients' connection pools reuse sockets), httptools' parser,
  and every DynamoDB request answered in turn on one event loop, which is how moto's GIL
  serialises them anyway (other services' requests, which may wait, run on threads).
- per-request overheads of moto's dispatcher are patched in ``moto_fidelity``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import unquote

from devstack import moto_fidelity
from devstack.http_server import AsyncHttpServer, HttpRequest, HttpResponse, ImmediateEndpoint
from devstack.moto_fidelity import DYNAMODB_TARGET_PREFIX
from devstack.processes import die_with_parent, name_process

log = logging.getLogger("devstack.aws")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wsgi_environ(request: HttpRequest, server_name: str, server_port: int) -> dict[str, Any]:
    """The WSGI environ of ``request`` (PEP 3333), as werkzeug's server would build it."""
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(request.raw_path),
        "QUERY_STRING": request.raw_query,
        "REQUEST_URI": request.raw_path + (f"?{request.raw_query}" if request.raw_query else ""),
        "REMOTE_ADDR": request.client_ip,
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": request.protocol,
        "CONTENT_LENGTH": str(len(request.body)),
    }
    environ["RAW_URI"] = environ["REQUEST_URI"]
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ[key] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    return environ


# What the server frames itself, whatever the app's headers say.
_FRAMING = ("content-length", "connection", "transfer-encoding")


def _answer(status: int, headers: Iterable[tuple[str, str]], body: bytes) -> HttpResponse:
    kept = {name: value for name, value in headers if name.lower() not in _FRAMING}
    return HttpResponse(status, body, kept)


def _moto_failed(request: HttpRequest) -> HttpResponse:
    log.exception("moto failed on %s %s", request.method, request.raw_path)
    return HttpResponse(500, b'{"__type": "InternalFailure", "message": "moto failed"}')


def wsgi_answer(app: WsgiApp, server_name: str, server_port: int) -> Callable[[HttpRequest], HttpResponse]:
    """``app``'s answer to a request, whole."""

    def answer(request: HttpRequest) -> HttpResponse:
        found: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            found["status"], found["headers"] = status, headers
            return lambda data: found.setdefault("written", []).append(data)

        try:
            chunks = app(wsgi_environ(request, server_name, server_port), start_response)
            try:
                body = b"".join([*found.get("written", []), *chunks])
            finally:
                if hasattr(chunks, "close"):
                    chunks.close()
        except Exception:
            return _moto_failed(request)
        return _answer(int(found["status"].partition(" ")[0]), found["headers"], body)

    return answer


def dynamodb_answers(
    app: moto_fidelity.DynamoDbFastPath, server_name: str, server_port: int
) -> ImmediateEndpoint:
    """DynamoDB's requests handed to moto's DynamoDB handler as the server parsed them
    (``DynamoDbFastPath.answer``): moto answers them without waiting on anything, so on
    the spot. None for any other request, and for a compressed one (the WSGI app's)."""

    def answer(request: HttpRequest) -> HttpResponse | None:
        headers = request.headers
        target = headers.get("X-Amz-Target")
        if not target or not target.startswith(DYNAMODB_TARGET_PREFIX) or headers.get("Content-Encoding"):
            return None
        query = f"?{request.raw_query}" if request.raw_query else ""
        url = f"http://{headers.get('Host') or f'{server_name}:{server_port}'}{request.raw_path}{query}"
        try:
            status, answer_headers, body = app.answer(
                request.method, request.raw_path, headers, request.body, url
            )
        except Exception:
            return _moto_failed(request)
        return _answer(status, answer_headers.items(), body)

    return answer


def serve(listener: socket.socket, ready: Connection, ttl_sweep_seconds: float) -> None:
    """Entry point of the process: serve moto's app on ``listener`` (bound by the stack,
    so the port is known and checked before this process starts) until SIGTERM."""
    die_with_parent()
    name_process("moto")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto_fidelity.apply()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app = moto_fidelity.DynamoDbFastPath(DomainDispatcherApplication(create_backend_app))
    sweeper = moto_fidelity.TtlSweeper(ttl_sweep_seconds)
    sweeper.start()
    asyncio.run(_serve(listener, ready, app))
    sweeper.stop()


async def _serve(listener: socket.socket, ready: Connection, app: moto_fidelity.DynamoDbFastPath) -> None:
    host, port = listener.getsockname()[:2]
    dynamodb = dynamodb_answers(app, host, port)
    through_wsgi = wsgi_answer(app, host, port)

    async def endpoint(request: HttpRequest) -> HttpResponse:
        # A DynamoDB request queued behind another of its connection: still answered at
        # once. The rest on a thread: an SQS ReceiveMessage long-polls and must not hold
        # up DynamoDB.
        answered = dynamodb(request)
        return answered if answered is not None else await asyncio.to_thread(through_wsgi, request)

    server = AsyncHttpServer("moto", endpoint, immediate=dynamodb)
    await server.start(0, listener=listener)
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    ready.send(port)
    ready.close()
    await stopped.wait()
    await server.stop()
