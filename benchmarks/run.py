"""Throughput figures of the core path, in-process against moto (prints, never asserts).

moto is far slower than DynamoDB and this machine is shared, so read the figures as
the cost of our own code per reading/connection, and for trends between commits.

    make bench                      # defaults
    .venv/bin/python -m benchmarks.run --readings 2000 --connections 500
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "TABLE_NAME": "bench",
        "JWT_SECRET": "benchmark-secret-that-is-long-enough-for-hs256",
        "WEBSOCKET_CALLBACK_URL": "https://bench.execute-api.eu-west-1.amazonaws.com/live",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "FLUSH_GRACE_SECONDS": "0",
        "FLUSH_POST_CONCURRENCY": "16",
        "FLUSH_MAX_CATCH_UP_SECONDS": "3",
    }
)

import boto3
from moto import mock_aws

from devstack import moto_fidelity
from sensor_stream import table
from sensor_stream.delivery import Flusher
from sensor_stream.gateway import ConnectionGateway
from sensor_stream.ingestion import ingest_iot_message
from sensor_stream.models import (
    ConnectionRecord,
    IotRuleEvent,
    Reading,
    Subscription,
)
from sensor_stream.observability import metrics
from sensor_stream.outbox import ReadingQueue
from sensor_stream.packing import PackedReading, pack_batches
from sensor_stream.settings import Settings
from sensor_stream.store import SensorStore


class CountingManagementApi:
    """Stands in for API Gateway's endpoint (not the code under measurement)."""

    def __init__(self) -> None:
        self.posts = 0
        self.bytes = 0

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        self.posts += 1
        self.bytes += len(Data)
        return {}

    async def post_to_connection_async(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        """The fan-out's posts, on its event loop."""
        return self.post_to_connection(ConnectionId=ConnectionId, Data=Data)

    def close_async_connections(self) -> None:
        """Nothing kept open."""

    def delete_connection(self, *, ConnectionId: str) -> dict[str, Any]:
        return {}


def iot_event(org: str, device: str, readings: list[dict[str, Any]]) -> IotRuleEvent:
    payload = json.dumps({"readings": readings}).encode()
    return IotRuleEvent(
        payload=base64.b64encode(payload).decode(),
        org_id=org,
        device_id=device,
        topic=f"orgs/{org}/devices/{device}/telemetry",
        received_at=int(time.time() * 1000),
    )


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds else "n/a"


def synthetic_readings(count: int, *, units: int, received_at: datetime) -> list[Reading]:
    """Full readings spread over ``units`` units, recorded a millisecond apart."""
    return [
        Reading(
            id=f"r-{i}",
            unit_id=f"unit-{i % units}",
            site_id="site-1",
            device_id="dev-1",
            temperature=21.25,
            humidity=40.5,
            battery=88.0,
            signal_strength=-70,
            recorded_at=received_at - timedelta(milliseconds=i),
            received_at=received_at,
            source="iot",
        )
        for i in range(count)
    ]


def bench_ingest(store: SensorStore, total: int, per_message: int) -> None:
    now = datetime.now(UTC)
    latencies = []
    sent = 0
    started = time.perf_counter()
    while sent < total:
        device = f"dev-{sent // per_message % 50}"
        readings = [
            {
                "unitId": f"unit-{(sent + i) % 200}",
                "temperature": 20 + (sent + i) % 10,
                "humidity": 40.5,
                "battery": 90,
                "signalStrength": -60,
                "recordedAt": (now - timedelta(milliseconds=sent + i)).isoformat(),
            }
            for i in range(per_message)
        ]
        t0 = time.perf_counter()
        ingest_iot_message(store, iot_event("acme", device, readings), now)
        latencies.append(time.perf_counter() - t0)
        # No Lambda invocation ends here to flush them: drop the metrics (Powertools would
        # print them at 100 values even when disabled).
        metrics.clear_metrics()
        sent += per_message
    elapsed = time.perf_counter() - started
    p50 = statistics.median(latencies) * 1000
    p95 = statistics.quantiles(latencies, n=20)[18] * 1000 if len(latencies) > 20 else max(latencies) * 1000
    print(
        f"ingest   {sent:>6} readings in {len(latencies)} messages of {per_message}: "
        f"{rate(sent, elapsed)} readings; per message p50 {p50:.1f} ms, p95 {p95:.1f} ms"
    )


def bench_flush(store: SensorStore, settings: Settings, connections: int, readings: int) -> None:
    now = time.time()
    for i in range(connections):
        subscription = (
            Subscription() if i % 2 else Subscription(scope="selected", unit_ids=["unit-1", "unit-2"])
        )
        store.connections.create(
            ConnectionRecord(
                connection_id=f"conn-{i}",
                org_id="acme",
                user_id=f"user-{i}",
                subscription=subscription,
                connected_at=datetime.now(UTC),
                expires_at=int(now) + 3600,
            )
        )
    bucket = int(now) + 10  # a second of its own, apart from the ingest runs
    received = datetime.fromtimestamp(bucket, UTC)
    batch = synthetic_readings(readings, units=100, received_at=received)
    store.clock = lambda: bucket + 0.5
    ReadingQueue(store).store_and_queue("acme", "dev-1", batch)
    api = CountingManagementApi()
    flusher = Flusher(store, ConnectionGateway(api), settings)
    try:
        t0 = time.perf_counter()
        report = flusher.tick(bucket + 1.5)
        elapsed = time.perf_counter() - t0
    finally:
        flusher.close()
    print(
        f"flush    1 tick: {report.readings} readings to {connections} connections -> {api.posts} posts "
        f"({api.bytes / 1024:,.0f} KiB) in {elapsed * 1000:,.0f} ms ({rate(api.posts, elapsed)} posts)"
    )


def bench_packing(readings: int) -> None:
    now = datetime.now(UTC)
    batch = [PackedReading.from_reading(r) for r in synthetic_readings(readings, units=50, received_at=now)]
    t0 = time.perf_counter()
    messages = pack_batches(batch, server_time=now)
    elapsed = time.perf_counter() - t0
    largest = max(len(m) for m in messages)
    print(
        f"packing  {readings} readings -> {len(messages)} messages (largest {largest:,} bytes) "
        f"in {elapsed * 1000:.1f} ms ({rate(readings, elapsed)} readings)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=2000)
    parser.add_argument("--per-message", type=int, default=10)
    parser.add_argument("--connections", type=int, default=300)
    args = parser.parse_args()
    settings = Settings()
    moto_fidelity.apply()  # per-partition queries, as in DynamoDB
    with mock_aws():
        client = boto3.client("dynamodb")
        table.create_table(client, settings.table_name)
        store = SensorStore(client, settings)
        print(f"sensor-stream benchmark (moto in-process, {os.cpu_count()} cores)")
        bench_ingest(store, args.readings, 1)
        bench_ingest(store, args.readings, args.per_message)
        bench_flush(store, settings, args.connections, 500)
        bench_packing(5000)


if __name__ == "__main__":
    main()
