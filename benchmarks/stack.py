"""The real local stack (``python -m devstack``) as a subprocess for the live benchmark
and the soak: every port free, no simulated devices, a table of its own; stopped with
SIGINT (as Ctrl-C) at the end. Its stderr goes to a log file under test-artifacts/bench/.
``BENCH_STACK_DIR=/path/to/checkout`` runs that checkout's stack instead of this one's;
``BENCH_LOG_LEVEL=DEBUG`` logs the functions at that level (the flush then logs each tick:
its seconds, readings, messages, duration and posts still in flight; WARNING by default).

The ready line names the WebSocket, HTTP, MQTT and dashboard endpoints. DynamoDB (moto)
is on ``LOCAL_AWS_PORT`` and the fault-injection admin API (where the stack has one) on
``LOCAL_ADMIN_PORT``, both picked here beforehand. The Management API (``@connections``)
that the naive baseline posts through is not announced by the stack yet: it is taken from
a ``management`` field of the ready line when the stack adds one, else found among the
stack's listening sockets (Linux ``/proc``) by asking each unknown one for a connection.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = REPOSITORY_ROOT / "test-artifacts" / "bench"
# The checkout whose stack runs: this one, or another (e.g. to compare two branches).
STACK_DIR = Path(os.environ.get("BENCH_STACK_DIR") or REPOSITORY_ROOT).resolve()
READY_TIMEOUT_SECONDS = 90.0
# Results are in by then: a stack still busy with a backlog is killed after this.
STOP_TIMEOUT_SECONDS = 5.0
JWT_SECRET = "bench-secret-used-for-local-benchmarks-only"  # noqa: S105 - local stack only
# The stage of the emulated WebSocket API (devstack.config.STAGE).
STAGE = "local"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def flush_environment(period: float | None) -> dict[str, str]:
    """The flush's schedule scaled to ``period`` seconds, shaped as in AWS (an invocation
    every 60 s that ticks until the next one takes over; timeout 120 s), so that hand-overs
    happen during a run; None turns the flush off (the invocation at start leaves at once)."""
    if period is None:
        return {"LOCAL_FLUSH_SCHEDULE_SECONDS": "86400", "FLUSH_STOP_MARGIN_SECONDS": "1000000"}
    return {"LOCAL_FLUSH_SCHEDULE_SECONDS": f"{period:g}", "LOCAL_FLUSH_TIMEOUT_SECONDS": f"{2 * period:g}"}


@dataclass
class RunningStack:
    websocket_url: str
    mqtt_url: str
    http_url: str
    aws_url: str
    # The fault-injection admin API (LOCAL_ADMIN_PORT), where the stack has one.
    admin_url: str
    table_name: str
    jwt_secret: str
    process: subprocess.Popen[str]
    log_path: Path
    # time.time() when the ready line was read: the schedule's first flush starts just before.
    ready_at: float
    ready_line: dict[str, str]

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        return urlsplit(self.mqtt_url).port or 1883

    def management_url(self, timeout: float = 10.0) -> str:
        """``http://127.0.0.1:{port}/{stage}``, where ``@connections`` lives."""
        announced = os.environ.get("BENCH_MANAGEMENT_URL") or self.ready_line.get("management")
        if announced:
            return announced
        known = {urlsplit(url).port for url in self.ready_line.values() if "://" in url}
        known.add(urlsplit(self.aws_url).port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for port in sorted(listening_ports(self.process.pid) - known):
                url = f"http://127.0.0.1:{port}/{STAGE}"
                if _is_management_api(url):
                    return url
            time.sleep(0.5)
        raise RuntimeError(
            "cannot find the stack's Management API; set BENCH_MANAGEMENT_URL or let the "
            "stack announce it (a 'management' field in the ready line)"
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def listening_ports(pid: int) -> set[int]:
    """TCP ports that process ``pid`` listens on (Linux: its fds' socket inodes matched
    against /proc/net/tcp). Empty where /proc is not available."""
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        return set()
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address, ..., st (0A = LISTEN), ..., inode
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _is_management_api(url: str) -> bool:
    """The Management API answers a GET of an unknown connection with 410 GoneException."""
    try:
        urllib.request.urlopen(f"{url}/@connections/bench-probe", timeout=2)  # noqa: S310 - loopback
    except urllib.error.HTTPError as error:
        return error.code == 410 and error.headers.get("x-amzn-ErrorType", "").startswith("GoneException")
    except OSError:
        return False
    return False


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@contextmanager
def local_stack(
    name: str, env: Mapping[str, str], log: Callable[[str], None] = print
) -> Iterator[RunningStack]:
    """Run the local stack until the block ends; ``env`` adds to or overrides the defaults."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = LOG_DIR / f"{stamp}-{name}-{uuid.uuid4().hex[:6]}.log"
    table_name = f"sensor-stream-bench-{uuid.uuid4().hex[:8]}"
    aws_port, admin_port = free_port(), free_port()
    python_path = os.pathsep.join([str(STACK_DIR / "functions"), str(STACK_DIR)])
    environment = {
        **os.environ,
        "PYTHONPATH": python_path,
        "LOCAL_WS_PORT": "0",
        "LOCAL_HTTP_PORT": "0",
        "LOCAL_MQTT_PORT": "0",
        "LOCAL_DASHBOARD_PORT": "0",
        "LOCAL_AWS_PORT": str(aws_port),
        "LOCAL_ADMIN_PORT": str(admin_port),
        "JWT_SECRET": JWT_SECRET,
        "TABLE_NAME": table_name,
        "SIMULATED_DEVICES": "0",
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        **env,
    }
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack"],
            cwd=STACK_DIR,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
        try:
            try:
                first = lines.get(timeout=READY_TIMEOUT_SECONDS)
            except queue.Empty:
                first = None
            if first is None:
                raise RuntimeError(f"the local stack did not get ready; its log: {log_path}")
            ready = json.loads(first)
            yield RunningStack(
                websocket_url=ready["websocket"],
                mqtt_url=ready["mqtt"],
                http_url=ready["http"],
                aws_url=f"http://127.0.0.1:{aws_port}",
                admin_url=f"http://127.0.0.1:{admin_port}",
                table_name=table_name,
                jwt_secret=JWT_SECRET,
                process=process,
                log_path=log_path,
                ready_at=time.time(),
                ready_line={k: v for k, v in ready.items() if isinstance(v, str)},
            )
        finally:
            if not stop(process):
                log(f"the stack did not stop within {STOP_TIMEOUT_SECONDS:g} s of SIGINT: killed")


def stop(process: subprocess.Popen[str]) -> bool:
    """SIGINT, as Ctrl-C; False when it had to be killed."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGINT)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True
