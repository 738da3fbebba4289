"""DynamoDB requests and capacity units per reading, counted with the real handlers
in-process against moto (prints, never asserts; ``make cost`` feeds them to the model).

Devices publish through the ingest handler, browsers connect through the connect handler,
and a flusher ticks once a (fake) second, exactly as tests/support/stack.py wires them;
a botocore hook on the table's client counts every request and the capacity it would
consume in DynamoDB (item sizes by DynamoDB's rules: writes 1 unit per KB of each item
written, reads 1 per 4 KB read, half that when eventually consistent). These are the
same requests the local stack's moto server sees; they were not counted in AWS.

    .venv/bin/python -m benchmarks.request_counts            # the three workloads of issue #9
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from devstack.moto_fidelity import insert_fields

ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "TABLE_NAME": "cost",
    "JWT_SECRET": "benchmark-secret-that-is-long-enough-for-hs256",
    "WEBSOCKET_CALLBACK_URL": "https://wsapi12345.execute-api.eu-west-1.amazonaws.com/prod",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "POWERTOOLS_SERVICE_NAME": "sensor-stream",
    "POWERTOOLS_DEV": "false",
    # A fresh flusher starts this far back (the default, 15 min, would take 90 ticks to catch up).
    "FLUSH_MAX_CATCH_UP_SECONDS": "5",
}
WRITES = (
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "BatchExecuteStatement",
    "TransactWriteItems",
)
READS = ("GetItem", "Query", "BatchGetItem", "Scan", "TransactGetItems")
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


# --- DynamoDB's item size and capacity rules ------------------------------------------------


def value_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value (DynamoDB developer guide, "Item sizes and formats")."""
    [(kind, content)] = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        digits = str(Decimal(content)).lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: element}) for element in content)
    if kind == "L":
        return 3 + sum(value_size(element) + 1 for element in content)
    if kind == "M":
        return 3 + sum(len(name.encode()) + value_size(element) + 1 for name, element in content.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(item: dict[str, Any] | None) -> int:
    return max(1, math.ceil(item_size(item or {}) / WRITE_UNIT_BYTES))


def read_units(total_bytes: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(total_bytes / READ_UNIT_BYTES))
    return units if consistent else units / 2


@dataclass
class Usage:
    """Requests and capacity units of one part of the system (ingest, connect, flush)."""

    requests: Counter[str] = field(default_factory=Counter)
    write_units: float = 0.0
    read_units: float = 0.0
    # Items put and their bytes, by the kind of item (the pk up to its first '#').
    items_put: Counter[str] = field(default_factory=Counter)
    bytes_put: Counter[str] = field(default_factory=Counter)

    @property
    def writes(self) -> int:
        return sum(self.requests[name] for name in WRITES)

    @property
    def reads(self) -> int:
        return sum(self.requests[name] for name in READS)

    def add(self, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        self.requests[operation] += 1
        if operation == "PutItem":
            self._put(params["Item"])
        elif operation in ("UpdateItem", "DeleteItem"):
            # Billed on the larger of the item before and after; the response holds one
            # of them when asked for (the lease and settle writes ask), else assume 1 KB.
            self.write_units += write_units(parsed.get("Attributes"))
        elif operation == "BatchWriteItem":
            for requests in params["RequestItems"].values():
                for request in requests:
                    put = request.get("PutRequest")
                    if put:
                        self._put(put["Item"])
                    else:
                        self.write_units += 1
        elif operation == "BatchExecuteStatement":
            # PartiQL INSERTs, each billed as the put of its item (a refused one too).
            for statement in params["Statements"]:
                fields = insert_fields(statement["Statement"])
                if fields is None:
                    raise ValueError(f"not an INSERT: {statement['Statement']}")
                self._put(dict(zip(fields[1], statement["Parameters"], strict=True)))
        elif operation == "GetItem":
            self.read_units += read_units(item_size(parsed.get("Item", {})), consistent=_consistent(params))
        elif operation == "BatchGetItem":
            for table, items in parsed.get("Responses", {}).items():
                consistent = _consistent(params["RequestItems"][table])
                self.read_units += sum(read_units(item_size(item), consistent=consistent) for item in items)
        elif operation == "Query":
            items = parsed.get("Items", [])
            returned = sum(item_size(item) for item in items)
            # A filter is applied after the read: what it dropped was read too.
            scanned = parsed.get("ScannedCount", len(items))
            evaluated = returned * scanned / len(items) if items else 0
            self.read_units += read_units(int(evaluated), consistent=_consistent(params))

    def _put(self, item: dict[str, Any]) -> None:
        self.write_units += write_units(item)
        kind = item["pk"]["S"].split("#", 1)[0]
        self.items_put[kind] += 1
        self.bytes_put[kind] += item_size(item)

    def item_bytes(self, kind: str) -> float:
        """Mean size of the items of ``kind`` put (e.g. ``UNIT``: history, ``OUTBOX``)."""
        return self.bytes_put[kind] / self.items_put[kind] if self.items_put[kind] else 0.0

    def minus(self, other: Usage) -> Usage:
        return Usage(
            self.requests - other.requests,
            self.write_units - other.write_units,
            self.read_units - other.read_units,
            self.items_put - other.items_put,
            self.bytes_put - other.bytes_put,
        )

    def copy(self) -> Usage:
        return Usage(
            Counter(self.requests),
            self.write_units,
            self.read_units,
            Counter(self.items_put),
            Counter(self.bytes_put),
        )


def _consistent(params: dict[str, Any]) -> bool:
    return bool(params.get("ConsistentRead"))


class UsageMeter:
    """Counts a client's DynamoDB requests into the usage of whoever is ``current``.
    The store sends some requests from a thread pool (a message's history puts), so
    counting takes a lock: ``+=`` on a shared counter loses updates between threads."""

    def __init__(self, client: Any) -> None:
        self.parts: dict[str, Usage] = {}
        self.current = "other"
        self._lock = threading.Lock()
        events = client.meta.events
        events.register("before-parameter-build.dynamodb.*", self._remember)
        events.register("after-call.dynamodb.*", self.count)

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        previous, self.current = self.current, name
        try:
            yield
        finally:
            self.current = previous

    def usage(self, name: str) -> Usage:
        return self.parts.setdefault(name, Usage())

    @staticmethod
    def _remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["cost_params"] = dict(params)

    def count(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.usage(self.current).add(model.name, context.get("cost_params", {}), parsed)


class MotoCpu:
    """CPU time moto spends answering requests (any thread), to leave it out of ours:
    in AWS that work is DynamoDB's and API Gateway's. Restores moto on exit."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()

    def __enter__(self) -> MotoCpu:
        from moto.core.botocore_stubber import BotocoreStubber

        self._original = original = BotocoreStubber.process_request
        meter = self

        def process_request(stubber: Any, request: Any) -> Any:
            started = time.thread_time()
            try:
                return original(stubber, request)
            finally:
                spent = time.thread_time() - started
                with meter._lock:
                    meter.seconds += spent

        BotocoreStubber.process_request = process_request  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *_: object) -> None:
        from moto.core.botocore_stubber import BotocoreStubber

        BotocoreStubber.process_request = self._original  # type: ignore[method-assign]


# --- the workloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    messages: int
    per_message: int
    units: int
    browsers: int = 10
    messages_per_second: int = 50
    devices: int = 20

    @property
    def readings(self) -> int:
        return self.messages * self.per_message


WORKLOADS = (
    Workload("1,000 single-reading messages over 20 units", 1000, 1, 20),
    Workload("100 messages of 10 readings over 10 units", 100, 10, 10, messages_per_second=5),
    Workload("100 messages of 10 readings over one unit", 100, 10, 1, messages_per_second=5),
)


@dataclass(frozen=True)
class CountedRun:
    workload: Workload
    ingest: Usage
    flush: Usage
    connect: Usage
    ticks: int
    posts: int
    posted_bytes: int
    idle: Usage
    idle_ticks: int
    ingest_cpu_seconds: float  # ours (moto's subtracted), all messages

    def per_reading(self, usage: Usage) -> tuple[float, float, float, float]:
        """(write requests, read requests, write units, read units) per reading."""
        n = self.workload.readings
        return usage.writes / n, usage.reads / n, usage.write_units / n, usage.read_units / n


def measure(workload: Workload, *, idle_ticks: int = 30) -> CountedRun:
    """Run ``workload`` through the real handlers against a fresh in-process moto."""
    os.environ.update(ENVIRONMENT)
    import boto3
    from moto import mock_aws

    import connect.handler
    import ingest.handler
    import publish.handler
    from devstack import moto_fidelity
    from sensor_stream import clients
    from sensor_stream.observability import metrics
    from sensor_stream.table import create_table
    from tests.support.clock import FakeClock
    from tests.support.readings import reading
    from tests.support.stack import InProcessStack
    from tests.support.websocket import PostRecorder

    clients.reset()
    moto_fidelity.apply()  # per-partition queries, as in DynamoDB
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC))
    handlers = (ingest.handler, connect.handler, publish.handler)
    real_now = [module.utc_now for module in handlers]
    for module in handlers:
        module.utc_now = clock.now  # type: ignore[attr-defined]
    with mock_aws(config={"core": {"reset_boto3_session": False}}), MotoCpu() as moto:
        create_table(boto3.client("dynamodb"), ENVIRONMENT["TABLE_NAME"])
        recorder = PostRecorder()
        stack = InProcessStack(clock, recorder, ENVIRONMENT["JWT_SECRET"])
        meter = UsageMeter(stack.store.client)
        try:
            with meter.part("connect"):
                browsers = [stack.open("acme", sub=f"user-{i}") for i in range(workload.browsers)]
            with meter.part("flush"):
                stack.deliver()  # takes the lease
            before_flush = meter.usage("flush").copy()
            posts_before = sum(len(recorder.frames(b)) for b in browsers)
            ticks = 0
            sent = 0
            ingest_cpu = 0.0
            while sent < workload.messages:
                cpu, moto_cpu = time.process_time(), moto.seconds
                with meter.part("ingest"):
                    for _ in range(min(workload.messages_per_second, workload.messages - sent)):
                        first = sent * workload.per_message
                        readings = [
                            reading(f"unit-{(first + i) % workload.units}", clock.iso(-(first + i) / 1000))
                            for i in range(workload.per_message)
                        ]
                        payload = readings[0] if workload.per_message == 1 else {"readings": readings}
                        stack.publish_telemetry("acme", f"dev-{sent % workload.devices}", payload)
                        metrics.clear_metrics()
                        sent += 1
                ingest_cpu += (time.process_time() - cpu) - (moto.seconds - moto_cpu)
                with meter.part("flush"):
                    stack.tick(1.0)
                    ticks += 1
            with meter.part("flush"):
                stack.deliver()
                ticks += 1
            flush = meter.usage("flush").minus(before_flush)
            frames = [frame for b in browsers for frame in recorder.frames(b)][posts_before:]
            with meter.part("idle"):
                for _ in range(idle_ticks):
                    stack.tick(1.0)
            return CountedRun(
                workload,
                ingest=meter.usage("ingest"),
                flush=flush,
                connect=meter.usage("connect"),
                ticks=ticks,
                posts=len(frames),
                posted_bytes=sum(len(frame) for frame in frames),
                idle=meter.usage("idle"),
                idle_ticks=idle_ticks,
                ingest_cpu_seconds=ingest_cpu,
            )
        finally:
            stack.close()
            clients.reset()
            for module, now in zip(handlers, real_now, strict=True):
                module.utc_now = now  # type: ignore[attr-defined]


def report(measured: CountedRun) -> list[str]:
    w, ticks, idle = measured.workload, measured.ticks, measured.idle_ticks
    ingest = measured.per_reading(measured.ingest)
    flush = measured.per_reading(measured.flush)
    connect = measured.connect
    per_post = measured.posted_bytes / max(1, measured.posts)
    return [
        f"{w.name} ({w.messages_per_second} messages/s, {w.browsers} browsers, one tick a second):",
        f"  ingest: {ingest[0]:.2f} write requests and {ingest[1]:.2f} reads per reading; "
        f"{ingest[2]:.2f} write units, {ingest[3]:.2f} read units per reading "
        f"({dict(sorted(measured.ingest.requests.items()))}); CPU "
        f"{measured.ingest_cpu_seconds / w.messages * 1000:.1f} ms a message (ours, moto's subtracted)",
        f"  flush:  {flush[1]:.3f} reads and {flush[0]:.3f} writes per reading; per tick "
        f"{measured.flush.reads / ticks:.2f} reads, {measured.flush.writes / ticks:.2f} writes, "
        f"{measured.flush.read_units / ticks:.1f} read units ({ticks} ticks); "
        f"{measured.posts} posts of {per_post:,.0f} bytes",
        f"  idle:   {measured.idle.reads / idle:.2f} reads and {measured.idle.writes / idle:.2f} writes "
        f"per idle tick ({idle} ticks)",
        f"  connect: {connect.writes / w.browsers:.1f} writes, "
        f"{connect.reads / w.browsers:.1f} reads per browser",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.request_counts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    print("DynamoDB requests per reading, real handlers against in-process moto (not AWS):")
    for workload in WORKLOADS:
        for line in report(measure(workload)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
