"""Posting efficiency: posts/s of one flush worker and its CPU per post, for four ways of
posting, against the local Management API emulator (prints, never asserts).

A child process runs the emulator (devstack/websocket_gateway.py), another
``--connections`` WebSocket clients that read everything; its post latency is set through the same fault
settings as ``PUT /faults/gateway {"postLatencyMs": ...}``. Each design then runs in a
fresh process of its own (imports and threads of one do not burden the next) and posts
``--rounds`` rounds of one ``--message-bytes`` message to every connection, as the flush
does each tick: every connection has at most one post in flight, ``--concurrency`` posts
in flight at most.

- boto3: the flush's former client (``apigatewaymanagementapi`` as clients.py configured
  it: no retry, short timeouts) on a thread pool;
- signed: sensor_stream.management_api's client (botocore's SigV4 signer and credentials,
  urllib3 keep-alive connections) on the same thread pool;
- signed-loop: the same client's ``post_to_connection_async`` on one event loop
  (lean_http's asyncio connections), ``--concurrency`` at once: how the flush's fan-out
  posts since 24 November;
- asyncio: aiohttp with keep-alive on one event loop, signing the same way (skipped
  when aiohttp is not installed: it is no dependency of the project).

CPU per post is the posting process's CPU time (all threads) over its posts, the
emulator's own work excluded (it is API Gateway's in AWS); the emulator's CPU per post is
printed beside it, user and system apart (what the local stack's supervisor pays a post).
Lambda gives a function CPU in proportion to its memory (one vCPU at 1,769 MB), so at the
flush's memory a CPU-bound worker posts at most ``vCPU share / CPU per post`` a second:
printed as "ceiling", at the flush's memory (catalog.FLUSH) and at 1,769 MB (one vCPU, all
a Python process can use).

    .venv/bin/python -m benchmarks.posting                        # 0 and 20/150 ms latency
    .venv/bin/python -m benchmarks.posting --repeats 5 --latency 20/150 --concurrency 64

Measured (docs/posting.md has the tables): shared 2-core x86_64 VM, load 2-14, Python
3.11.7, 2026-11-23, 300 connections, 2,300-byte messages, 32 in flight; ranges over two
runs of the default (3 runs a design each, aiohttp 3.14.5 installed aside):

    design   latency 0: posts/s  CPU ms/post   20/150 ms: posts/s  CPU ms/post   ceiling 512 MB / 1,769 MB
    boto3          633-881        0.97-1.33          446-548        1.02-1.34     216-298 /   745-1,029
    signed       988-1,500        0.49-0.69          502-720        0.50-0.58     421-596 / 1,453-2,058
    asyncio      577-2,095        0.27-0.34          477-573        0.38-0.45   650-1,068 / 2,247-3,690

The flush posted with the signed client on its thread pool: half boto3's CPU a post, no
new dependency. asyncio cost ~30-40% less CPU again; the fan-out now posts that way with
the signed client over lean_http's own asyncio connections (signed-loop; figures in
docs/posting.md), no aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from benchmarks.flush_cpu import FULL_VCPU_MB

STAGE = "bench"
DESIGNS = ("boto3", "signed", "signed-loop", "asyncio")
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench-session-token",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
}


# --- the emulator and its browsers (child process) -----------------------------------------


def serve_gateway(connections: int, pipe: Connection) -> None:
    asyncio.run(_serve_gateway(connections, pipe))


def serve_browsers(port: int, connections: int, pipe: Connection) -> None:
    """The browsers, in a process of their own: the emulator's CPU is then its own."""
    asyncio.run(_serve_browsers(port, connections, pipe))


async def _serve_browsers(port: int, connections: int, pipe: Connection) -> None:
    from websockets.asyncio.client import connect

    received = [0]

    async def browser() -> None:
        async with connect(f"ws://127.0.0.1:{port}", max_size=None) as socket:
            async for _ in socket:
                received[0] += 1

    browsers = []
    for _ in range(connections):
        browsers.append(asyncio.create_task(browser()))
        await asyncio.sleep(0)
    while await asyncio.to_thread(pipe.recv) == "received":
        pipe.send(received[0])
    for task in browsers:
        task.cancel()


async def _serve_gateway(connections: int, pipe: Connection) -> None:
    from devstack.faults import GatewayFaults, GatewayFaultSettings
    from devstack.http_server import AsyncHttpServer
    from devstack.lambda_runtime import InProcessFunction
    from devstack.websocket_gateway import Routes, WebSocketGateway

    connection_ids: list[str] = []

    def accept_everyone(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["requestContext"]["routeKey"] == "$connect":
            connection_ids.append(event["requestContext"]["connectionId"])
        return {"statusCode": 200}

    function = InProcessFunction("connect", accept_everyone, timeout_seconds=10)
    faults = GatewayFaults()
    gateway = WebSocketGateway(Routes(function, function, function, {}), stage=STAGE, faults=faults)
    port = await gateway.start(0)
    # Served as the local stack serves it (devstack/stack.py).
    management = AsyncHttpServer(
        "management-api", gateway.management_api, immediate=gateway.management_answer_at_once
    )
    await management.start(0)
    pipe.send(port)  # the browsers connect from a process of their own
    while len(connection_ids) < connections:
        await asyncio.sleep(0.05)
    pipe.send((f"{management.url}/{STAGE}", list(connection_ids)))
    while True:
        command, argument = await asyncio.to_thread(pipe.recv)
        if command == "latency":
            faults.settings = GatewayFaultSettings.model_validate({"postLatencyMs": argument})
            pipe.send(None)
        elif command == "cpu":
            times = os.times()
            pipe.send((times.user, times.system))
        else:
            break
    await management.stop()
    await gateway.stop()


# --- one design in a process of its own ----------------------------------------------------


@dataclass(frozen=True)
class Run:
    design: str
    concurrency: int
    posts: int
    failed: int
    wall_seconds: float
    cpu_seconds: float
    # The emulator's CPU (API Gateway's work in AWS) over the same posts: user, system.
    emulator_seconds: tuple[float, float] = (0.0, 0.0)

    @property
    def posts_per_second(self) -> float:
        return self.posts / self.wall_seconds

    @property
    def cpu_ms_per_post(self) -> float:
        return self.cpu_seconds / self.posts * 1000


@dataclass(frozen=True)
class Job:
    design: str
    url: str
    connection_ids: list[str]
    message: bytes
    rounds: int
    concurrency: int


def run_design(job: Job, results: Connection) -> None:
    os.environ.update(ENVIRONMENT)
    try:
        results.send(_run_design(job))
    except Exception as error:  # reported, not raised: the other designs still run
        results.send(f"{type(error).__name__}: {error}")


def _run_design(job: Job) -> Run:
    if job.design == "asyncio":
        return asyncio.run(_post_asyncio(job))
    if job.design == "signed-loop":
        return asyncio.run(_post_signed_loop(job))
    post = _boto3_post(job) if job.design == "boto3" else _signed_post(job)
    failed = [0]

    def post_one(connection_id: str) -> None:
        try:
            post(connection_id, job.message)
        except Exception:
            failed[0] += 1

    with ThreadPoolExecutor(job.concurrency, thread_name_prefix="post") as pool:
        # A first round opens the connections and loads what loads lazily: not measured.
        wait([pool.submit(post_one, connection_id) for connection_id in job.connection_ids])
        failed[0] = 0
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(job.rounds):
            wait([pool.submit(post_one, connection_id) for connection_id in job.connection_ids])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    posts = job.rounds * len(job.connection_ids)
    return Run(job.design, job.concurrency, posts, failed[0], wall, cpu)


def _boto3_post(job: Job) -> Callable[[str, bytes], object]:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 1},
        connect_timeout=2.0,
        read_timeout=2.0,
        max_pool_connections=job.concurrency + 8,
    )
    client = boto3.client("apigatewaymanagementapi", endpoint_url=job.url, config=config)
    return lambda connection_id, data: client.post_to_connection(ConnectionId=connection_id, Data=data)


def _session_credentials() -> tuple[str, Any]:
    """The region and credentials botocore finds, as clients.fanout_gateway takes them."""
    import botocore.session

    session = botocore.session.get_session()
    credentials = session.get_credentials()
    assert credentials is not None, "no credentials"
    return session.get_config_variable("region"), credentials


def _signer(url: str) -> Any:
    from sensor_stream.management_api import ExecuteApiSigner

    region, credentials = _session_credentials()
    return ExecuteApiSigner(url, region=region, credentials=credentials)


def _signed_client(job: Job) -> Any:
    """sensor_stream.management_api's client as clients.fanout_gateway configures it."""
    from sensor_stream.management_api import SignedManagementApi

    region, credentials = _session_credentials()
    return SignedManagementApi(
        job.url,
        region=region,
        credentials=credentials,
        timeout_seconds=2.0,
        max_connections=job.concurrency + 8,
    )


def _signed_post(job: Job) -> Callable[[str, bytes], object]:
    client = _signed_client(job)
    return lambda connection_id, data: client.post_to_connection(ConnectionId=connection_id, Data=data)


async def _timed_rounds(job: Job, post_one: Callable[[str], Awaitable[bool]]) -> Run:
    """One unmeasured round, then ``job.rounds`` measured ones, every post on the loop at
    once (``post_one`` bounds how many are in flight); ``post_one``: False when it failed."""

    async def one_round() -> int:
        outcomes = await asyncio.gather(*(post_one(connection_id) for connection_id in job.connection_ids))
        return outcomes.count(False)

    await one_round()
    failed = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(job.rounds):
        failed += await one_round()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    posts = job.rounds * len(job.connection_ids)
    return Run(job.design, job.concurrency, posts, failed, wall, cpu)


async def _post_signed_loop(job: Job) -> Run:
    client = _signed_client(job)
    slots = asyncio.Semaphore(job.concurrency)

    async def post_one(connection_id: str) -> bool:
        async with slots:
            try:
                await client.post_to_connection_async(ConnectionId=connection_id, Data=job.message)
            except Exception:
                return False
            return True

    return await _timed_rounds(job, post_one)


async def _post_asyncio(job: Job) -> Run:
    import aiohttp

    signer = _signer(job.url)
    timeout = aiohttp.ClientTimeout(sock_connect=2.0, sock_read=2.0)
    connector = aiohttp.TCPConnector(limit=job.concurrency, keepalive_timeout=60)
    async with aiohttp.ClientSession(signer.origin, connector=connector, timeout=timeout) as session:

        async def post_one(connection_id: str) -> bool:
            path = signer.connection_path(connection_id)
            headers = signer.headers("POST", path, job.message)
            try:
                # encoded=True: the path is already percent-encoded, as it was signed.
                async with session.post(
                    aiohttp.client.URL(signer.origin + path, encoded=True), data=job.message, headers=headers
                ) as response:
                    await response.read()
                    return response.status < 300
            except (aiohttp.ClientError, TimeoutError):
                return False

        return await _timed_rounds(job, post_one)


def aiohttp_installed() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


# --- orchestration --------------------------------------------------------------------------


def measure(job: Job, emulator_cpu: Callable[[], tuple[float, float]]) -> Run | str:
    """One design's run; ``emulator_cpu``: the emulator process's CPU so far (user, system),
    whose growth over the run (the first round's included) is charged to its posts."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=run_design, args=(job, theirs), name=f"post-{job.design}")
    before = emulator_cpu()
    process.start()
    theirs.close()
    result: Run | str = ours.recv() if ours.poll(600) else "no answer within 600 s"
    after = emulator_cpu()
    process.join(30)
    if isinstance(result, str):
        return result
    rounds = job.rounds + 1  # the first, unmeasured round went through the emulator too
    share = job.rounds / rounds
    spent = ((after[0] - before[0]) * share, (after[1] - before[1]) * share)
    return dataclasses.replace(result, emulator_seconds=spent)


def emulator_cpu(pipe: Connection) -> tuple[float, float]:
    pipe.send(("cpu", None))
    user, system = pipe.recv()
    return float(user), float(system)


def parse_latency(text: str) -> dict[str, float] | None:
    """``20/150`` = median 20 ms, p99 150 ms; ``0`` = none."""
    if text in ("0", "none"):
        return None
    median, _, p99 = text.partition("/")
    return {"median": float(median), "p99": float(p99 or median)}


def ranges(values: Sequence[float], digits: int) -> str:
    low, high = min(values), max(values)
    return (
        f"{low:,.{digits}f}"
        if f"{low:.{digits}f}" == f"{high:.{digits}f}"
        else f"{low:,.{digits}f}-{high:,.{digits}f}"
    )


def report(runs: list[Run], memory_mb: int) -> list[str]:
    share = min(memory_mb, FULL_VCPU_MB) / FULL_VCPU_MB
    lines = []
    for design in DESIGNS:
        for concurrency in sorted({run.concurrency for run in runs if run.design == design}):
            mine = [run for run in runs if run.design == design and run.concurrency == concurrency]
            rates = [run.posts_per_second for run in mine]
            cpu = [run.cpu_ms_per_post for run in mine]
            ceiling = [share * 1000 / value for value in cpu]
            full = [1000 / value for value in cpu]
            user = [run.emulator_seconds[0] / run.posts * 1000 for run in mine]
            system = [run.emulator_seconds[1] / run.posts * 1000 for run in mine]
            lines.append(
                f"  {design:<8} x{concurrency:<4} {ranges(rates, 0):>13} posts/s   "
                f"CPU {ranges(cpu, 3):>11} ms/post (median {statistics.median(cpu):.3f})   "
                f"ceiling at {memory_mb} MB {ranges(ceiling, 0):>11}, "
                f"at {FULL_VCPU_MB:,} MB {ranges(full, 0):>11} posts/s   "
                f"failed {sum(run.failed for run in mine)} of {sum(run.posts for run in mine)}   "
                f"emulator CPU {ranges(user, 3)} user + {ranges(system, 3)} system ms/post"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--message-bytes", type=int, default=2300)
    parser.add_argument("--rounds", type=int, default=10, help="posts to every connection, per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each design, interleaved")
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        help="posts in flight (repeatable; default 32, the flush's)",
    )
    parser.add_argument(
        "--latency",
        action="append",
        help="the emulator's post latency, MEDIAN/P99 ms, or 0 (repeatable; default 0 and 20/150)",
    )
    parser.add_argument("--design", action="append", choices=DESIGNS, help="repeatable; default all")
    args = parser.parse_args(argv)
    os.environ.update(ENVIRONMENT)
    from sensor_stream import catalog

    designs = args.design or [d for d in DESIGNS if d != "asyncio" or aiohttp_installed()]
    if "asyncio" not in designs:
        print("  (asyncio skipped: aiohttp is not installed; it is no dependency of the project)")
    print(
        f"posting: {args.connections} connections, {args.message_bytes:,}-byte messages, "
        f"{args.rounds} rounds a run, {args.repeats} runs a design; {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    gateway = context.Process(
        target=serve_gateway, args=(args.connections, theirs), name="gateway", daemon=True
    )
    gateway.start()
    theirs.close()
    to_browsers, theirs = context.Pipe()
    browsers = context.Process(
        target=serve_browsers, args=(ours.recv(), args.connections, theirs), name="browsers", daemon=True
    )
    browsers.start()
    theirs.close()
    url, connection_ids = ours.recv()
    message = b'{"type": "readings", "padding": "' + b"x" * max(0, args.message_bytes - 34) + b'"}'
    try:
        for latency in args.latency or ["0", "20/150"]:
            ours.send(("latency", parse_latency(latency)))
            ours.recv()
            print(f"== post latency {latency} ms (median/p99)", flush=True)
            runs: list[Run] = []
            for _ in range(args.repeats):
                for concurrency in args.concurrency or [32]:
                    for design in designs:
                        job = Job(design, url, connection_ids, message, args.rounds, concurrency)
                        result = measure(job, lambda: emulator_cpu(ours))
                        if isinstance(result, str):
                            print(f"  {design} x{concurrency} failed: {result}", flush=True)
                        else:
                            runs.append(result)
            for line in report(runs, catalog.FLUSH.memory_mb):
                print(line, flush=True)
        to_browsers.send("received")
        print(f"  (the browsers received {to_browsers.recv():,} messages in all)")
    finally:
        to_browsers.send("stop")
        ours.send(("stop", None))
        for process in (browsers, gateway):
            process.join(10)
            if process.is_alive():
                process.terminate()
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
