"""The AWS APIs (DynamoDB) on moto, in a process of its own.

moto keeps its state in memory, so all of DynamoDB lives in this one process and its one
GIL: the requests per second it answers bound the whole stack (devstack/README.md has the
figures). Two things of moto's own server are replaced to raise that bound:

- werkzeug's development server answers every request with ``Connection: close`` and
  then waits up to 10 ms for stray request bytes, so each call of a function paid a new
  TCP connection, a new server thread and that wait. :class:`KeepAliveMotoHandler`
  serves HTTP/1.1 keep-alive instead (botocore's connection pools then reuse sockets).
- per-request overheads of moto's dispatcher are patched in ``moto_fidelity``.
"""

from __future__ import annotations

import http.client
import io
import logging
import signal
import socket
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import unquote

from werkzeug.serving import ThreadedWSGIServer

from devstack import moto_fidelity
from devstack.moto_fidelity import DYNAMODB_TARGET_PREFIX
from devstack.processes import die_with_parent, name_process

log = logging.getLogger("devstack.aws")

# http.client's own limits.
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100


def _handler_class() -> type:
    # Imported here: moto's server module pulls in Flask, which only this process needs.
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveMotoHandler(MotoRequestHandler):
        """One request at a time per connection, the whole body read before the app runs
        and the whole answer sent with its length, so the connection stays usable."""

        protocol_version = "HTTP/1.1"
        # Buffered, so head and body leave in one write: two small writes on a kept-alive
        # connection meet Nagle's algorithm and delayed ACKs (40 ms a request).
        wbufsize = 64 * 1024

        def run_wsgi(self) -> None:
            is_dynamodb = self.headers.get("X-Amz-Target", "").startswith(DYNAMODB_TARGET_PREFIX)
            environ = self._dynamodb_environ() if is_dynamodb else self.make_environ()
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
                # botocore always sends a length; anything else gets a clean refusal.
                self._answer("411 Length Required", [], [b""])
                self.close_connection = True
                return
            environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length else b"")
            environ["wsgi.input_terminated"] = True
            answer: dict[str, Any] = {}

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                answer["status"], answer["headers"] = status, headers
                return lambda data: answer.setdefault("written", []).append(data)

            try:
                chunks = self.server.app(environ, start_response)
                try:
                    body = [*answer.get("written", []), *chunks]
                finally:
                    if hasattr(chunks, "close"):
                        chunks.close()
            except Exception:
                log.exception("moto failed on %s %s", self.command, self.path)
                answer = {"status": "500 Internal Server Error", "headers": []}
                body = [b'{"__type": "InternalFailure", "message": "moto failed"}']
            self._answer(answer["status"], answer["headers"], body)

        def _dynamodb_environ(self) -> dict[str, Any]:
            """The WSGI environ moto's DynamoDB handler reads (werkzeug's make_environ plus
            moto's header bookkeeping for S3 were a fifth of a request's time)."""
            path, _, query = self.path.partition("?")
            host, port = self.server.server_address[:2]
            environ: dict[str, Any] = {
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
                "REQUEST_METHOD": self.command,
                "SCRIPT_NAME": "",
                "PATH_INFO": unquote(path),
                "QUERY_STRING": query,
                "REQUEST_URI": self.path,
                "RAW_URI": self.path,
                "REMOTE_ADDR": self.client_address[0],
                "REMOTE_PORT": self.client_address[1],
                "SERVER_NAME": host,
                "SERVER_PORT": str(port),
                "SERVER_PROTOCOL": self.request_version,
            }
            for name, value in self.headers.items():
                key = name.upper().replace("-", "_")
                if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                    environ[key] = value
                else:
                    environ[f"HTTP_{key}"] = value
            return environ

        def _answer(self, status: str, headers: list[tuple[str, str]], body: list[bytes]) -> None:
            payload = b"".join(body)
            code, _, reason = status.partition(" ")
            self.send_response_only(int(code), reason)
            for name, value in headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_request(self, *args: Any) -> None:
            pass

    return KeepAliveMotoHandler


def _read_header_lines(fp: Any, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage) -> Any:
    """``http.client.parse_headers`` without the email package's feed parser (a quarter of
    a DynamoDB request's time here): SDKs send one ``Name: value`` per line."""
    headers = _class()
    count = 0
    while True:
        line = fp.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return headers
        count += 1
        if count > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        name, _, value = line.decode("iso-8859-1").partition(":")
        headers[name.strip()] = value.strip()


class MotoServer(ThreadedWSGIServer):
    # Many Lambda environments keep a few connections each.
    request_queue_size = 256


def serve(listener: socket.socket, ready: Connection, ttl_sweep_seconds: float) -> None:
    """Entry point of the process: serve moto's app on ``listener`` (bound by the stack,
    so the port is known and checked before this process starts) until SIGTERM."""
    die_with_parent()
    name_process("moto")
    # This process serves HTTP only; its request heads are read by the lighter reader.
    http.client.parse_headers = _read_header_lines  # type: ignore[assignment]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto_fidelity.apply()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    host, port = listener.getsockname()[:2]
    server = MotoServer(
        host,
        port,
        moto_fidelity.DynamoDbFastPath(DomainDispatcherApplication(create_backend_app)),
        handler=_handler_class(),
        fd=listener.fileno(),
    )
    server.daemon_threads = True
    sweeper = moto_fidelity.TtlSweeper(ttl_sweep_seconds)
    sweeper.start()

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever, which runs on this very thread: do it aside.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    ready.send(port)
    ready.close()
    server.serve_forever(poll_interval=0.2)
    sweeper.stop()
