"""``make bench``: the live path end to end against the local stack, next to a naive
baseline, plus the in-process figures of benchmarks/run.py. Prints figures, never asserts.

    make bench                                   # every scenario below (7-8 minutes on 2 cores)
    make bench ARGS="--scenario 100x100"         # one of them (repeat --scenario for more)
    make bench ARGS="--rate 50 --browsers 20 --per-message 5 --duration 10"   # your own
    make bench ARGS="--scenario inprocess"       # only benchmarks/run.py (in-process moto)
    make bench ARGS="--scenario coldstart"       # only each handler's import time (benchmarks/coldstart.py)
    make bench ARGS="--scenario flushcpu"        # the flush's CPU per tick (benchmarks/flush_cpu.py, ~5 min)
    make bench ARGS="--design live"              # skip the naive baseline
    make bench ARGS="--scenario 1000x200 --design live --drain 60 --slow-posts 60:200:14"
                                                 # posts slow for 14 s: the flush falls behind

Scenarios (readings/s x browsers; single-reading messages unless said):
    inprocess   ingest/flush/packing cost against in-process moto (benchmarks/run.py)
    coldstart   each handler's import (python -X importtime, 5 runs): the cold start we control
    sdk         the CPU of ingest's two DynamoDB writes a message: boto3 against the store's
                lean writes and the bare requests (benchmarks/sdk_overhead.py)
    flushcpu    the flush's CPU per tick idle, 50/s x 50, 1,000/s x 500 and its time at 128-1,769 MB
                (not in the default run: ~5 minutes)
    10x10       10/s to 10 browsers
    30x50       30/s to 50 browsers (about where the one-process local stack falls behind)
    100x100     100/s to 100 browsers
    300x200     300/s to 200 browsers
    1000x200    1,000/s as 10-reading messages to 200 browsers
    flood       50/s to 50 browsers; in the second half one connection of another org
                sends 1,000 requests/s (its answers are counted: throttled or not)
``--rate/--browsers/--per-message/--units/--devices/--orgs/--duration/--drain`` override
every chosen scenario; given without ``--scenario`` they make one scenario of their own.

Each scenario runs each design on a fresh local stack (``python -m devstack``: ports 0,
no simulated devices, a table of its own; logs in test-artifacts/bench/):

- live: devices -> MQTT -> IoT rule -> ingest -> DynamoDB outbox -> the flush, ticking
  every second, posting one batch per connection and tick -> browsers. The flush's
  schedule is shaped as in AWS (invoked every period, ticking for period - 3 s, so each
  hand-over leaves a gap) but with a period of ``--flush-period`` (15 s) instead of 60 s,
  so that a short run crosses hand-overs; ``--flush-period 60`` for the AWS cadence.
- naive: the flush off; a consumer of our own (benchmarks/naive.py) posts each reading,
  as it arrives, to every connection of its org, as the API Gateway chat sample does.

Devices: ``--devices`` MQTT clients (QoS 1) of ``--orgs`` orgs publish at the target
rate on a fixed schedule from one or more load processes, over ``--units`` units; each
reading's id carries its send time, and latency is browser receive time minus send time
(one clock). Browsers: WebSocket clients in one asyncio process (``--browser-procs``),
each subscribed to its whole org. After ``--duration`` s of sending, a drain of at most
``--drain`` s (ended when every browser has everything), then the missing are counted.

Printed per scenario, designs side by side: target vs achieved send rate and how late
the schedule ran; p50/p90/p99/max latency (first delivery of each reading to each
browser; missing readings are not in it, they are counted apart); per-connection
expected/delivered/missing/duplicated/out-of-order (recordedAt going backwards within a
unit in one message)/foreign (ids never sent to that org); posts, posts/s, posts per
reading; messages per connection per second (mean, and the most any browser got in one
wall-clock second: the contract promises one per tick); whether the stack kept up
(nothing missing after the drain, and p50 latency not growing over the run), the p50 by
5 s of sending, and the p99 by second of the flush period (a hole at the hand-over shows
there); with both designs, the ratio naive/live.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence

from benchmarks.faults import SlowPosts
from benchmarks.harness import Processes, RunResult, Workload, run_workload
from benchmarks.report import Figures, details, side_by_side

SCENARIOS: dict[str, Workload] = {
    "10x10": Workload(rate=10, browsers=10),
    "30x50": Workload(rate=30, browsers=50),
    "100x100": Workload(rate=100, browsers=100),
    "300x200": Workload(rate=300, browsers=200),
    "1000x200": Workload(rate=1000, browsers=200, per_message=10),
    # 50 readings/s to 50 browsers; one connection of another org floods 1,000 requests/s
    # in the second half: the others' latency must not move.
    "flood": Workload(rate=50, browsers=50, duration=30, flood_rate=1000),
}
IN_PROCESS = "inprocess"
COLD_START = "coldstart"
FLUSH_CPU = "flushcpu"
SDK = "sdk"
SECTIONS = (IN_PROCESS, COLD_START, SDK, FLUSH_CPU)  # sections of their own, not workloads
DEFAULT_FLUSH_PERIOD_SECONDS = 15.0
WORKLOAD_FLAGS = ("rate", "browsers", "per_message", "units", "devices", "orgs", "duration", "drain")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*SECTIONS, *SCENARIOS],
        help="run this scenario (repeatable; default: all)",
    )
    parser.add_argument("--design", choices=["both", "live", "naive"], default="both")
    parser.add_argument("--rate", type=float, help="readings per second, all devices together")
    parser.add_argument("--browsers", type=int, help="WebSocket connections")
    parser.add_argument("--per-message", type=int, help="readings per MQTT message (1 = a bare reading)")
    parser.add_argument("--units", type=int, help="units over all orgs (default 100)")
    parser.add_argument("--devices", type=int, help="MQTT clients (default 20)")
    parser.add_argument("--orgs", type=int, help="orgs; devices and browsers round-robin (default 1)")
    parser.add_argument("--duration", type=float, help="seconds of sending (default 15)")
    parser.add_argument("--drain", type=float, help="at most this many seconds after sending (default 10)")
    parser.add_argument("--flush-period", type=float, default=DEFAULT_FLUSH_PERIOD_SECONDS)
    parser.add_argument("--device-procs", type=int, default=0, help="load processes (0: by rate)")
    parser.add_argument("--browser-procs", type=int, default=1)
    parser.add_argument("--naive-workers", type=int, default=32, help="threads posting in the naive consumer")
    parser.add_argument("--per-connection", action="store_true", help="print every connection's figures")
    parser.add_argument(
        "--slow-posts",
        type=SlowPosts.parse,
        metavar="MEDIAN_MS:P99_MS:SECONDS",
        help="the gateway answers each post after that latency for the first SECONDS of sending "
        "(the admin API's fault): a flush that falls behind, and hands over lanes still holding readings",
    )
    args = parser.parse_args(argv)
    if args.flush_period < 5:
        parser.error("--flush-period must be at least 5 s")
    return args


def chosen(args: argparse.Namespace) -> list[tuple[str, Workload | None]]:
    """(name, workload) to run; None for the sections (in-process, cold start, flush CPU)."""
    overrides = {flag: getattr(args, flag) for flag in WORKLOAD_FLAGS if getattr(args, flag) is not None}
    names = args.scenario or ([] if overrides else [IN_PROCESS, COLD_START, SDK, *SCENARIOS])  # not FLUSH_CPU
    if not names:
        workload = dataclasses.replace(Workload(rate=10, browsers=10), **overrides)
        return [("custom", workload)]
    return [
        (
            name,
            None if name in SECTIONS else dataclasses.replace(SCENARIOS[name], **overrides),
        )
        for name in names
    ]


def describe(name: str, workload: Workload, flush_period: float) -> str:
    shape = "single readings" if workload.per_message == 1 else f"{workload.per_message}-reading messages"
    return (
        f"== {name}: {workload.rate:g} readings/s as {shape} from {workload.devices} devices over "
        f"{workload.units} units in {workload.orgs} org(s) -> {workload.browsers} browsers; "
        f"{workload.duration:g} s + drain <= {workload.drain:g} s; flush period {flush_period:g} s"
    )


def machine() -> str:
    return (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    )


SECTION_MODULES = {
    IN_PROCESS: ("our own code's cost against in-process moto", "benchmarks.run"),
    COLD_START: ("each handler's import, the part of a cold start our code decides", "benchmarks.coldstart"),
    SDK: ("the CPU of ingest's DynamoDB writes, boto3 against the lean writes", "benchmarks.sdk_overhead"),
    FLUSH_CPU: ("the flush's CPU per tick and the memory it needs", "benchmarks.flush_cpu"),
}


def run_section(name: str) -> None:
    what, module = SECTION_MODULES[name]
    print(f"== {name}: {what} ({module.replace('.', '/')}.py)", flush=True)
    subprocess.run([sys.executable, "-m", module], check=False)  # noqa: S603 - our own modules


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    designs = ["live", "naive"] if args.design == "both" else [args.design]
    processes = Processes(args.device_procs, args.browser_procs, args.naive_workers)
    print(f"sensor-stream benchmark on {machine()}; load {os.getloadavg()[0]:.1f}", flush=True)
    for name, workload in chosen(args):
        if workload is None:
            run_section(name)
            continue
        print(describe(name, workload, args.flush_period), flush=True)
        results: list[RunResult] = []
        for design in designs:
            started = time.monotonic()
            try:
                results.append(
                    run_workload(
                        name,
                        design,
                        workload,
                        processes=processes,
                        flush_period=args.flush_period,
                        faults=(lambda _: args.slow_posts) if args.slow_posts else None,
                        log=lambda line: print(line, flush=True),
                    )
                )
            except Exception as error:  # one broken run must not hide the others' figures
                print(f"  [{design}] failed: {error}", flush=True)
                continue
            print(f"  [{design}] done in {time.monotonic() - started:.0f} s", flush=True)
        if not results:
            continue
        figures = [Figures(result) for result in results]
        for line in side_by_side(figures):
            print(line)
        for each in figures:
            for line in each.result.faults:
                print(f"  [{each.result.design}] in-stack fault: {line}")
            for line in details(each, per_connection=args.per_connection):
                print(line)
        print(flush=True)


if __name__ == "__main__":
    main()
