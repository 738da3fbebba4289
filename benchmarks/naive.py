"""The naive baseline: what the API Gateway WebSocket chat sample does, applied to
telemetry. Each reading, as it arrives, is posted to every connection of its org.

It runs beside a local stack whose flush is switched off, as a consumer of its own
(:func:`run_naive`, started through multiprocessing): an MQTT subscriber on the telemetry
topics hands each message to one of ``workers`` threads (the concurrent invocations of a
Lambda function behind an IoT rule), which reads the org's connections from the stack's
DynamoDB (the ``ORGCONNS#{org}`` items the connect function writes; the chat sample scans
its table on every message) and calls ``post_to_connection`` through the stack's
Management API once per reading and connection, with the same ``sensor:readings:batch``
envelope the flush uses (one reading in it), so the browsers count both designs alike.
The stack's own ingest still stores every reading, as the chat sample's handler would.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessage

from benchmarks.accounting import BATCH_TYPE, LatencyHistogram
from benchmarks.devices import iso

TELEMETRY_TOPIC_FILTER = "orgs/+/devices/+/telemetry"
REGION = "eu-west-1"


@dataclass(frozen=True)
class NaivePlan:
    mqtt_host: str
    mqtt_port: int
    aws_url: str
    table_name: str
    management_url: str
    workers: int = 32


@dataclass
class NaiveReport:
    messages_in: int = 0
    readings_in: int = 0
    # Readings posted to every connection of their org (fully handled).
    readings_done: int = 0
    posts: int = 0
    posts_gone: int = 0
    post_errors: int = 0
    connection_queries: int = 0
    # Telemetry messages still waiting for a worker when the run ended.
    backlog_messages: int = 0
    post_time: LatencyHistogram = field(default_factory=LatencyHistogram)
    first_post_at: float | None = None
    last_post_at: float | None = None


def stored_reading(device_id: str, reading: dict[str, Any], now: float) -> dict[str, Any]:
    """A device's reading as the stack stores and sends it (contract: Reading)."""
    return {
        "siteId": None,
        "humidity": None,
        "battery": None,
        "signalStrength": None,
        **reading,
        "deviceId": device_id,
        "receivedAt": iso(now),
        "source": "iot",
    }


def batch_envelope(device_id: str, reading: dict[str, Any], now: float) -> bytes:
    message = {
        "type": BATCH_TYPE,
        "serverTime": iso(now),
        "batches": [
            {
                "unitId": reading.get("unitId"),
                "readings": [stored_reading(device_id, reading, now)],
                "count": 1,
            }
        ],
    }
    return json.dumps(message).encode()


class NaiveFanOut:
    def __init__(self, plan: NaivePlan) -> None:
        self.plan = plan
        self.report = NaiveReport()
        self._lock = threading.Lock()
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._stopping = threading.Event()
        config = Config(max_pool_connections=plan.workers, retries={"mode": "standard", "max_attempts": 2})
        self._dynamodb = boto3.client(
            "dynamodb", endpoint_url=plan.aws_url, region_name=REGION, config=config
        )
        self._management = boto3.client(
            "apigatewaymanagementapi", endpoint_url=plan.management_url, region_name=REGION, config=config
        )
        self._workers = [
            threading.Thread(target=self._work, name=f"naive-{i}", daemon=True) for i in range(plan.workers)
        ]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        self._inbox.put((message.topic, bytes(message.payload)))

    def stop(self) -> NaiveReport:
        self._stopping.set()
        for worker in self._workers:
            worker.join(timeout=30)
        with self._lock:
            self.report.backlog_messages = self._inbox.qsize()
            return self.report

    def _connections(self, org_id: str) -> list[str]:
        ids: list[str] = []
        paginator = self._dynamodb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.plan.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"ORGCONNS#{org_id}"}},
            ProjectionExpression="sk",
        ):
            ids.extend(item["sk"]["S"] for item in page.get("Items", []))
        return ids

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                topic, payload = self._inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            self._handle(topic, payload)

    def _handle(self, topic: str, payload: bytes) -> None:
        _, org_id, _, device_id, _ = topic.split("/")
        try:
            document = json.loads(payload)
        except ValueError:
            return
        readings = document.get("readings", [document]) if isinstance(document, dict) else []
        with self._lock:
            self.report.messages_in += 1
            self.report.readings_in += len(readings)
        connections = self._connections(org_id)
        with self._lock:
            self.report.connection_queries += 1
        for reading in readings:
            data = batch_envelope(device_id, reading, time.time())
            for connection_id in connections:
                if self._stopping.is_set():
                    return
                self._post(connection_id, data)
            with self._lock:
                self.report.readings_done += 1

    def _post(self, connection_id: str, data: bytes) -> None:
        started = time.time()
        outcome = "ok"
        try:
            self._management.post_to_connection(ConnectionId=connection_id, Data=data)
        except ClientError as error:
            gone = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 410
            outcome = "gone" if gone else "error"
        except Exception:
            outcome = "error"
        finished = time.time()
        with self._lock:
            report = self.report
            report.posts += outcome == "ok"
            report.posts_gone += outcome == "gone"
            report.post_errors += outcome == "error"
            report.post_time.add(finished - started)
            report.first_post_at = report.first_post_at or started
            report.last_post_at = finished


def run_naive(plan: NaivePlan, control: Connection) -> None:
    """Process entry: subscribe and say ("ready",); on ("finish",) stop and answer
    ("done", NaiveReport)."""
    # Fake credentials: the clients talk to the local stack only.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "bench"
    os.environ.pop("AWS_PROFILE", None)
    fan_out = NaiveFanOut(plan)
    fan_out.start()
    subscribed = threading.Event()
    client = Client(CallbackAPIVersion.VERSION2, client_id=f"bench-naive-{os.getpid()}")
    client.on_connect = lambda c, *args: c.subscribe(TELEMETRY_TOPIC_FILTER, qos=1)
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = fan_out.on_message
    client.connect(plan.mqtt_host, plan.mqtt_port)
    client.loop_start()
    if not subscribed.wait(30):
        raise RuntimeError("the naive consumer could not subscribe to the telemetry topics")
    control.send(("ready",))
    control.recv()
    client.disconnect()
    client.loop_stop()
    control.send(("done", fan_out.stop()))
