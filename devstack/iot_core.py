"""AWS IoT Core on loopback: an MQTT broker, the topic rules evaluated on what devices
publish, and the data plane's ``publish`` HTTP endpoint that functions call.

Devices use plain MQTT on 127.0.0.1 (no TLS, no client certificates). Basic Ingest
topics (``$aws/rules/...``) are not available: the embedded broker, as MQTT 3.1.1 asks,
refuses publishes to topics starting with ``$``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import unquote

from amqtt.broker import Broker
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessage, topic_matches_sub
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from devstack.config import LOOPBACK
from devstack.http_server import HttpRequest, HttpResponse
from devstack.iot_sql import CompiledRule, IotSqlEvaluationError, Message, compile_rule
from devstack.lambda_runtime import AsyncInvoker, Function
from devstack.processes import die_with_parent

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


def serve_broker(port: int, ready: Connection) -> None:
    """Entry point of the broker's own process (its own GIL: the broker handles every
    device message twice, in and out to the rule runner). Sends the bound port, or the
    error, on ``ready``; runs until SIGTERM."""
    die_with_parent()
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
        if not topic_matches_sub(self._deployed.rule.topic_filter, message.topic):
            return
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
