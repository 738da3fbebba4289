"""CPU time of the local stack's processes over a benchmark's sending window, by process
name (``fn:ingest``, ``moto``, ``mosquitto``, the supervisor ...), read from Linux's
``/proc/<pid>/stat`` (user + system time, in clock ticks: 10 ms resolution). It is what
bounds the local stack's throughput on a small machine (devstack/README.md, "What
bounds throughput"). Empty where /proc is not available.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class ProcessCpu:
    pid: int
    parent: int
    name: str
    seconds: float


def read_process(pid: int) -> ProcessCpu | None:
    """One process's name, parent and CPU seconds so far; None once it has gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The name is in parentheses and may hold spaces or parentheses itself.
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    parent, user, system = int(fields[1]), int(fields[11]), int(fields[12])
    return ProcessCpu(pid, parent, name, (user + system) / TICKS_PER_SECOND)


def descendants(processes: Iterable[ProcessCpu], root: int) -> list[ProcessCpu]:
    """``root`` and every process among ``processes`` descended from it."""
    children: dict[int, list[ProcessCpu]] = {}
    tree: list[ProcessCpu] = []
    for process in processes:
        children.setdefault(process.parent, []).append(process)
        if process.pid == root:
            tree.append(process)
    for process in tree:  # grows while it is walked
        tree.extend(children.get(process.pid, []))
    return tree


def process_tree(root: int) -> list[ProcessCpu]:
    """``root`` and every process descended from it, as they are now."""
    return descendants((p for p in (read_process(int(d.name)) for d in PROC.glob("[0-9]*")) if p), root)


@dataclass
class CpuSnapshot:
    """CPU seconds per process of a tree at one moment, and per name."""

    at_monotonic: float
    by_pid: dict[int, ProcessCpu] = field(default_factory=dict)

    @classmethod
    def take(cls, root: int, at_monotonic: float) -> CpuSnapshot:
        return cls(at_monotonic, {p.pid: p for p in process_tree(root)})

    def subtree(self, root: int) -> CpuSnapshot:
        """Only ``root`` and its descendants."""
        return CpuSnapshot(self.at_monotonic, {p.pid: p for p in descendants(self.by_pid.values(), root)})

    def without(self, pids: set[int]) -> CpuSnapshot:
        return CpuSnapshot(self.at_monotonic, {pid: p for pid, p in self.by_pid.items() if pid not in pids})


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds each kind of process spent between two snapshots."""

    seconds: float  # wall time between the snapshots
    by_name: dict[str, float]
    # CPU of the benchmark's own processes (devices, browsers) on the same machine.
    driver_seconds: float | None = None

    @property
    def total(self) -> float:
        return sum(self.by_name.values())

    def lines(self, messages: int, cores: int | None = None) -> list[str]:
        """Per process name: CPU seconds, ms per message and share of the machine."""
        if not self.by_name or self.seconds <= 0:
            return []
        cores = cores or os.cpu_count() or 1

        def row(name: str, spent: float) -> str:
            per_message = f"{spent * 1000 / messages:6.2f} ms/message  " if messages else ""
            share = spent / self.seconds / cores
            return f"      {name:<16} {spent:7.1f} s  {per_message}{share:5.0%} of {cores} cores"

        ranked = sorted(self.by_name.items(), key=lambda item: -item[1])
        rows = [row(name, spent) for name, spent in ranked if spent > 0]
        rows.append(row("all", self.total))
        if self.driver_seconds is not None:
            share = self.driver_seconds / self.seconds / cores
            driver = f"{self.driver_seconds:.1f} s, {share:.0%} of {cores} cores"
            rows.append(f"      (and the load driver, not the stack: {driver})")
        return [f"    stack CPU over {self.seconds:.0f} s of sending ({messages:,} messages):", *rows]


def stack_and_driver(before: CpuSnapshot, after: CpuSnapshot, stack: int) -> CpuUsage:
    """Snapshots of the benchmark's own tree, which holds the stack (``stack``) and the load
    driver's processes: the stack's usage by name, with the driver's total beside it."""
    stack_before, stack_after = before.subtree(stack), after.subtree(stack)
    stack_usage = usage_between(stack_before, stack_after, stack)
    stack_pids = set(stack_before.by_pid) | set(stack_after.by_pid)
    driver = usage_between(before.without(stack_pids), after.without(stack_pids), root=-1)
    return replace(stack_usage, driver_seconds=driver.total)


def usage_between(before: CpuSnapshot, after: CpuSnapshot, root: int) -> CpuUsage:
    """What each process name spent between the snapshots; the root is the supervisor.
    A process that started in between counts from zero; one that ended in between is lost
    (its time goes to its parent only when reaped): the stack's processes live as long as
    it does."""
    spent: dict[str, float] = {}
    for pid, process in after.by_pid.items():
        start = before.by_pid.get(pid)
        earlier = start.seconds if start and start.name == process.name else 0.0
        name = SUPERVISOR if pid == root else process.name
        spent[name] = spent.get(name, 0.0) + max(0.0, process.seconds - earlier)
    return CpuUsage(after.at_monotonic - before.at_monotonic, spent)
