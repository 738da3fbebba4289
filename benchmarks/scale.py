"""``make scale``: the sharded flush at 1,000 / 10,000 / 50,000 connections over 10 orgs,
simulated here (prints, never asserts). docs/scaling.md explains the method and the figures.

The real code runs: ``delivery.Flusher`` (its ``run`` loop: lease, tick grid, renewals),
the roster with its connection list versions, the fan-out's lanes and posting threads,
``coordination.ShardCoordinator`` (sizing, starting the other shards) and the store,
against in-process moto. What AWS would add is injected:

- API Gateway: the flush's own Management API client (``clients.fanout_gateway()``) is
  answered where its request would leave for the network (the signed client's connection
  pool, after signing): a lognormal latency (median 20 ms, p99 150 ms), and the
  account's post rate as a token bucket (10,000/s, burst 5,000) that answers 429
  ``LimitExceededException`` when empty.
- DynamoDB: a lognormal latency before moto answers each request (median 5 ms, p99 25 ms).

All connections are in the table (the org lists every shard reads whole, written in
batches), but 32 shards of 32 posting threads each do not fit a shared 2-core machine. So one shard (or a few,
``--real-shards``) runs for real; shard 0 always, since it also sizes and starts the
others. Every shard holds ~connections/N connections (jump hash) and does the same work,
so the others are stand-ins that hold their leases and report their connection counts
(what shard 0's sizing reads); the real shards get their share of the account's post rate
(k/N of rate and burst), as if all N posted alike. Readings are queued in the outbox for
every second of the run beforehand, each stamped as arriving at the start of its second,
so a post's end-to-end lag minus (1 s + grace) is the latency the fan-out added after the
second's tick was due.

    make scale                                         # 1,000 / 10,000 / 50,000 connections
    make scale ARGS="--sizes 50000 --account-rate 60000 \\
        --set FLUSH_CONNECTIONS_PER_SHARD=400 --set FLUSH_MAX_SHARDS=128"   # what raising it takes
    make scale ARGS="--sizes 10000 --churn 1.4"         # reconnects a second, account-wide
    make scale ARGS="--memory-mb 1769"                  # GB-s and CPU-bound ticks at 1,769 MB
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import platform
import random
import shlex
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import urllib3

from benchmarks.flush_cpu import sample_reading
from benchmarks.request_counts import ENVIRONMENT, MotoCpu, Usage, UsageMeter

# Lambda: one vCPU at 1,769 MB, proportionally less below (docs/cost.md cites it).
FULL_VCPU_MB = 1769
# z of the 99th percentile of a standard normal: a lognormal's p99 is median * e^(z sigma).
Z99 = 2.3263478740408408
# Where the flush's Management API client sends its posts in the simulation (moto leaves
# hosts outside amazonaws.com alone; the simulated API Gateway answers before sending).
CALLBACK_URL = "https://scale-sim.invalid/prod"
SIMULATION_ENVIRONMENT = {
    **ENVIRONMENT,
    "TABLE_NAME": "scale",
    "WEBSOCKET_CALLBACK_URL": CALLBACK_URL,
    # Shard 0 re-sizes every 5 s (60 in AWS), so a run checks its sizing several times.
    "FLUSH_SIZING_SECONDS": "5",
}
DEFAULT_SIZES = (1_000, 10_000, 50_000)


# --- what AWS adds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """A lognormal latency given by its median and 99th percentile (ms)."""

    median_ms: float
    p99_ms: float

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        """Seconds, one sample a call."""
        mu = math.log(self.median_ms / 1000)
        sigma = math.log(self.p99_ms / self.median_ms) / Z99 if self.p99_ms > self.median_ms else 0.0
        return lambda: rng.lognormvariate(mu, sigma)


class TokenBucket:
    """API Gateway's account throttle: ``rate`` tokens a second, at most ``burst`` saved."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, max(burst, 1.0)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


def _http_answer(status: int, code: str | None = None) -> urllib3.HTTPResponse:
    """API Gateway's answer: empty, or the error ``code`` as its error documents carry it."""
    if code is None:
        return urllib3.HTTPResponse(status=status)
    headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json"}
    return urllib3.HTTPResponse(body=b'{"message": "%s"}' % code.encode(), headers=headers, status=status)


class SimulatedApiGateway:
    """Answers the flush's Management API client (the signed client of management_api.py)
    in-process, where its request would leave for the network (its connection pool's
    ``urlopen``, after signing): after ``latency``, 200, or 429 when the account's bucket is
    empty, or 410 for a deleted connection."""

    def __init__(self, latency: Latency, bucket: TokenBucket, rng: random.Random, *, record: bool) -> None:
        self._latency = latency.sampler(rng)
        self._bucket = bucket
        self._record = record
        self._lock = threading.Lock()
        self.posted: Counter[str] = Counter()
        self.completed: list[float] = []  # when each accepted post ended (epoch seconds)
        self.throttled: list[float] = []
        self.gone: set[str] = set()
        self.payloads: dict[str, list[bytes]] = defaultdict(list)

    def attach(self, client: Any) -> None:
        client.pool = client.async_pool = self

    def urlopen(self, method: str, url: str, body: bytes | None = None, **_: Any) -> Any:
        connection_id = unquote(url.rsplit("/@connections/", 1)[1])
        if method == "DELETE":
            time.sleep(self._latency())
            with self._lock:
                self.gone.add(connection_id)
            return _http_answer(204)
        admitted = self._bucket.take()  # the throttle decides as the request arrives
        time.sleep(self._latency())
        return self._answer(connection_id, admitted, body)

    async def request(self, method: str, url: str, body: bytes, headers: Any) -> Any:
        """The fan-out's posts (on its event loop): the same, waiting without a thread."""
        assert method == "POST", "the fan-out only posts"
        connection_id = unquote(url.rsplit("/@connections/", 1)[1])
        admitted = self._bucket.take()
        await asyncio.sleep(self._latency())
        return self._answer(connection_id, admitted, body)

    def close(self) -> None:
        """Nothing kept open."""

    def _answer(self, connection_id: str, admitted: bool, body: bytes | None) -> Any:
        ended = time.time()
        with self._lock:
            if connection_id in self.gone:
                return _http_answer(410, "GoneException")
            if not admitted:
                self.throttled.append(ended)
                return _http_answer(429, "LimitExceededException")
            self.posted[connection_id] += 1
            self.completed.append(ended)
            if self._record:
                self.payloads[connection_id].append(bytes(body or b""))
        return _http_answer(200)


def delay_requests(client: Any, latency: Latency, rng: random.Random) -> None:
    """Each of the client's DynamoDB requests waits ``latency`` before moto answers it."""
    sample = latency.sampler(rng)

    def wait(**_: Any) -> None:
        time.sleep(sample())

    client.meta.events.register_first("before-send.dynamodb", wait)


# --- one run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleConfig:
    connections: int
    orgs: int = 10
    warmup_ticks: int = 3
    ticks: int = 15
    real_shards: int = 1
    post_latency: Latency = Latency(20, 150)
    dynamo_latency: Latency = Latency(5, 25)
    account_rate: float = 10_000
    account_burst: float = 5_000
    # Single-reading messages a second per org, each from its own unit.
    readings_per_org: int = 10
    # Reconnects a second account-wide (a disconnect and a new connection each).
    churn_per_second: float = 0.0
    # Settings' environment variables (FLUSH_CONNECTIONS_PER_SHARD=400, ...).
    settings: Mapping[str, str] = field(default_factory=dict)
    seed: int = 1
    # The flush's memory for the GB-s and CPU-bound figures (None: the function catalog's).
    memory_mb: int | None = None
    # Keep every posted frame (tests check what each connection received).
    record_payloads: bool = False


@dataclass
class Percentiles:
    p50: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        return cls(percentile(values, 50), percentile(values, 99))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (nan for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


@dataclass
class SizeResult:
    connections: int
    orgs: int
    shards: int
    real_shards: list[int]
    connections_per_shard: float
    layout_changes: int
    shard_starts: int
    tick_seconds: Percentiles
    tick_lateness_seconds: Percentiles  # tick start after its due time on the grid
    first_tick_seconds: float
    first_tick_cpu_seconds: float  # ours, per shard
    tick_failures: int
    cpu_per_tick_seconds: Percentiles  # ours (moto's subtracted), per shard
    memory_mb: int
    posts_per_second: float  # account-wide (the real shards' x N/k)
    demand_per_second: float  # one post per connection per second
    added_latency_seconds: Percentiles
    lag_samples: int
    throttled_per_second: float  # account-wide
    throttled_share: float
    connections_closed: int  # account-wide, over the measured ticks
    messages_per_connection_tick: float
    dynamo_reads_per_tick: float
    dynamo_writes_per_tick: float
    dynamo_read_units_per_tick: float
    dynamo_write_units_per_tick: float
    dynamo_operations_per_tick: dict[str, float]
    lists_read: int
    changes_applied: int  # connection list changes applied from the log instead
    measured_ticks: int  # of the real shards
    empty_ticks: int  # measured ticks that found no readings (should be none)
    gb_seconds_per_hour: float
    wall_seconds: float

    @property
    def lambda_tick_seconds(self) -> Percentiles:
        """CPU-bound duration of a tick at ``memory_mb`` (Lambda's CPU is in proportion)."""
        scale = FULL_VCPU_MB / min(self.memory_mb, FULL_VCPU_MB)
        return Percentiles(self.cpu_per_tick_seconds.p50 * scale, self.cpu_per_tick_seconds.p99 * scale)


@dataclass
class TickRecord:
    index: int
    started: float  # wall clock
    report: Any  # TickReport
    usage_before: Usage
    cpu_before: tuple[float, float] | None = None  # (process CPU, moto CPU), shard 0 only


def pick_shards(real: int, shards: int) -> list[int]:
    """``real`` shards spread over 0..shards-1, shard 0 always among them."""
    if real <= 1 or shards == 1:
        return [0]
    real = min(real, shards)
    return sorted({round(i * (shards - 1) / (real - 1)) for i in range(real)})


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ for the duration, then as before."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Simulation:
    """One size: the population, the outbox, the real shards' flushers and the stand-ins."""

    def __init__(self, config: ScaleConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.ticks: dict[int, list[TickRecord]] = defaultdict(list)
        self.flushers: dict[int, Any] = {}
        self.threads: list[threading.Thread] = []
        self.meters: dict[int, UsageMeter] = {}
        self.started_workers: list[int] = []
        self.tick_failures = 0
        self.leftover_messages = 0
        self.population: dict[str, str] = {}  # connection id -> org
        self.shard_of: dict[str, int] = {}
        self.readings: dict[tuple[str, int], list[str]] = {}  # (org, second) -> reading ids
        self._lock = threading.Lock()

    # --- set-up --------------------------------------------------------------------------

    def run(self) -> SizeResult:
        import boto3
        from moto import mock_aws

        from devstack import moto_fidelity
        from sensor_stream import clients
        from sensor_stream.settings import get_settings
        from sensor_stream.table import create_table

        config = self.config
        began = time.monotonic()
        with environment({**SIMULATION_ENVIRONMENT, **config.settings}):
            clients.reset()
            moto_fidelity.apply()
            settings = get_settings()
            try:
                with mock_aws(config={"core": {"reset_boto3_session": False}}), MotoCpu() as moto:
                    create_table(boto3.client("dynamodb"), settings.table_name)
                    self.moto = moto
                    self._set_up(settings)
                    # Powertools prints EMF metrics every 100 values, and warns of none.
                    with (
                        open(os.devnull, "w") as devnull,
                        contextlib.redirect_stdout(devnull),
                        warnings.catch_warnings(),
                    ):
                        warnings.filterwarnings("ignore", message="No application metrics")
                        self._run_shards(settings)
                    layout = self.setup_store.flush_state.read().layout
                    return self._result(settings, layout, time.monotonic() - began)
            finally:
                clients.reset()

    def _new_store(self) -> Any:
        import boto3
        from botocore.config import Config

        from sensor_stream.store import SensorStore

        client = boto3.client(
            "dynamodb",
            config=Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=64),
        )
        return SensorStore(client, self.settings)

    def _set_up(self, settings: Any) -> None:
        from sensor_stream.sharding import ShardLayout, desired_shards, shard_of

        config = self.config
        self.settings = settings
        self.setup_store = self._new_store()
        self.shards = desired_shards(
            config.connections, 1, settings.flush_connections_per_shard, settings.flush_max_shards
        )
        self.real = pick_shards(config.real_shards, self.shards)
        self.orgs = [f"org-{k:02d}" for k in range(config.orgs)]
        for n in range(config.connections):
            connection_id = f"Sim{n:08d}Q="
            self.population[connection_id] = self.orgs[n % config.orgs]
            self.shard_of[connection_id] = shard_of(connection_id, self.shards)
        self._next_id = config.connections
        self.per_shard = Counter(self.shard_of.values())
        now = time.time()
        self._write_connections(list(self.population), now)
        # The layout shard 0's sizing chose (coordination.desired_shards), in place as in a
        # running deployment: from second 0 on, nothing before it.
        owner = "scale-setup"
        state = self.setup_store.flush_state
        state.acquire(owner, now, 5)
        state.change_layout(owner, ShardLayout(shards=self.shards, since=0, previous=self.shards))
        state.release(owner, delivered_through=None)
        # Readings for every second the run may reach, written ahead (the flush reads a
        # second only once it ended), from the next whole second on.
        self.first_second = math.floor(time.time()) + 1
        self._queue_readings(range(self.first_second, self.first_second + self.time_limit + 10))

    @property
    def time_limit(self) -> int:
        """Seconds the shards may tick at most (slow ticks skip seconds of the grid)."""
        return 30 + 5 * (self.config.warmup_ticks + self.config.ticks)

    def _records(self, ids: Sequence[str], now: float) -> list[Any]:
        from sensor_stream.models import ConnectionRecord, Subscription

        connected = datetime.fromtimestamp(now - 600, UTC)  # past $connect's grace
        return [
            ConnectionRecord(
                connection_id=connection_id,
                org_id=self.population[connection_id],
                user_id=f"user-{connection_id}",
                subscription=Subscription(),
                connected_at=connected,
                expires_at=int(now) + 3600,
                version=1,
            )
            for connection_id in ids
        ]

    def _write_connections(self, ids: list[str], now: float) -> None:
        """The org copies the flush reads (``ORGCONNS#``) and each org's list version."""
        from sensor_stream.keys import org_connections_version_key
        from sensor_stream.store.dynamo import N

        store = self.setup_store
        items = [store.connections._items(record)[1] for record in self._records(ids, now)]
        store.table.batch_put(items)
        for org in self.orgs:
            store.table.update(org_connections_version_key(org), "ADD v :one", values={":one": N(1)})

    def _queue_readings(self, seconds: range) -> None:
        from sensor_stream.store import OutboxEntry

        store = self.setup_store
        items = []
        for second in seconds:
            arrived = datetime.fromtimestamp(second, UTC)  # at the start of its second
            for org in self.orgs:
                ids = []
                for k in range(self.config.readings_per_org):
                    reading = sample_reading(
                        f"{org}-{second}-{k}", f"unit-{k:03d}", f"dev-{k:03d}", arrived, arrived
                    )
                    ids.append(reading.id)
                    entry = OutboxEntry(org, f"m-{second}-{k}", [reading.to_json()])
                    items.append(store.readings.entry_item(entry, second))
                self.readings[(org, second)] = ids
        store.readings.write(items)

    # --- the run -------------------------------------------------------------------------

    def _run_shards(self, settings: Any) -> None:
        from sensor_stream import clients

        config = self.config
        share = len(self.real) / self.shards
        bucket = TokenBucket(config.account_rate * share, config.account_burst * share)
        self.gateway = SimulatedApiGateway(
            config.post_latency, bucket, self.rng, record=config.record_payloads
        )
        self.connection_gateway = clients.fanout_gateway()
        self.gateway.attach(self.connection_gateway._client)
        # Each real shard ticks warm-up + measured ticks and one more (where the last measured
        # one ends); a time limit in case ticks fail.
        self.deadline = time.time() + self.time_limit
        self.finished = threading.Event()
        owners = self._take_stand_in_leases()
        helpers = [threading.Thread(target=self._stand_ins, args=(owners,), name="stand-ins")]
        if config.churn_per_second > 0:
            helpers.append(threading.Thread(target=self._churn, name="churn"))
        for helper in helpers:
            helper.start()
        # A flusher's first tick runs at once (the warm-up): from the grid point before the
        # first second with readings, so that each measured tick reads one of them.
        time.sleep(max(0.0, self.first_second + self.settings.flush_grace_seconds - time.time()))
        self._start_shard(0)
        # Shard 0 starts the others through the coordinator (start_worker), as in AWS.
        while True:
            with self._lock:
                threads = list(self.threads)
            for thread in threads:
                thread.join()
            with self._lock:
                if len(self.threads) == len(threads):
                    break
        self.finished.set()
        for helper in helpers:
            helper.join()
        for flusher in self.flushers.values():
            self.leftover_messages += flusher.fanout.take_counts().messages_sent

    def _keep_going(self, shard: int) -> bool:
        wanted = self.config.warmup_ticks + self.config.ticks + 1
        return len(self.ticks[shard]) < wanted and time.time() < self.deadline

    def _start_worker(self, shard: int) -> None:
        """coordination.WorkerStarter: a real shard's flusher the first time (stand-ins hold
        the other shards' leases)."""
        with self._lock:
            self.started_workers.append(shard)
            if shard not in self.real or shard in self.flushers:
                return
        self._start_shard(shard)

    def _start_shard(self, shard: int) -> None:
        store = self._new_store()
        self.meters[shard] = meter = UsageMeter(store.client)
        meter.current = "flush"
        delay_requests(store.client, self.config.dynamo_latency, self.rng)
        flusher = measured_flusher()(
            store,
            self.connection_gateway,
            self.settings,
            owner=f"shard-{shard}",
            shard=shard,
            start_worker=self._start_worker if shard == 0 else None,
            simulation=self,
        )
        thread = threading.Thread(target=self._run_flusher, args=(flusher,), name=f"flush-{shard}")
        with self._lock:
            self.flushers[shard] = flusher
            self.threads.append(thread)
        thread.start()

    def _run_flusher(self, flusher: Any) -> None:
        try:
            flusher.run(lambda: self._keep_going(flusher.shard))
        finally:
            flusher.close()

    def before_tick(self, shard: int) -> TickRecord:
        cpu = (time.process_time(), self.moto.seconds) if shard == 0 else None
        usage = self.meters[shard].usage("flush").copy()
        with self._lock:
            record = TickRecord(len(self.ticks[shard]), time.time(), None, usage, cpu)
            self.ticks[shard].append(record)
        return record

    def tick_failed(self) -> None:
        with self._lock:
            self.tick_failures += 1

    def _take_stand_in_leases(self) -> dict[int, str]:
        """The shards not simulated: each holds its lease and reports its connections, as
        its flusher would at every renewal (shard 0's sizing reads them)."""
        owners = {k: f"stand-in-{k}" for k in range(1, self.shards) if k not in self.real}
        for k, owner in owners.items():
            self.setup_store.flush_state.for_shard(k).acquire(
                owner, time.time(), self.settings.flush_lease_seconds
            )
        return owners

    def _stand_ins(self, owners: dict[int, str]) -> None:
        states = {k: self.setup_store.flush_state.for_shard(k) for k in owners}
        lease = self.settings.flush_lease_seconds
        while owners:
            now = time.time()
            for k, owner in owners.items():
                states[k].renew(
                    owner,
                    now,
                    lease,
                    read_through=None,
                    delivered_through=None,
                    load=self.per_shard[k],
                )
            if self.finished.wait(self.settings.flush_renew_seconds):
                break
        for k, owner in owners.items():
            states[k].release(owner, delivered_through=None)

    def _churn(self) -> None:
        """Reconnects through the real connection store (each bumps its org's list version):
        a connection goes, a new one of the same org comes."""
        from sensor_stream.sharding import shard_of

        store = self.setup_store
        interval = 1 / self.config.churn_per_second
        ids = list(self.population)
        while not self.finished.wait(interval):
            gone = ids.pop(self.rng.randrange(len(ids)))
            org = self.population[gone]
            store.connections.delete(gone, org)
            new_id = f"Sim{self._next_id:08d}Q="
            self._next_id += 1
            self.population[new_id] = org
            self.shard_of[new_id] = shard_of(new_id, self.shards)
            [record] = self._records([new_id], time.time())
            store.connections.create(record)
            ids.append(new_id)

    # --- results -------------------------------------------------------------------------

    def measured(self, shard: int) -> list[TickRecord]:
        first = self.config.warmup_ticks
        return self.ticks[shard][first : first + self.config.ticks]

    def _result(self, settings: Any, layout: Any, wall: float) -> SizeResult:
        from sensor_stream.catalog import FLUSH

        config = self.config
        memory_mb = config.memory_mb or FLUSH.memory_mb
        scale = self.shards / len(self.real)
        grace = settings.flush_grace_seconds
        records = [record for shard in self.real for record in self.measured(shard)]
        reports = [record.report for record in records if record.report is not None]
        zero = self.ticks[0]
        first, last = config.warmup_ticks, config.warmup_ticks + config.ticks
        window_start = zero[first].started if len(zero) > first else math.nan
        window_end = zero[last].started if len(zero) > last else time.time()
        window = max(window_end - window_start, 1e-9)
        cpu = [
            self._cpu_between(a, b) / len(self.real)
            for a, b in zip(zero[first:last], zero[first + 1 : last + 1], strict=False)
        ]
        completed = sum(1 for t in self.gateway.completed if window_start <= t < window_end)
        throttled = sum(1 for t in self.gateway.throttled if window_start <= t < window_end)
        lags = [lag - 1 - grace for report in reports for lag in report.fanout.lags]
        usage, per_tick_ops = self._dynamo_per_tick()
        served = sum(self.per_shard[k] for k in self.real)
        return SizeResult(
            connections=config.connections,
            orgs=config.orgs,
            shards=layout.shards,
            real_shards=self.real,
            connections_per_shard=config.connections / layout.shards,
            layout_changes=0 if layout.shards == self.shards and layout.since == 0 else 1,
            shard_starts=len(self.started_workers),
            tick_seconds=Percentiles.of([r.duration_seconds for r in reports]),
            tick_lateness_seconds=Percentiles.of([(r.started - grace) % 1 for r in records]),
            first_tick_seconds=max(
                (
                    self.ticks[k][0].report.duration_seconds
                    for k in self.real
                    if self.ticks[k] and self.ticks[k][0].report is not None
                ),
                default=math.nan,
            ),
            first_tick_cpu_seconds=(
                self._cpu_between(zero[0], zero[1]) / len(self.real) if len(zero) > 1 else math.nan
            ),
            tick_failures=self.tick_failures + sum(1 for r in records if r.report is None),
            cpu_per_tick_seconds=Percentiles.of(cpu),
            memory_mb=memory_mb,
            posts_per_second=completed / window * scale,
            demand_per_second=float(config.connections),
            added_latency_seconds=Percentiles.of(lags),
            lag_samples=len(lags),
            throttled_per_second=throttled / window * scale,
            throttled_share=throttled / max(1, throttled + completed),
            connections_closed=round(sum(r.fanout.connections_closed for r in reports) * scale),
            messages_per_connection_tick=sum(r.fanout.messages_sent for r in reports)
            / max(1, served * config.ticks),
            dynamo_reads_per_tick=usage.reads / max(1, len(records)),
            dynamo_writes_per_tick=usage.writes / max(1, len(records)),
            dynamo_read_units_per_tick=usage.read_units / max(1, len(records)),
            dynamo_write_units_per_tick=usage.write_units / max(1, len(records)),
            dynamo_operations_per_tick=per_tick_ops,
            measured_ticks=len(records),
            empty_ticks=sum(1 for r in reports if not r.readings),
            lists_read=sum(flusher.roster.lists_read for flusher in self.flushers.values()),
            changes_applied=sum(flusher.roster.changes_applied for flusher in self.flushers.values()),
            gb_seconds_per_hour=layout.shards * memory_mb / 1024 * 3600,
            wall_seconds=wall,
        )

    @staticmethod
    def _cpu_between(start: TickRecord, end: TickRecord) -> float:
        """Our CPU (all threads, moto's subtracted) from one of shard 0's tick starts to another."""
        (cpu_start, moto_start), (cpu_end, moto_end) = start.cpu_before or (0, 0), end.cpu_before or (0, 0)
        return (cpu_end - cpu_start) - (moto_end - moto_start)

    def _dynamo_per_tick(self) -> tuple[Usage, dict[str, float]]:
        """The real shards' requests over their measured ticks (each tick's from its start to
        the next one's, the posting threads' deletes included)."""
        total = Usage()
        ticks = 0
        for shard in self.real:
            records = self.ticks[shard]
            first, last = self.config.warmup_ticks, self.config.warmup_ticks + self.config.ticks
            if len(records) <= first:
                continue
            end = records[last].usage_before if len(records) > last else self.meters[shard].usage("flush")
            spent = end.minus(records[first].usage_before)
            ticks += min(len(records), last) - first
            total = Usage(
                total.requests + spent.requests,
                total.write_units + spent.write_units,
                total.read_units + spent.read_units,
            )
        operations = {name: count / max(1, ticks) for name, count in sorted(total.requests.items())}
        return total, operations


@functools.cache
def measured_flusher() -> Any:
    """Flusher with a probe around each tick (made on first use: importing the functions'
    package sets Powertools up from the environment, which the simulation sets first)."""
    from sensor_stream.delivery import Flusher, TickReport
    from sensor_stream.observability import metrics

    metrics_lock = threading.Lock()

    class MeasuredFlusher(Flusher):
        def __init__(self, *args: Any, simulation: Simulation, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._simulation = simulation

        def tick(self, now: float) -> TickReport:
            record = self._simulation.before_tick(self.shard)
            try:
                record.report = super().tick(now)
            except Exception:
                self._simulation.tick_failed()
                raise
            return record.report

        @staticmethod
        def _record_metrics(report: TickReport) -> None:
            # One process hosts several shards here; Powertools' metric set is per process.
            with metrics_lock:
                Flusher._record_metrics(report)
                metrics.clear_metrics()

    return MeasuredFlusher


def simulate(config: ScaleConfig) -> tuple[SizeResult, Simulation]:
    simulation = Simulation(config)
    return simulation.run(), simulation


# --- report ----------------------------------------------------------------------------------


def machine() -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, load {load}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.0f}"


def rows(results: Sequence[SizeResult]) -> list[tuple[str, list[str]]]:
    """(label, one cell per size) for the printed table and docs/scaling.md."""

    def each(render: Callable[[SizeResult], str]) -> list[str]:
        return [render(result) for result in results]

    def ms(get: Callable[[SizeResult], Percentiles]) -> list[str]:
        return each(lambda r: f"{_ms(get(r).p50)} / {_ms(get(r).p99)}")

    return [
        ("shards (connections each)", each(lambda r: f"{r.shards} ({r.connections_per_shard:,.0f})")),
        ("shards run for real", each(lambda r: ", ".join(map(str, r.real_shards)))),
        ("tick duration p50 / p99 (ms)", ms(lambda r: r.tick_seconds)),
        ("tick start after due p50 / p99 (ms)", ms(lambda r: r.tick_lateness_seconds)),
        (
            "first tick, empty roster: wall / CPU (ms)",
            each(lambda r: f"{_ms(r.first_tick_seconds)} / {_ms(r.first_tick_cpu_seconds)}"),
        ),
        ("CPU per shard-tick p50 / p99 (ms)", ms(lambda r: r.cpu_per_tick_seconds)),
        ("  = CPU-bound tick at the flush's memory (ms)", ms(lambda r: r.lambda_tick_seconds)),
        (
            "posts/s (account) of demand",
            each(lambda r: f"{r.posts_per_second:,.0f} of {r.demand_per_second:,.0f}"),
        ),
        ("latency added by fan-out p50 / p99 (ms)", ms(lambda r: r.added_latency_seconds)),
        (
            "throttled posts/s (share of attempts)",
            each(lambda r: f"{r.throttled_per_second:,.0f} ({r.throttled_share:.0%})"),
        ),
        ("connections closed (stalled)", each(lambda r: f"{r.connections_closed:,}")),
        ("messages per connection-tick", each(lambda r: f"{r.messages_per_connection_tick:.2f}")),
        (
            "DynamoDB per shard-tick: reads / writes",
            each(lambda r: f"{r.dynamo_reads_per_tick:.2f} / {r.dynamo_writes_per_tick:.2f}"),
        ),
        (
            "  read / write units",
            each(lambda r: f"{r.dynamo_read_units_per_tick:.1f} / {r.dynamo_write_units_per_tick:.2f}"),
        ),
        (
            "  by operation",
            each(lambda r: ", ".join(f"{k} {v:.2f}" for k, v in r.dynamo_operations_per_tick.items())),
        ),
        (
            "flush memory; Lambda GB-s per hour (x shards)",
            each(lambda r: f"{r.memory_mb:,} MB; {r.gb_seconds_per_hour:,.0f}"),
        ),
        (
            "org lists read; changes applied (real shards)",
            each(lambda r: f"{r.lists_read:,}; {r.changes_applied:,}"),
        ),
        (
            "measured shard-ticks (empty, failed); layout changes",
            each(lambda r: f"{r.measured_ticks} ({r.empty_ticks}, {r.tick_failures}); {r.layout_changes}"),
        ),
        ("run took (s)", each(lambda r: f"{r.wall_seconds:.0f}")),
    ]


def print_table(results: Sequence[SizeResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sharded flush, simulated (docs/scaling.md)")
    table.add_column("")
    for result in results:
        table.add_column(f"{result.connections:,} connections", justify="right")
    for label, cells in rows(results):
        table.add_row(label, *cells)
    Console().print(table)


def markdown(results: Sequence[SizeResult]) -> str:
    head = "| | " + " | ".join(f"{r.connections:,} connections" for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows(results)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="make scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="connections, comma-separated"
    )
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--ticks", type=int, default=15, help="measured ticks per size")
    parser.add_argument("--warmup", type=int, default=3, help="ticks before measuring")
    parser.add_argument("--real-shards", type=int, default=1, help="shards run for real (shard 0 always)")
    parser.add_argument("--post-median-ms", type=float, default=20)
    parser.add_argument("--post-p99-ms", type=float, default=150)
    parser.add_argument("--dynamo-median-ms", type=float, default=5)
    parser.add_argument("--dynamo-p99-ms", type=float, default=25)
    parser.add_argument("--account-rate", type=float, default=10_000, help="posts/s the account may make")
    parser.add_argument("--account-burst", type=float, default=5_000)
    parser.add_argument("--readings-per-org", type=int, default=10, help="a second, one a message")
    parser.add_argument("--churn", type=float, default=0, help="reconnects a second, account-wide")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a setting's variable (repeatable)"
    )
    parser.add_argument("--memory-mb", type=int, help="the flush's memory (default: the function catalog's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    print(f"command: make scale ARGS={shlex.quote(shlex.join(sys.argv[1:] if argv is None else argv))}")
    print(f"machine: {machine()}")
    print(
        f"posts: {args.post_median_ms:g} ms median, {args.post_p99_ms:g} ms p99; "
        f"account {args.account_rate:,.0f}/s (burst {args.account_burst:,.0f}); "
        f"DynamoDB {args.dynamo_median_ms:g} / {args.dynamo_p99_ms:g} ms; "
        f"{args.readings_per_org} readings/s per org over {args.orgs} orgs; churn {args.churn:g}/s; "
        f"settings {overrides or 'defaults'}",
        flush=True,
    )
    results = []
    for size in (int(text) for text in args.sizes.split(",")):
        config = ScaleConfig(
            connections=size,
            orgs=args.orgs,
            warmup_ticks=args.warmup,
            ticks=args.ticks,
            real_shards=args.real_shards,
            post_latency=Latency(args.post_median_ms, args.post_p99_ms),
            dynamo_latency=Latency(args.dynamo_median_ms, args.dynamo_p99_ms),
            account_rate=args.account_rate,
            account_burst=args.account_burst,
            readings_per_org=args.readings_per_org,
            churn_per_second=args.churn,
            settings=overrides,
            seed=args.seed,
            memory_mb=args.memory_mb,
        )
        print(f"{size:,} connections...", flush=True)
        result, _ = simulate(config)
        results.append(result)
        print(
            f"  {result.shards} shards, ticks p50/p99 "
            f"{_ms(result.tick_seconds.p50)}/{_ms(result.tick_seconds.p99)} ms, "
            f"{result.posts_per_second:,.0f} posts/s, added p99 {_ms(result.added_latency_seconds.p99)} ms",
            flush=True,
        )
    print_table(results)
    if args.markdown:
        print(markdown(results))
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(result) for result in results], out, indent=2)


if __name__ == "__main__":
    main()
