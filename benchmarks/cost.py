"""``make cost``: the monthly AWS bill of sensor-stream by service, next to two other ways
of getting readings to browsers (prints, never asserts). docs/cost.md explains every line.

    make cost                                            # the three scenarios of docs/cost.md
    make cost ARGS="--devices 200 --per-device-per-minute 6 --per-message 1 --browsers 40 --hours 8"
    make cost ARGS="--recorded"                          # skip the in-process count (~15 s)

Designs, each priced with the same devices, readings and browsers:
  (a) this design: ingest stores each reading once and queues it in the per-second outbox;
      the flush posts one message per connection per tick (more only past 32 KB).
  (b) naive: ingest posts every message to every connection of its org as it arrives
      (the API Gateway chat sample's design); no outbox, no flush.
  (c) AppSync Events: ingest stores the reading and publishes the message to the org's
      channel; AppSync delivers it to each subscribed browser. No API Gateway WebSocket,
      no flush, no connect function; getLatest, resume and commands are not priced.

The DynamoDB requests and item sizes per reading are counted with the real handlers
in-process against moto (benchmarks/request_counts.py) unless ``--recorded``; Lambda
durations come from CPU times measured the same way (benchmarks/flush_cpu.py) plus the
network waits we estimate. Prices: PRICES below (us-east-1; their page and date).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sensor_stream.settings import Settings
from sensor_stream.store.dynamo import BATCH_STATEMENTS

# --- prices -----------------------------------------------------------------------------------

READ_ON = "2026-11-22"


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str
    note: str = ""


IOT = "https://aws.amazon.com/iot-core/pricing/"
LAMBDA = "https://aws.amazon.com/lambda/pricing/"
DYNAMODB = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
APIGW = "https://aws.amazon.com/api-gateway/pricing/"
APPSYNC = "https://aws.amazon.com/appsync/pricing/"
CLOUDWATCH = "https://aws.amazon.com/cloudwatch/pricing/"

PRICES: dict[str, Price] = {
    "iot_connection_minute": Price(0.08e-6, "connection minute", IOT),
    "iot_message": Price(1.00e-6, "message (5 KB), first 1 B a month", IOT, "not charged with Basic Ingest"),
    "iot_rule": Price(0.15e-6, "rule triggered (5 KB)", IOT, "5 KB metering increment: estimated"),
    "iot_action": Price(0.15e-6, "action executed (5 KB)", IOT, "5 KB metering increment: estimated"),
    "lambda_request": Price(0.20e-6, "request", LAMBDA),
    "lambda_gb_second": Price(0.0000133334, "GB-second, Arm (first 7.5 B GB-s a month)", LAMBDA),
    "dynamodb_write": Price(
        0.625e-6, "write request unit (1 KB)", DYNAMODB, "since the 50% cut of 2024-11-01"
    ),
    "dynamodb_read": Price(0.125e-6, "read request unit (4 KB strong, 8 KB eventual)", DYNAMODB),
    "dynamodb_storage": Price(0.25, "GB-month (first 25 GB free)", DYNAMODB),
    "ws_connection_minute": Price(0.25e-6, "connection minute", APIGW),
    "ws_message": Price(1.00e-6, "message (32 KB), first 1 B a month", APIGW),
    "appsync_operation": Price(1.00e-6, "Event API operation", APPSYNC, "5 KB metering increment: estimated"),
    "appsync_connection_minute": Price(0.08e-6, "connection minute", APPSYNC, "estimated: GraphQL's rate"),
    "logs_ingested": Price(0.50, "GB ingested (Lambda logs: first tier)", CLOUDWATCH),
    "logs_stored": Price(0.03, "GB-month stored", CLOUDWATCH),
}

# --- what we measured, and what we estimate -------------------------------------------------

SECONDS_PER_MONTH = 730 * 3600  # AWS prices a month as 730 hours
DAYS_PER_MONTH = 730 / 24
FULL_VCPU_MB = 1769  # Lambda: one vCPU at 1,769 MB (docs/cost.md)
FLUSH_MEMORIES_MB = (128, 256, 512, 1024, 1769)
# A tick's CPU-bound part must take at most this much of its second at the chosen memory
# (the rest is left for its network waits and for slower ticks: max/median ~1.4).
FLUSH_TICK_BUDGET_SECONDS = 0.2
WS_MESSAGE_BYTES = 32_000  # the flush's cap per post (API Gateway meters 32 KB units)
# The fan-out shards' own rule (docs/scaling.md): a flusher per this much load, a shard's
# connections or its posts a tick where those are more.
FLUSH_LOAD_PER_SHARD: int = Settings.model_fields["flush_connections_per_shard"].default
INGEST_MEMORY_GB = 0.5
CONNECT_MEMORY_GB = 0.5


@dataclass(frozen=True)
class Measured:
    """Per-reading and per-tick figures of benchmarks/request_counts.py and flush_cpu.py
    (in-process against moto, 2-core x86 VM, Python 3.11; recorded 2026-11-22, the
    requests of 10-reading messages 2026-11-23)."""

    # DynamoDB write requests per reading, by readings per message.
    write_requests_single: float = 2.00
    write_requests_batch10: float = 0.20
    # Every message rewrites the registry item of each unit in it (UnitSeen with its last
    # reading, for listUnits and alerts), in the outbox batch; devices every 5 min.
    unit_registry_item_bytes: float = 398
    device_items_per_reading: float = 0.02  # 20 devices in 1,000 readings (20 s); less over longer runs
    history_item_bytes: float = 400
    entry_bytes_first_reading: float = 344  # an outbox entry of one reading
    entry_bytes_per_more_reading: float = 264  # and each further reading in it
    connection_item_bytes: float = 303  # ORGCONNS#, read by the flush each tick with readings
    posted_bytes_per_reading: float = 284  # in a batch message to a browser
    flush_idle_requests_per_tick: float = 1.0  # the outbox query; every 10th tick the lease instead
    # Our CPU (moto's subtracted) at one vCPU.
    ingest_cpu_single: float = 0.0011  # s per single-reading message
    ingest_cpu_per_reading: float = 0.0005  # s per further reading of a message
    flush_cpu_idle: float = 0.0008  # s per idle tick
    flush_cpu_per_post: float = 0.00086  # s per post (botocore: serialise, sign, send)
    flush_cpu_per_delivery: float = 0.0000009  # s per reading x connection it goes to


@dataclass(frozen=True)
class Estimates:
    """Not measured here; each is named in docs/cost.md."""

    dynamodb_round_trip: float = 0.008  # s, from Lambda in the same region
    management_api_post: float = 0.015  # s a post, the naive design waits for each wave
    appsync_publish: float = 0.015  # s, one HTTP publish per message
    post_concurrency: int = 32
    connect_invocation: float = 0.020  # s for $connect, hello, subscribe, refresh, $disconnect
    log_bytes_per_invocation: float = 700  # START/END/REPORT lines and one line of ours
    registry_share: float = 0.0  # registry writes are in the measured write units already


@dataclass(frozen=True)
class Inputs:
    devices: int
    per_device_per_minute: float
    per_message: int
    browsers: int
    hours_per_day: float
    orgs: int = 1
    units_per_message: int = 1  # distinct units in one message (a gateway: several)
    message_bytes: int = 200  # a device's JSON per reading, for the 5 KB metering

    @property
    def readings_per_second(self) -> float:
        return self.devices * self.per_device_per_minute / 60

    @property
    def messages_per_second(self) -> float:
        return self.readings_per_second / self.per_message


SCENARIOS = {
    "seeds": Inputs(
        devices=50, per_device_per_minute=60, per_message=1, browsers=50, hours_per_day=8, orgs=2
    ),
    "plant": Inputs(
        devices=1000, per_device_per_minute=60, per_message=1, browsers=500, hours_per_day=8, orgs=10
    ),
    "fleet": Inputs(
        devices=20_000, per_device_per_minute=60, per_message=10, browsers=5000, hours_per_day=8, orgs=100
    ),
}
DESIGNS = ("this design", "naive", "AppSync Events")


# --- the model --------------------------------------------------------------------------------


@dataclass
class Bill:
    design: str
    lines: dict[str, float] = field(default_factory=dict)  # "service: item" -> USD a month
    notes: list[str] = field(default_factory=list)

    def add(self, item: str, usd: float) -> None:
        self.lines[item] = self.lines.get(item, 0.0) + usd

    def service(self, name: str) -> float:
        return sum(usd for item, usd in self.lines.items() if item.startswith(name + ":"))

    @property
    def total(self) -> float:
        return sum(self.lines.values())


def cost(price: str, quantity: float) -> float:
    return PRICES[price].usd * quantity


def entry_bytes(measured: Measured, per_message: int) -> float:
    """An outbox entry's size for a message of ``per_message`` readings."""
    return measured.entry_bytes_first_reading + (per_message - 1) * measured.entry_bytes_per_more_reading


def registry_units_per_reading(measured: Measured, per_message: int, units_per_message: int = 1) -> float:
    unit_items = units_per_message * math.ceil(measured.unit_registry_item_bytes / 1024) / per_message
    return unit_items + measured.device_items_per_reading


def write_units_per_reading(
    measured: Measured, per_message: int, units_per_message: int = 1, *, registry: bool = True
) -> float:
    """History put (1 KB units) + the message's outbox entry shared by its readings + the
    registry items of the batch (each item of a BatchWriteItem is billed as a write)."""
    history = math.ceil(measured.history_item_bytes / 1024)
    outbox = math.ceil(entry_bytes(measured, per_message) / 1024) / per_message
    extra = registry_units_per_reading(measured, per_message, units_per_message) if registry else 0.0
    return history + outbox + extra


def history_units(measured: Measured, inputs: Inputs) -> float:
    """Write units per reading without the outbox: the history put and the registry."""
    history = math.ceil(measured.history_item_bytes / 1024)
    return history + registry_units_per_reading(measured, inputs.per_message, inputs.units_per_message)


def write_requests_per_reading(per_message: int) -> float:
    """What ingest sends a message: its history items (a conditional put for one reading,
    a BatchExecuteStatement per 25 for more) and one batch of outbox and registry items."""
    per_message = max(1, per_message)
    history = 1 if per_message == 1 else math.ceil(per_message / BATCH_STATEMENTS)
    return (history + 1) / per_message


@dataclass(frozen=True)
class Shape:
    """The traffic one input set makes, per second and per month."""

    readings: float  # per second
    messages: float  # per second
    connected: float  # browsers connected on average
    per_org_readings: float  # readings per second of one org
    browsers_per_org: float
    connection_minutes: float  # a month

    @classmethod
    def of(cls, inputs: Inputs) -> Shape:
        share = inputs.hours_per_day / 24
        return cls(
            readings=inputs.readings_per_second,
            messages=inputs.messages_per_second,
            connected=inputs.browsers * share,
            per_org_readings=inputs.readings_per_second / inputs.orgs,
            browsers_per_org=inputs.browsers / inputs.orgs,
            connection_minutes=inputs.browsers * inputs.hours_per_day * 60 * DAYS_PER_MONTH,
        )


def iot(bill: Bill, inputs: Inputs, shape: Shape) -> None:
    bill.add("IoT Core: device connection minutes", cost("iot_connection_minute", inputs.devices * 43_800))
    bill.add("IoT Core: messaging (Basic Ingest: none)", 0.0)
    units = math.ceil(inputs.per_message * inputs.message_bytes / 5120)
    monthly = shape.messages * SECONDS_PER_MONTH * units
    bill.add("IoT Core: rules triggered", cost("iot_rule", monthly))
    bill.add("IoT Core: actions executed (Lambda)", cost("iot_action", monthly))


def lambda_cost(bill: Bill, function: str, invocations: float, seconds: float, memory_gb: float) -> None:
    bill.add(f"Lambda: {function} requests", cost("lambda_request", invocations))
    bill.add(f"Lambda: {function} GB-s", cost("lambda_gb_second", invocations * seconds * memory_gb))


def cpu_wall(cpu_seconds: float, memory_gb: float) -> float:
    """Wall time of CPU-bound work at a memory size (Lambda's CPU share)."""
    return cpu_seconds * FULL_VCPU_MB / min(memory_gb * 1024, FULL_VCPU_MB)


def ingest_seconds(measured: Measured, estimates: Estimates, inputs: Inputs, extra: float = 0.0) -> float:
    cpu = measured.ingest_cpu_single + (inputs.per_message - 1) * measured.ingest_cpu_per_reading
    # The puts go out in parallel (16 at most), then the outbox batch: two round trips.
    return cpu_wall(cpu, INGEST_MEMORY_GB) + 2 * estimates.dynamodb_round_trip + extra


def storage(bill: Bill, measured: Measured, shape: Shape, ttl_days: float = 30) -> None:
    # DynamoDB bills 100 bytes of overhead per item.
    history_gb = shape.readings * 86_400 * ttl_days * (measured.history_item_bytes + 100) / 1e9
    bill.add(
        "DynamoDB: storage (history at its 30-day TTL)", cost("dynamodb_storage", max(0.0, history_gb - 25))
    )


def connections(bill: Bill, inputs: Inputs, estimates: Estimates) -> float:
    """The connect function: per 2-hour session $connect, hello, subscribe, $disconnect,
    and a token refresh an hour. Returns its invocations a month."""
    sessions = math.ceil(inputs.hours_per_day / 2)
    per_day = inputs.browsers * (4 * sessions + inputs.hours_per_day)
    invocations = per_day * DAYS_PER_MONTH
    lambda_cost(bill, "connect", invocations, estimates.connect_invocation, CONNECT_MEMORY_GB)
    # connect: 3 puts; each request: a rate-window update and a read; disconnect: 2 deletes;
    # connect, subscribe, refresh and disconnect also bump the org's connection list version
    # and log the change under it (one put more each).
    list_changes_per_day = inputs.browsers * (3 * sessions + inputs.hours_per_day)
    writes = invocations * 2.8 + list_changes_per_day * DAYS_PER_MONTH
    bill.add("DynamoDB: connect writes", cost("dynamodb_write", writes))
    bill.add("DynamoDB: connect reads", cost("dynamodb_read", invocations * 0.5))
    bill.add("API Gateway WS: client messages", cost("ws_message", invocations))
    return invocations


def logs(bill: Bill, estimates: Estimates, invocations: float) -> None:
    gb = invocations * estimates.log_bytes_per_invocation / 1e9
    bill.add("CloudWatch Logs: ingested", cost("logs_ingested", gb))
    bill.add("CloudWatch Logs: stored (1-month retention)", cost("logs_stored", gb))


def flush_memory(measured: Measured, inputs: Inputs, shape: Shape) -> tuple[int, float, int]:
    """(memory MB, CPU seconds per busy tick, flushers) for the peak: every browser
    connected at once. Past one vCPU a Python flusher gains nothing (the GIL): the load
    then needs several flushers (the fan-out shards of docs/scaling.md), as many as its CPU
    needs and at least as many as the shards' sizing starts (posts or connections)."""
    posts_per_connection = math.ceil(
        shape.per_org_readings * measured.posted_bytes_per_reading / WS_MESSAGE_BYTES
    )
    posts = inputs.browsers * posts_per_connection
    deliveries = shape.readings * shape.browsers_per_org
    cpu = (
        measured.flush_cpu_idle
        + posts * measured.flush_cpu_per_post
        + deliveries * measured.flush_cpu_per_delivery
    )
    sharded = math.ceil(max(inputs.browsers, posts) / FLUSH_LOAD_PER_SHARD)
    flushers = max(1, math.ceil(cpu / FLUSH_TICK_BUDGET_SECONDS), sharded)
    per_flusher = cpu / flushers
    for memory in FLUSH_MEMORIES_MB:
        if per_flusher * FULL_VCPU_MB / memory <= FLUSH_TICK_BUDGET_SECONDS:
            return memory, cpu, flushers
    return FULL_VCPU_MB, cpu, flushers


def this_design(inputs: Inputs, measured: Measured, estimates: Estimates) -> Bill:
    bill = Bill(DESIGNS[0])
    shape = Shape.of(inputs)
    iot(bill, inputs, shape)
    ingest_invocations = shape.messages * SECONDS_PER_MONTH
    lambda_cost(
        bill, "ingest", ingest_invocations, ingest_seconds(measured, estimates, inputs), INGEST_MEMORY_GB
    )
    memory, tick_cpu, flushers = flush_memory(measured, inputs, shape)
    # One invocation a minute per flusher, running the whole minute (plus ~1 s of overlap).
    flush_gb_s = flushers * memory / 1024 * SECONDS_PER_MONTH * 61 / 60
    bill.add("Lambda: flush requests", cost("lambda_request", flushers * 43_800))
    bill.add(f"Lambda: flush GB-s ({flushers} x {memory} MB)", cost("lambda_gb_second", flush_gb_s))
    if flushers > 1:
        bill.notes.append(
            f"a busy tick needs {tick_cpu:.1f} s of CPU: one flusher cannot keep up; priced as {flushers} "
            f"flushers of {memory} MB (fan-out shards, docs/scaling.md)"
        )
    else:
        bill.notes.append(
            f"flush: {memory} MB for a busy tick of {tick_cpu * 1000:.0f} ms CPU (all browsers on)"
        )
    readings_month = shape.readings * SECONDS_PER_MONTH
    bill.add(
        "DynamoDB: ingest writes",
        cost(
            "dynamodb_write",
            readings_month * write_units_per_reading(measured, inputs.per_message, inputs.units_per_message),
        ),
    )
    # Each tick: the outbox query (strongly consistent) and, for the orgs with readings, their
    # connection list versions (consistent, one small item each); after a change, the
    # change from the log (a consistent query of a small item, per flusher), not the list
    # (about three changes per 2-hour browser session); the lease every 10 s.
    entry_bytes = shape.readings * (
        measured.entry_bytes_first_reading / inputs.per_message
        + measured.entry_bytes_per_more_reading * (1 - 1 / inputs.per_message)
    )
    outbox_units = max(1, math.ceil(entry_bytes / 4096))
    active_orgs = min(inputs.orgs, max(1.0, shape.readings))
    list_changes = 3 * shape.connection_minutes / 120
    connection_reads = SECONDS_PER_MONTH * active_orgs + list_changes * flushers
    # Several flushers would each read their own shards: the same bytes, a query each at least.
    outbox_reads = SECONDS_PER_MONTH * max(outbox_units, flushers)
    bill.add("DynamoDB: flush reads", cost("dynamodb_read", outbox_reads + connection_reads))
    bill.add("DynamoDB: flush lease writes", cost("dynamodb_write", flushers * SECONDS_PER_MONTH / 10))
    storage(bill, measured, shape)
    invocations = connections(bill, inputs, estimates)
    bill.add("API Gateway WS: connection minutes", cost("ws_connection_minute", shape.connection_minutes))
    posts_per_connection = math.ceil(
        shape.per_org_readings * measured.posted_bytes_per_reading / WS_MESSAGE_BYTES
    )
    posts = shape.connected * posts_per_connection * SECONDS_PER_MONTH
    bill.add("API Gateway WS: flush posts", cost("ws_message", posts))
    logs(bill, estimates, ingest_invocations + invocations + flushers * 43_800)
    if shape.connected * posts_per_connection > 10_000:
        bill.notes.append("posts exceed the account's ~10,000 @connections requests/s")
    return bill


def naive(inputs: Inputs, measured: Measured, estimates: Estimates) -> Bill:
    bill = Bill(DESIGNS[1])
    shape = Shape.of(inputs)
    iot(bill, inputs, shape)
    # Each message: store (one put per reading), read the org's connections, post to each
    # connected one (32 at a time), each post costing the same CPU as the flush's.
    targets = shape.browsers_per_org * inputs.hours_per_day / 24
    waves = math.ceil(targets / estimates.post_concurrency)
    extra = estimates.dynamodb_round_trip + waves * estimates.management_api_post
    extra += cpu_wall(targets * measured.flush_cpu_per_post, INGEST_MEMORY_GB)
    invocations = shape.messages * SECONDS_PER_MONTH
    lambda_cost(
        bill,
        "ingest (posts too)",
        invocations,
        ingest_seconds(measured, estimates, inputs, extra) - estimates.dynamodb_round_trip,
        INGEST_MEMORY_GB,
    )
    readings_month = shape.readings * SECONDS_PER_MONTH
    bill.add(
        "DynamoDB: ingest writes (history)",
        cost("dynamodb_write", readings_month * history_units(measured, inputs)),
    )
    connection_units = max(0.5, math.ceil(shape.browsers_per_org * measured.connection_item_bytes / 4096) / 2)
    bill.add("DynamoDB: connections read per message", cost("dynamodb_read", invocations * connection_units))
    storage(bill, measured, shape)
    connect_invocations = connections(bill, inputs, estimates)
    bill.add("API Gateway WS: connection minutes", cost("ws_connection_minute", shape.connection_minutes))
    posts = invocations * targets
    bill.add("API Gateway WS: posts (one per message and browser)", cost("ws_message", posts))
    logs(bill, estimates, invocations + connect_invocations)
    if posts / SECONDS_PER_MONTH > 10_000:
        bill.notes.append(
            f"{posts / SECONDS_PER_MONTH:,.0f} posts/s: beyond the account's ~10,000 @connections requests/s"
        )
    return bill


def appsync(inputs: Inputs, measured: Measured, estimates: Estimates) -> Bill:
    bill = Bill(DESIGNS[2])
    shape = Shape.of(inputs)
    iot(bill, inputs, shape)
    invocations = shape.messages * SECONDS_PER_MONTH
    extra = estimates.appsync_publish - estimates.dynamodb_round_trip
    lambda_cost(
        bill,
        "ingest (publishes)",
        invocations,
        ingest_seconds(measured, estimates, inputs, extra),
        INGEST_MEMORY_GB,
    )
    readings_month = shape.readings * SECONDS_PER_MONTH
    bill.add(
        "DynamoDB: ingest writes (history)",
        cost("dynamodb_write", readings_month * history_units(measured, inputs)),
    )
    storage(bill, measured, shape)
    units = math.ceil(inputs.per_message * measured.posted_bytes_per_reading / 5120)
    targets = shape.browsers_per_org * inputs.hours_per_day / 24
    bill.add("AppSync Events: publishes", cost("appsync_operation", invocations * units))
    bill.add("AppSync Events: deliveries", cost("appsync_operation", invocations * targets * units))
    sessions = inputs.browsers * math.ceil(inputs.hours_per_day / 2) * DAYS_PER_MONTH
    bill.add("AppSync Events: connects and subscribes", cost("appsync_operation", sessions * 2))
    bill.add(
        "AppSync Events: connection minutes", cost("appsync_connection_minute", shape.connection_minutes)
    )
    logs(bill, estimates, invocations)
    bill.notes.append("fan-out only: getLatest, resume, history and commands would need more")
    return bill


def bills(inputs: Inputs, measured: Measured = Measured(), estimates: Estimates = Estimates()) -> list[Bill]:
    return [design(inputs, measured, estimates) for design in (this_design, naive, appsync)]


# --- printing -------------------------------------------------------------------------------

SERVICES = ("IoT Core", "Lambda", "DynamoDB", "API Gateway WS", "AppSync Events", "CloudWatch Logs")


def usd(value: float) -> str:
    return f"${value:,.0f}" if value >= 10 else f"${value:,.2f}"


def table(named: dict[str, Inputs], measured: Measured, estimates: Estimates) -> list[str]:
    columns = [(name, bill) for name, inputs in named.items() for bill in bills(inputs, measured, estimates)]
    header = "| service | " + " | ".join(f"{name}: {bill.design}" for name, bill in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for service in SERVICES:
        lines.append(f"| {service} | " + " | ".join(usd(bill.service(service)) for _, bill in columns) + " |")
    lines.append(
        "| **total a month** | " + " | ".join(f"**{usd(bill.total)}**" for _, bill in columns) + " |"
    )
    return lines


def describe(name: str, inputs: Inputs) -> str:
    return (
        f"{name}: {inputs.devices:,} devices x {inputs.per_device_per_minute:g}/min = "
        f"{inputs.readings_per_second:,.0f} readings/s in messages of {inputs.per_message}; "
        f"{inputs.browsers:,} browsers {inputs.hours_per_day:g} h/day; {inputs.orgs} org(s)"
    )


def per_unit_figures(measured: Measured, estimates: Estimates) -> list[str]:
    """The README's two figures: this design per million readings and per 1,000 browsers."""
    seeds = replace(SCENARIOS["seeds"], orgs=1)
    base = this_design(replace(seeds, browsers=0), measured, estimates)
    readings = seeds.readings_per_second * SECONDS_PER_MONTH / 1e6
    with_browsers = this_design(replace(seeds, browsers=1000), measured, estimates)
    return [
        f"this design at the seeds' rate, no browsers: {usd(base.total)} a month = "
        f"{usd(base.total / readings)} per million readings (flush included)",
        f"1,000 browsers {seeds.hours_per_day:g} h/day on one org of {seeds.readings_per_second:g} "
        f"readings/s add {usd(with_browsers.total - base.total)} a month",
    ]


def registry_items(usage: Any) -> int:
    return int(usage.items_put["UNITS"] + usage.items_put["DEVICE"])


def measured_now() -> Measured:
    from benchmarks import request_counts as counts

    single = counts.measure(counts.WORKLOADS[0])
    batch = counts.measure(counts.WORKLOADS[1])
    n1, n10 = single.workload.readings, batch.workload.readings
    return replace(
        Measured(),
        write_requests_single=single.ingest.writes / n1,
        write_requests_batch10=batch.ingest.writes / n10,
        unit_registry_item_bytes=single.ingest.item_bytes("UNITS"),
        device_items_per_reading=single.ingest.items_put["DEVICE"] / n1,
        history_item_bytes=single.ingest.item_bytes("UNIT"),
        entry_bytes_first_reading=single.ingest.item_bytes("OUTBOX"),
        entry_bytes_per_more_reading=(batch.ingest.item_bytes("OUTBOX") - single.ingest.item_bytes("OUTBOX"))
        / 9,
        connection_item_bytes=single.connect.item_bytes("ORGCONNS"),
        posted_bytes_per_reading=single.posted_bytes / (n1 * single.workload.browsers),
        flush_idle_requests_per_tick=(single.idle.reads + single.idle.writes) / single.idle_ticks,
        ingest_cpu_single=single.ingest_cpu_seconds / single.workload.messages,
        ingest_cpu_per_reading=(
            batch.ingest_cpu_seconds / batch.workload.messages
            - single.ingest_cpu_seconds / single.workload.messages
        )
        / 9,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="make cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int)
    parser.add_argument("--per-device-per-minute", type=float, default=60)
    parser.add_argument("--per-message", type=int, default=1, help="readings per message")
    parser.add_argument("--browsers", type=int, default=50)
    parser.add_argument("--hours", type=float, default=8, help="hours each browser is connected a day")
    parser.add_argument(
        "--orgs", type=int, default=1, help="readings and browsers spread over this many orgs"
    )
    parser.add_argument("--recorded", action="store_true", help="use the recorded counts, do not count again")
    args = parser.parse_args(argv)
    estimates = Estimates()
    if args.recorded:
        measured = Measured()
        print("DynamoDB counts and item sizes: as recorded in benchmarks/cost.py (Measured)")
    else:
        print("Counting DynamoDB requests with the real handlers in-process (moto)...", flush=True)
        measured = measured_now()
        print(
            f"  write requests per reading: {measured.write_requests_single:.2f} (single-reading messages), "
            f"{measured.write_requests_batch10:.2f} (10 a message); write units "
            f"{write_units_per_reading(measured, 1):.2f} / {write_units_per_reading(measured, 10):.2f}; "
            f"an idle tick {measured.flush_idle_requests_per_tick:.1f} requests; ingest's CPU "
            f"{measured.ingest_cpu_single * 1000:.2f} ms a single-reading message, "
            f"+{measured.ingest_cpu_per_reading * 1000:.2f} ms a further reading"
        )
    if args.devices:
        named = {
            "yours": Inputs(
                args.devices,
                args.per_device_per_minute,
                args.per_message,
                args.browsers,
                args.hours,
                args.orgs,
            )
        }
    else:
        named = SCENARIOS
    print(f"\nMonthly bill, us-east-1 prices read {READ_ON} (docs/cost.md), USD:")
    for name, inputs in named.items():
        print(f"  {describe(name, inputs)}")
    print()
    for line in table(named, measured, estimates):
        print(line)
    print()
    for name, inputs in named.items():
        for bill in bills(inputs, measured, estimates):
            for note in bill.notes:
                print(f"  {name}, {bill.design}: {note}")
    print()
    for line in per_unit_figures(measured, estimates):
        print(line)


if __name__ == "__main__":
    main()
