"""One run of devices and browsers against a fresh local stack, shared by the live
benchmark (benchmarks/live.py) and the soak (benchmarks/soak.py).

Order of a run: start the stack; (naive design) start the naive consumer; connect every
browser and say hello; connect the devices; all start sending at one moment ``start``
and send for ``duration`` seconds; then a drain of at most ``drain`` seconds, ended
early once every browser has every reading of its org; then everything stops and what is
still missing is counted. Each part is its own process (multiprocessing, spawn): the
load generator, the browsers and the naive consumer must not slow each other down.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from typing import Any

from benchmarks.browsers import BrowserPlan, BrowserResult, BrowserSpec, run_browsers
from benchmarks.cpu import CpuSnapshot, CpuUsage, stack_and_driver
from benchmarks.devices import DeviceSpec, LoadPlan, LoadReport, run_devices
from benchmarks.faults import NoStackFaults, StackFaults
from benchmarks.flood import FLOOD_ORG, FloodPlan, FloodReport, run_flooder
from benchmarks.naive import NaivePlan, NaiveReport, run_naive
from benchmarks.stack import RunningStack, flush_environment, local_stack

START_DELAY_SECONDS = 1.0
PROCESS_TIMEOUT_SECONDS = 180.0
PROGRESS_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class Workload:
    rate: float  # readings per second, all devices together
    browsers: int
    per_message: int = 1
    units: int = 100
    devices: int = 20
    orgs: int = 1
    duration: float = 15.0
    drain: float = 10.0
    # Requests/s one connection of another org sends in the second half of the run.
    flood_rate: float = 0.0

    @property
    def messages_per_second(self) -> float:
        return self.rate / self.per_message


@dataclass(frozen=True)
class Processes:
    device_procs: int = 0  # 0: one per 250 messages/s, at most 4
    browser_procs: int = 1
    naive_workers: int = 32

    def device_count(self, workload: Workload) -> int:
        if self.device_procs > 0:
            return self.device_procs
        return max(1, min(4, math.ceil(workload.messages_per_second / 250)))


@dataclass
class RunResult:
    design: str  # "live" (the flush) or "naive"
    workload: Workload
    start: float
    load: LoadReport
    browsers: BrowserResult
    connected: int
    # Flush schedule: its period and when its first invocation started (about the ready line).
    flush_period: float | None
    flush_origin: float
    drain_used: float
    naive: NaiveReport | None = None
    flood: FloodReport | None = None
    notes: list[str] = field(default_factory=list)
    # What the in-stack faults did (the soak), one line each.
    faults: list[str] = field(default_factory=list)
    # The stack's CPU by process over the sending window (Linux only).
    cpu: CpuUsage | None = None

    @property
    def sent(self) -> dict[int, int]:
        return self.load.sent


def org_ids(count: int) -> list[str]:
    return [f"bench-org-{i}" for i in range(count)]


def device_specs(workload: Workload) -> list[DeviceSpec]:
    """Devices round-robin over the orgs; each org's units split over its devices (a
    device reports its own units; with fewer units than devices they share)."""
    orgs = org_ids(workload.orgs)
    specs = []
    for index in range(workload.devices):
        org_number = index % workload.orgs
        devices_in_org = len(range(org_number, workload.devices, workload.orgs))
        units_in_org = len(range(org_number, workload.units, workload.orgs)) or 1
        local = index // workload.orgs
        units = [f"unit-{u}" for u in range(units_in_org) if u % devices_in_org == local % devices_in_org]
        if not units:
            units = [f"unit-{local % units_in_org}"]
        specs.append(DeviceSpec(index, f"bench-dev-{index}", orgs[org_number], tuple(units)))
    return specs


def browser_specs(
    workload: Workload,
    devices: list[DeviceSpec],
    token: Callable[[str], str],
    behaviour: Callable[[int], dict[str, Any]] | None = None,
) -> list[BrowserSpec]:
    orgs = org_ids(workload.orgs)
    specs = []
    for index in range(workload.browsers):
        org = orgs[index % workload.orgs]
        expected = tuple(d.index for d in devices if d.org_id == org)
        specs.append(
            BrowserSpec(f"b{index}", org, token(org), expected, **(behaviour(index) if behaviour else {}))
        )
    return specs


class _Child:
    """A process and our end of its pipe."""

    def __init__(self, target: Callable[..., None], plan: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.control, theirs = context.Pipe()
        self.process: SpawnProcess = context.Process(target=target, args=(plan, theirs), daemon=True)
        self.process.start()
        theirs.close()

    def expect(self, kind: str, timeout: float = PROCESS_TIMEOUT_SECONDS) -> tuple[Any, ...]:
        if not self.control.poll(timeout):
            raise RuntimeError(f"no '{kind}' from {self.process.name} within {timeout:.0f} s")
        try:
            message = self.control.recv()
        except EOFError:
            raise RuntimeError(
                f"{self.process.name} ended (exit code {self.process.exitcode}) before '{kind}'"
            ) from None
        if message[0] != kind:
            raise RuntimeError(f"expected '{kind}' from {self.process.name}, got {message[0]!r}")
        return tuple(message[1:])

    def send(self, *message: Any) -> None:
        self.control.send(message)

    def end(self) -> None:
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    return [chunk for chunk in (items[i::parts] for i in range(parts)) if chunk]


def _merge_browser_results(results: list[BrowserResult]) -> BrowserResult:
    merged = results[0]
    for other in results[1:]:
        merged.summaries.extend(other.summaries)
        merged.latency.merge(other.latency)
        for second, histogram in other.latency_by_sent_second.items():
            merged.latency_by_sent_second.setdefault(second, type(histogram)()).merge(histogram)
        lasts = [t for t in (merged.last_message_at, other.last_message_at) if t is not None]
        merged.last_message_at = max(lasts, default=None)
        merged.connect_failures += other.connect_failures
        merged.server_closes.update(other.server_closes)
    return merged


def run_workload(
    name: str,
    design: str,
    workload: Workload,
    *,
    processes: Processes,
    flush_period: float,
    load_options: dict[str, Any] | None = None,
    behaviour: Callable[[int], dict[str, Any]] | None = None,
    faults: Callable[[RunningStack], StackFaults] | None = None,
    stack_env: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """One design ("live": the stack's flush; "naive": flush off, the naive consumer
    posts) under one workload, on a stack of its own."""
    from devstack.token import mint_token

    live = design == "live"
    env = {**flush_environment(flush_period if live else None), **(stack_env or {})}
    began = time.monotonic()

    def timed(line: str) -> None:
        log(f"  [{design} {time.monotonic() - began:5.1f} s] {line}")

    with local_stack(f"{name}-{design}", env, timed) as stack:
        timed(f"stack ready (log: {stack.log_path.relative_to(stack.log_path.parents[2])})")
        children: list[_Child] = []
        try:
            return _run(
                name,
                design,
                workload,
                stack,
                children,
                processes=processes,
                flush_period=flush_period if live else None,
                load_options=load_options or {},
                token=lambda org: mint_token(org, secret=stack.jwt_secret, ttl_seconds=3 * 3600),
                behaviour=behaviour,
                faults=faults,
                log=timed,
            )
        finally:
            for child in children:
                child.end()
            timed("stopping the stack")


def _run(
    name: str,
    design: str,
    workload: Workload,
    stack: RunningStack,
    children: list[_Child],
    *,
    processes: Processes,
    flush_period: float | None,
    load_options: dict[str, Any],
    token: Callable[[str], str],
    behaviour: Callable[[int], dict[str, Any]] | None,
    faults: Callable[[RunningStack], StackFaults] | None,
    log: Callable[[str], None],
) -> RunResult:
    devices = device_specs(workload)
    notes: list[str] = []
    naive: _Child | None = None
    if design == "naive":
        naive = _Child(
            run_naive,
            NaivePlan(
                stack.mqtt_host,
                stack.mqtt_port,
                stack.aws_url,
                stack.table_name,
                stack.management_url(),
                processes.naive_workers,
            ),
        )
        children.append(naive)
        naive.expect("ready")

    specs = browser_specs(workload, devices, token, behaviour)
    browser_children = [
        _Child(run_browsers, BrowserPlan(stack.websocket_url, tuple(part)))
        for part in _split(specs, processes.browser_procs)
    ]
    children.extend(browser_children)
    connected = 0
    for child in browser_children:
        ready, failures = child.expect("ready")
        connected += ready
        if failures:
            notes.append(f"{failures} browser connection attempts failed")

    device_procs = processes.device_count(workload)
    rate_each = workload.messages_per_second / device_procs
    load_children = [
        _Child(
            run_devices,
            LoadPlan(
                stack.mqtt_host,
                stack.mqtt_port,
                tuple(part),
                rate_each,
                workload.per_message,
                workload.duration,
                **load_options,
            ),
        )
        for part in _split(devices, device_procs)
    ]
    children.extend(load_children)
    for child in load_children:
        child.expect("ready")

    flooder: _Child | None = None
    if workload.flood_rate:
        flood_plan = FloodPlan(stack.websocket_url, token(FLOOD_ORG), workload.flood_rate, workload.duration)
        flooder = _Child(run_flooder, flood_plan)
        children.append(flooder)
        flooder.expect("ready")

    start = time.time() + START_DELAY_SECONDS
    for child in [*browser_children, *load_children, *([flooder] if flooder else [])]:
        child.send("start", start)
    log(
        f"{connected}/{workload.browsers} browsers, {workload.devices} devices in "
        f"{device_procs} process(es): sending {workload.duration:g} s"
    )
    injected = faults(stack) if faults else NoStackFaults()
    injected.during_run(stack, start, workload.duration)
    time.sleep(max(0.0, start - time.time()))
    cpu_before = CpuSnapshot.take(os.getpid(), time.monotonic())
    load = LoadReport()
    for child in load_children:
        (report,) = child.expect("done", workload.duration + START_DELAY_SECONDS + 60)
        load.merge(report)
    cpu = stack_and_driver(cpu_before, CpuSnapshot.take(os.getpid(), time.monotonic()), stack.process.pid)

    log(f"sent {load.readings:,} readings; draining")
    drain_started = time.time()
    while time.time() - drain_started < workload.drain:
        complete = 0
        for child in browser_children:
            child.send("progress", load.sent)
            (done,) = child.expect("progress")
            complete += done
        if complete == len(specs):
            break
        time.sleep(PROGRESS_INTERVAL_SECONDS)
    drain_used = time.time() - drain_started

    flood_report: FloodReport | None = None
    if flooder is not None:
        (flood_report,) = flooder.expect("done")
    naive_report: NaiveReport | None = None
    if naive is not None:
        naive.send("finish")
        (naive_report,) = naive.expect("done")
    results = []
    for child in browser_children:
        child.send("finish", load.sent)
        (result,) = child.expect("result")
        results.append(result)
    return RunResult(
        design=design,
        workload=workload,
        start=start,
        load=load,
        browsers=_merge_browser_results(results),
        connected=connected,
        flush_period=flush_period,
        flush_origin=stack.ready_at,
        drain_used=drain_used,
        naive=naive_report,
        flood=flood_report,
        notes=notes,
        faults=injected.report() if faults else [],
        cpu=cpu,
    )
