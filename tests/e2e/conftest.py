"""End-to-end tests run the real local stack (``python -m devstack``) as a subprocess on
free ports and talk to it only through its protocols: MQTT, HTTP and WebSocket.

``start_local_stack(**env)`` starts one with extra environment (the browser test uses it
with simulated devices); ``local_stack`` is the session-wide default: no simulated
devices (tests play the devices), a short flush loop and a short command timeout.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessage
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from devstack.token import mint_token

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPOSITORY_ROOT / "test-artifacts"
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0
# Waits for something the stack does within a few ticks; generous for a busy machine.
DELIVERY_TIMEOUT_SECONDS = 30.0
JWT_SECRET = "e2e-test-secret-not-used-anywhere-else"
SUBPROTOCOL = "sensor-stream.v1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def iso_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def unique(prefix: str) -> str:
    """Ids no other test uses, so tests sharing one stack never see each other's data."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class LocalStack:
    websocket_url: str
    http_url: str
    mqtt_url: str
    dashboard_url: str
    admin_url: str
    aws_url: str
    jwt_secret: str
    table_name: str
    process: subprocess.Popen[str]
    log_path: Path
    # Lines the stack prints on stdout after the ready line (None once it closed stdout).
    stdout_lines: queue.Queue[str | None]

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        return urlsplit(self.mqtt_url).port or 1883

    def token(self, org: str, units: list[str] | None = None, ttl_seconds: int = 3600) -> str:
        return mint_token(org, units=units, secret=self.jwt_secret, ttl_seconds=ttl_seconds)

    def dynamodb(self) -> Any:
        return boto3.client("dynamodb", endpoint_url=self.aws_url, region_name="eu-west-1")

    def http(
        self, method: str, path: str, token: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any] | None]:
        """A request to the HTTP API: (status, decoded JSON answer or None)."""
        request = urllib.request.Request(  # noqa: S310 - the local stack on loopback
            f"{self.http_url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        return status, json.loads(raw) if raw else None

    def notifications(self) -> list[dict[str, Any]]:
        """What the alert topic published so far (the admin API's inbox)."""
        with urllib.request.urlopen(f"{self.admin_url}/notifications", timeout=10) as response:  # noqa: S310
            notifications: list[dict[str, Any]] = json.loads(response.read())
        return notifications

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@contextmanager
def start_local_stack(**env: str) -> Iterator[LocalStack]:
    """Run ``python -m devstack`` on free ports until the block ends; ``env`` overrides the
    defaults below (e.g. ``SIMULATED_DEVICES="4"``)."""
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"local-stack-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.log"
    table_name = unique("sensor-stream-e2e")
    environment = {
        **os.environ,
        # The import path make and pytest give (pytest's pythonpath ini reaches no subprocess).
        "PYTHONPATH": os.pathsep.join([str(REPOSITORY_ROOT / "functions"), str(REPOSITORY_ROOT)]),
        "LOCAL_WS_PORT": "0",
        "LOCAL_HTTP_PORT": "0",
        "LOCAL_MQTT_PORT": "0",
        "LOCAL_DASHBOARD_PORT": "0",
        # Not in the ready line: pre-picked so tests can look into the table.
        "LOCAL_AWS_PORT": str(free_port()),
        "JWT_SECRET": JWT_SECRET,
        "TABLE_NAME": table_name,
        "SIMULATED_DEVICES": "0",
        # Short flush invocations, so hand-overs between them happen during the tests.
        "LOCAL_FLUSH_SCHEDULE_SECONDS": "10",
        "LOCAL_FLUSH_TIMEOUT_SECONDS": "20",
        # A 410 this soon after connecting counts as a handshake still in progress.
        "CONNECT_GRACE_SECONDS": "3",
        "COMMAND_TIMEOUT_SECONDS": "3",
        # A client that vanishes gets no $disconnect: its clean-up must come from the 410.
        "LOCAL_WS_DISCONNECT_ON_DROP": "false",
        "LOG_LEVEL": "INFO",
        **env,
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack"],
            cwd=REPOSITORY_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
        try:
            try:
                first = lines.get(timeout=READY_TIMEOUT_SECONDS)
            except queue.Empty:
                first = None
            if first is None:
                raise RuntimeError(
                    f"the local stack did not get ready; its log:\n{log_path.read_text()[-4000:]}"
                )
            ready = json.loads(first)
            assert ready["event"] == "ready"
            stack = LocalStack(
                websocket_url=ready["websocket"],
                http_url=ready["http"],
                mqtt_url=ready["mqtt"],
                dashboard_url=ready["dashboard"],
                admin_url=ready["admin"],
                aws_url=f"http://127.0.0.1:{environment['LOCAL_AWS_PORT']}",
                jwt_secret=environment["JWT_SECRET"],
                table_name=table_name,
                process=process,
                log_path=log_path,
                stdout_lines=lines,
            )
            yield stack
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture(scope="session")
def local_stack_factory() -> Callable[..., Any]:
    """``with local_stack_factory(SIMULATED_DEVICES="4") as stack:`` for a stack of one's own."""
    return start_local_stack


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    with start_local_stack() as stack:
        yield stack


# --- clients -------------------------------------------------------------------------


@dataclass
class BrowserSocket:
    """A WebSocket client as the browser library uses it, remembering all it received."""

    connection: ClientConnection
    received: list[dict[str, Any]] = field(default_factory=list)

    def send(self, document: dict[str, Any]) -> None:
        self.connection.send(json.dumps(document))

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = DELIVERY_TIMEOUT_SECONDS
    ) -> dict[str, Any]:
        """The first message (already received or arriving) that matches."""
        for message in self.received:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                raw = self.connection.recv(timeout=remaining)
            except TimeoutError:
                break
            message = json.loads(raw)
            self.received.append(message)
            if predicate(message):
                return message
        seen = [m.get("type") for m in self.received]
        raise AssertionError(f"no matching message within {timeout} s; received types: {seen}")

    def request(self, document: dict[str, Any], answer_type: str) -> dict[str, Any]:
        request_id = unique("req")
        self.send({**document, "requestId": request_id})
        return self.wait_for(
            lambda m: m.get("requestId") == request_id and m.get("type") in (answer_type, "error")
        )

    def hello(self, **fields: Any) -> dict[str, Any]:
        answer = self.request({"action": "hello", **fields}, "connection")
        assert answer["type"] == "connection", answer
        return answer

    def readings(self, unit_id: str | None = None) -> list[dict[str, Any]]:
        return [
            reading
            for message in self.received
            if message.get("type") == "sensor:readings:batch"
            for batch in message["batches"]
            for reading in batch["readings"]
            if unit_id is None or reading["unitId"] == unit_id
        ]

    def wait_for_reading(self, reading_id: str, timeout: float = DELIVERY_TIMEOUT_SECONDS) -> dict[str, Any]:
        def has_it(message: dict[str, Any]) -> bool:
            return message.get("type") == "sensor:readings:batch" and any(
                r["id"] == reading_id for b in message["batches"] for r in b["readings"]
            )

        self.wait_for(has_it, timeout)
        return next(r for r in self.readings() if r["id"] == reading_id)


@contextmanager
def browser_socket(stack: LocalStack, token: str) -> Iterator[BrowserSocket]:
    offer = [Subprotocol(SUBPROTOCOL), Subprotocol(f"bearer.{token}")]
    connection = connect(stack.websocket_url, subprotocols=offer, open_timeout=30)
    with connection:
        yield BrowserSocket(connection)


class Device:
    """A device on MQTT: publishes telemetry, and acknowledges commands when asked to."""

    def __init__(
        self, stack: LocalStack, org_id: str, device_id: str, *, answer_commands: bool = True
    ) -> None:
        self.org_id, self.device_id = org_id, device_id
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self._answer_commands = answer_commands
        self._ready = threading.Event()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=device_id)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(stack.mqtt_host, stack.mqtt_port)
        self.client.loop_start()
        assert self._ready.wait(30), "device could not connect and subscribe"

    def _on_connect(self, client: Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe(f"orgs/{self.org_id}/devices/{self.device_id}/commands", qos=1)

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        command = json.loads(message.payload)
        self.commands.put(command)
        if self._answer_commands:
            ack = {"commandId": command["commandId"], "status": "ok", "detail": f"did {command['command']}"}
            client.publish(
                f"orgs/{self.org_id}/devices/{self.device_id}/commands/ack", json.dumps(ack), qos=1
            )

    def publish(self, payload: dict[str, Any]) -> None:
        info = self.client.publish(
            f"orgs/{self.org_id}/devices/{self.device_id}/telemetry", json.dumps(payload), qos=1
        )
        info.wait_for_publish(30)
        assert info.is_published()

    def publish_reading(self, unit_id: str, **fields: Any) -> str:
        """Publish one reading with an explicit id; returns the id."""
        reading_id = fields.pop("id", unique("r"))
        reading = {"id": reading_id, "unitId": unit_id, "temperature": 4.5, "recordedAt": iso_now(), **fields}
        self.publish(reading)
        return reading_id

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device_factory(local_stack: LocalStack) -> Iterator[Callable[..., Device]]:
    devices: list[Device] = []

    def make(org_id: str, device_id: str | None = None, **options: Any) -> Device:
        device = Device(local_stack, org_id, device_id or unique("dev"), **options)
        devices.append(device)
        return device

    yield make
    for device in devices:
        device.close()
