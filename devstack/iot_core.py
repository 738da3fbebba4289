"""AWS IoT Core on loopback: an MQTT broker, the topic rules evaluated on what devices
publish, and the data plane's ``publish`` HTTP endpoint that functions call.

Devices use plain MQTT on 127.0.0.1 (no TLS, no client certificates). Basic Ingest
topics (``$aws/rules/...``) are not available: the embedded broker, as MQTT 3.1.1 asks,
refuses publishes to topics starting with ``$``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from amqtt.broker import Broker
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessage
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from devstack.config import LOOPBACK
from devstack.http_server import HttpRequest, HttpResponse
from devstack.iot_sql import CompiledRule, IotSqlEvaluationError, Message, compile_rule
from devstack.lambda_runtime import AsyncInvoker, Function
from devstack.processes import die_with_parent, name_process

log = logging.getLogger("devstack.iot")

CONNECT_TIMEOUT_SECONDS = 10.0
PUBLISH_TIMEOUT_SECONDS = 10.0
MAX_PAYLOAD_BYTES = 128 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class EmbeddedBroker:
    """amqtt on 127.0.0.1, anonymous, plain TCP."""

    def __init__(self) -> None:
        self._broker: Broker | None = None
        self.port = 0

    async def start(self, port: int) -> int:
        # amqtt does not expose the port it bound, so a free one is chosen beforehand.
        self.port = port or free_port()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()
        return self.port

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()


MOSQUITTO_CONFIG = """\
listener {port} 127.0.0.1
allow_anonymous true
# Started as root, mosquitto would switch to its own user, and a change of credentials
# clears PR_SET_PDEATHSIG: it would outlive a killed stack. It stays the user it runs as.
user {user}
persistence false
# IoT Core keeps every QoS 1 message of a slow subscriber (within its limits); with
# mosquitto's defaults (100 queued, 20 in flight) a busy rule runner would lose some.
max_queued_messages 0
max_inflight_messages 0
log_dest stderr
log_type error
log_type warning
"""


def mosquitto_path() -> str | None:
    """Debian's mosquitto if installed (``make dev`` installs it)."""
    return shutil.which("mosquitto") or next(
        (path for path in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(path, os.X_OK)),
        None,
    )


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {process.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not listen in time") from None
            time.sleep(0.05)


def serve_broker(port: int, ready: Connection, prefer_mosquitto: bool = True) -> None:
    """Entry point of the broker's own process (its own GIL: the broker handles every
    device message twice, in and out to the rule runner). Sends the bound port, or the
    error, on ``ready``; runs until SIGTERM. Runs mosquitto (a C broker, about 1/20 of
    amqtt's CPU per message) when installed, else the embedded amqtt."""
    die_with_parent()
    name_process("mqtt-broker")
    executable = mosquitto_path() if prefer_mosquitto else None
    if executable:
        _serve_mosquitto(executable, port or free_port(), ready)
        return
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)

    async def run() -> None:
        broker = EmbeddedBroker()
        try:
            bound = await broker.start(port)
        except Exception as error:
            ready.send(f"{type(error).__name__}: {error}")
            return
        stopped = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
        ready.send(bound)
        await stopped.wait()
        await broker.stop()

    asyncio.run(run())


def _serve_mosquitto(executable: str, port: int, ready: Connection) -> None:
    with tempfile.TemporaryDirectory(prefix="devstack-mosquitto-") as folder:
        config = Path(folder) / "mosquitto.conf"
        config.write_text(MOSQUITTO_CONFIG.format(port=port, user=pwd.getpwuid(os.getuid()).pw_name))
        # This process is single-threaded, so preexec_fn is safe: mosquitto dies with it.
        process = subprocess.Popen([executable, "-c", str(config)], preexec_fn=die_with_parent)  # noqa: S603
        signal.signal(signal.SIGTERM, lambda signum, frame: process.terminate())
        try:
            _wait_until_listening(port, process, timeout=10)
        except RuntimeError as error:
            process.kill()
            ready.send(str(error))
            return
        ready.send(port)
        process.wait()


class MqttSession:
    """A paho client on its own network thread, connected before ``start`` returns."""

    def __init__(self, client_id: str, host: str, port: int) -> None:
        self.client_id = client_id
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self._host, self._port = host, port
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect

    def _on_connect(
        self, client: Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if not reason.is_failure:
            self._connected.set()
            self.on_connected()

    def on_connected(self) -> None:
        """Runs on every (re)connection; subclasses subscribe here."""

    def start(self) -> None:
        self.client.connect(self._host, self._port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_SECONDS):
            raise RuntimeError(f"MQTT client {self.client_id!r} could not connect to {self._port}")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True)
class DeployedRule:
    name: str
    rule: CompiledRule
    target: Function


class RuleRunner(MqttSession):
    """One topic rule: subscribes to its FROM filter and, per message, evaluates its SQL and
    invokes the Lambda action asynchronously (with Lambda's retries)."""

    def __init__(self, deployed: DeployedRule, invoker: AsyncInvoker, host: str, port: int) -> None:
        super().__init__(f"devstack-rule-{deployed.name}", host, port)
        self._deployed = deployed
        self._invoker = invoker
        self._subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def on_connected(self) -> None:
        self.client.subscribe(self._deployed.rule.topic_filter, qos=1)

    def _on_subscribe(
        self, client: Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        if all(not reason.is_failure for reason in reasons):
            self._subscribed.set()

    def start(self) -> None:
        super().start()
        if not self._subscribed.wait(CONNECT_TIMEOUT_SECONDS):
            raise RuntimeError(f"rule {self._deployed.name} could not subscribe to its topic filter")

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        # No topic check here: the rule's filter is this client's only subscription, so the
        # broker delivers matching topics only (paho's topic_matches_sub builds a matcher
        # per call and was half of this process's time under load).
        incoming = Message(
            topic=message.topic, payload=bytes(message.payload), timestamp_ms=time.time_ns() // 1_000_000
        )
        try:
            event = self._deployed.rule.evaluate(incoming)
        except IotSqlEvaluationError as error:
            # The rule's error action: report and move on, as IoT does.
            log.error(
                "rule %s could not evaluate a message on %s: %s", self._deployed.name, message.topic, error
            )
            return
        self._invoker.invoke(self._deployed.target, event, source=f"rule {self._deployed.name}")


def deploy_rules(
    specs: Sequence[Any], functions: dict[str, Function], invoker: AsyncInvoker, host: str, port: int
) -> list[RuleRunner]:
    """A runner per ``sensor_stream.iot_rules.TopicRuleSpec``, its SQL compiled (and so checked)."""
    return [
        RuleRunner(
            DeployedRule(spec.name, compile_rule(spec.sql), functions[spec.target]), invoker, host, port
        )
        for spec in specs
    ]


class IotDataPlane(MqttSession):
    """``POST /topics/{topic}?qos=N`` with the raw payload, as botocore's ``iot-data.publish``
    sends it; the message is published onto the broker (and so reaches the rules too)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__("devstack-iot-data-plane", host, port)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        prefix = "/topics/"
        if request.method != "POST" or not request.raw_path.startswith(prefix):
            return HttpResponse.json(404, {"message": "Not Found"})
        topic = unquote(request.raw_path[len(prefix) :])
        qos = int((request.query.get("qos") or ["0"])[-1])
        retain = (request.query.get("retain") or ["false"])[-1].lower() == "true"
        if not topic or qos not in (0, 1) or len(request.body) > MAX_PAYLOAD_BYTES:
            return HttpResponse.json(
                400,
                {"message": "invalid topic, qos or payload size"},
                {"x-amzn-ErrorType": "InvalidRequestException"},
            )
        info = self.client.publish(topic, request.body, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return HttpResponse.json(
                503, {"message": "broker unavailable"}, {"x-amzn-ErrorType": "ServiceUnavailableException"}
            )
        if qos:
            info.wait_for_publish(PUBLISH_TIMEOUT_SECONDS)
        return HttpResponse(200, b"{}", {"Content-Type": "application/json"})
