"""The flush's CPU time per tick, and what it means for the function's memory (prints,
never asserts).

The real Flusher ticks against in-process moto with the real Management API client,
whose posts a loopback server in another process answers (200 at once): our code,
botocore (serialising, signing, parsing) and the posts' HTTP are measured; moto's own
work, which is DynamoDB's in AWS, is subtracted (its CPU time is taken around each
request it answers), and network waits are not CPU at all.
Readings are queued into the outbox directly (one entry per message, as ingest writes
them), outside the measured tick. CPU is process time (all threads: posts run on a pool).

Lambda gives a function CPU in proportion to its memory, a whole vCPU at 1,769 MB, so a
tick's CPU time ``c`` takes about ``c * 1769 / memory`` seconds of wall time below that
(plus the network waits of its few sequential requests). The flush ticks once a second:
its memory must let the busiest tick end well within the second.

    .venv/bin/python -m benchmarks.flush_cpu                 # idle, 50/s x 50, 1,000/s x 500
    .venv/bin/python -m benchmarks.flush_cpu --ticks 20
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

from benchmarks.request_counts import ENVIRONMENT, MotoCpu
from sensor_stream.gateway import ConnectionGateway, ManagementApi
from sensor_stream.models import WireModel

# Lambda: "at 1,769 MB, a function has the equivalent of one vCPU" (docs/cost.md cites it).
FULL_VCPU_MB = 1769
MEMORIES_MB = (128, 256, 512, 1024, 1769)


@dataclass(frozen=True)
class TickLoad:
    name: str
    readings_per_second: int
    connections: int
    per_message: int = 1


LOADS = (
    TickLoad("idle", 0, 50),
    TickLoad("50 readings/s x 50 connections", 50, 50),
    TickLoad("1,000 readings/s x 500 connections", 1000, 500, per_message=10),
    TickLoad("1,000 single readings/s x 500 connections", 1000, 500),
)


@dataclass(frozen=True)
class TickCpu:
    load: TickLoad
    cpu_seconds: list[float]  # ours, per measured tick
    posts_per_tick: float
    requests_per_tick: float

    @property
    def median(self) -> float:
        return statistics.median(self.cpu_seconds)

    def wall_at(self, memory_mb: int, cpu_seconds: float | None = None) -> float:
        cpu = self.median if cpu_seconds is None else cpu_seconds
        return cpu * FULL_VCPU_MB / min(memory_mb, FULL_VCPU_MB)


def measure(load: TickLoad, ticks: int = 10, warmup: int = 2) -> TickCpu:
    os.environ.update(ENVIRONMENT)
    import boto3
    from moto import mock_aws

    from devstack import moto_fidelity
    from sensor_stream import clients
    from sensor_stream.delivery import Flusher
    from sensor_stream.models import ConnectionRecord, Subscription
    from sensor_stream.observability import metrics
    from sensor_stream.settings import get_settings
    from sensor_stream.table import create_table

    moto_fidelity.apply()
    start = int(time.time()) // 10 * 10 + 20
    with (
        answering_management_api() as callback_url,
        mock_aws(config={"core": {"reset_boto3_session": False}}),
        MotoCpu() as moto,
    ):
        os.environ["WEBSOCKET_CALLBACK_URL"] = callback_url
        clients.reset()
        settings = get_settings()
        create_table(boto3.client("dynamodb"), settings.table_name)
        store = clients.store()
        gateway = CountingGateway(clients.fanout_gateway()._client)
        posts = gateway.posts
        requests = [0]

        def count_request(**_: Any) -> None:
            requests[0] += 1

        store.client.meta.events.register("before-call.dynamodb", count_request)
        for i in range(load.connections):
            store.connections.create(
                ConnectionRecord(
                    connection_id=f"conn-{i:05d}",
                    org_id="acme",
                    user_id=f"user-{i}",
                    subscription=Subscription(),
                    connected_at=datetime.now(UTC),
                    expires_at=start + 3600,
                )
            )
        clock = [float(start)]
        flusher = Flusher(store, gateway, settings, clock=lambda: clock[0], sleep=lambda s: None)
        per_tick: list[float] = []
        post_counts: list[int] = []
        request_counts: list[int] = []
        try:
            for n in range(warmup + ticks):
                second = start + n
                queue_second(store, load, second)
                clock[0] = second + 1 + settings.flush_grace_seconds
                posts[0] = requests[0] = 0
                cpu_before, moto_before = time.process_time(), moto.seconds
                flusher.tick(clock[0])
                while flusher.fanout.in_flight():
                    time.sleep(0.001)
                ours = (time.process_time() - cpu_before) - (moto.seconds - moto_before)
                metrics.clear_metrics()
                if n >= warmup:
                    per_tick.append(ours)
                    post_counts.append(posts[0])
                    request_counts.append(requests[0])
        finally:
            flusher.close()
            clients.reset()
    return TickCpu(load, per_tick, statistics.mean(post_counts), statistics.mean(request_counts))


class CountingGateway(ConnectionGateway):
    """The flush's gateway, its posts counted."""

    def __init__(self, client: ManagementApi) -> None:
        super().__init__(client)
        self.posts = [0]
        self._lock = threading.Lock()

    def send(self, connection_id: str, message: WireModel | bytes) -> bool:
        with self._lock:
            self.posts[0] += 1
        return super().send(connection_id, message)

    async def send_async(self, connection_id: str, message: bytes) -> bool:
        with self._lock:
            self.posts[0] += 1
        return await super().send_async(connection_id, message)


def _answer_posts(ready: Connection) -> None:
    from devstack.http_server import HttpResponse, LoopbackHttpServer

    server = LoopbackHttpServer("management-api", lambda request: HttpResponse(200), 0)
    server.start()
    ready.send(f"{server.url}/bench")
    ready.recv()  # until told to stop
    server.stop()


@contextmanager
def answering_management_api() -> Iterator[str]:
    """A Management API on loopback that accepts every post, in a process of its own (its
    CPU is API Gateway's in AWS, not ours); yields its callback URL."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_answer_posts, args=(theirs,), name="management-api", daemon=True)
    process.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        process.join(10)


def sample_reading(
    reading_id: str, unit_id: str, device_id: str, recorded_at: datetime, received_at: datetime
) -> Any:
    """A reading as ingest stores it (the same values but its id, units and times)."""
    from sensor_stream.models import Reading

    return Reading(
        id=reading_id,
        unit_id=unit_id,
        site_id="site-1",
        device_id=device_id,
        temperature=21.25,
        humidity=40.5,
        battery=88.0,
        signal_strength=-70,
        recorded_at=recorded_at,
        received_at=received_at,
        source="iot",
    )


def queue_second(store: Any, load: TickLoad, second: int) -> None:
    """The outbox entries ingest would have written for ``second`` (one per message)."""
    from sensor_stream.store import OutboxEntry

    received = datetime.fromtimestamp(second, UTC)
    lines = [
        sample_reading(
            f"r-{second}-{i}",
            f"unit-{i % 200}",
            f"dev-{i % 50}",
            received - timedelta(milliseconds=i),
            received,
        ).to_json()
        for i in range(load.readings_per_second)
    ]
    size = load.per_message
    entries = [OutboxEntry("acme", f"e{second}.{k}", lines[k : k + size]) for k in range(0, len(lines), size)]
    store.readings.write([store.readings.entry_item(entry, second) for entry in entries])


def report(result: TickCpu) -> list[str]:
    cpu = sorted(result.cpu_seconds)
    walls = ", ".join(f"{memory} MB {result.wall_at(memory) * 1000:,.0f} ms" for memory in MEMORIES_MB)
    return [
        f"{result.load.name}: CPU per tick min {cpu[0] * 1000:,.1f} ms, "
        f"median {result.median * 1000:,.1f} ms, max {cpu[-1] * 1000:,.1f} ms over {len(cpu)} ticks "
        f"({result.posts_per_tick:,.0f} posts, {result.requests_per_tick:.1f} DynamoDB requests a tick)",
        f"    a tick of median CPU at {walls}",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.flush_cpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--load", choices=[load.name for load in LOADS], action="append")
    args = parser.parse_args(argv)
    print(
        f"flush CPU per tick (ours, moto's subtracted), in-process, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for load in LOADS:
        if args.load and load.name not in args.load:
            continue
        for line in report(measure(load, args.ticks)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
