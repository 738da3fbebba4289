"""The benchmark's CPU accounting of the local stack's processes (benchmarks/cpu.py),
against real processes on this machine (Linux /proc)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.cpu import (
    SUPERVISOR,
    CpuSnapshot,
    CpuUsage,
    ProcessCpu,
    process_tree,
    read_process,
    stack_and_driver,
    usage_between,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# A child that spends half a second of its own CPU, names itself, then waits to be killed.
BUSY_CHILD = """
import ctypes, sys, time
ctypes.CDLL(None).prctl(15, b"busy-child", 0, 0, 0)
started = time.process_time()
while time.process_time() - started < 0.5:
    pass
print("spent", flush=True)
time.sleep(60)
"""


def test_a_process_reads_its_own_name_parent_and_cpu():
    me = read_process(os.getpid())

    assert me is not None
    assert me.parent == os.getppid()
    assert me.seconds == pytest.approx(sum(os.times()[:2]), abs=0.05)


def test_a_process_that_is_gone_reads_as_none():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()

    assert read_process(child.pid) is None


def test_the_cpu_a_named_child_spends_is_counted_under_its_name():
    before = CpuSnapshot.take(os.getpid(), time.monotonic())
    child = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], stdout=subprocess.PIPE, text=True)  # noqa: S603 - this interpreter, a script of the test's own
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "spent"
        tree = process_tree(os.getpid())
        usage = usage_between(before, CpuSnapshot.take(os.getpid(), time.monotonic()), os.getpid())
    finally:
        child.kill()
        child.wait()

    assert child.pid in {p.pid for p in tree}
    # Its own half second (plus the interpreter's start), less up to a 10-ms tick of rounding
    # in each of user and system time.
    assert usage.by_name["busy-child"] >= 0.45
    assert SUPERVISOR in usage.by_name  # the root, whatever it is called


def test_usage_is_the_difference_per_name_and_a_reused_pid_counts_from_zero():
    before = CpuSnapshot(
        10.0,
        {
            1: ProcessCpu(1, 0, "python", 5.0),
            2: ProcessCpu(2, 1, "moto", 2.0),
            3: ProcessCpu(3, 1, "old", 9.0),
        },
    )
    after = CpuSnapshot(
        30.0,
        {
            1: ProcessCpu(1, 0, "python", 6.5),
            2: ProcessCpu(2, 1, "moto", 6.0),
            3: ProcessCpu(3, 1, "fn:ingest", 1.5),  # pid 3 ended and was reused
            4: ProcessCpu(4, 1, "fn:ingest", 2.0),  # started in between
        },
    )

    usage = usage_between(before, after, root=1)

    assert usage.seconds == 20.0
    assert usage.by_name == {SUPERVISOR: 1.5, "moto": 4.0, "fn:ingest": 3.5}
    assert usage.total == 9.0


def test_the_lines_give_each_process_its_share_per_message_and_of_the_cores():
    usage = CpuUsage(seconds=10.0, by_name={"moto": 4.0, "fn:ingest": 6.0, "idle": 0.0})

    lines = usage.lines(messages=2000, cores=2)

    assert lines[0] == "    stack CPU over 10 s of sending (2,000 messages):"
    assert lines[1].split() == ["fn:ingest", "6.0", "s", "3.00", "ms/message", "30%", "of", "2", "cores"]
    assert lines[2].split() == ["moto", "4.0", "s", "2.00", "ms/message", "20%", "of", "2", "cores"]
    assert lines[3].split() == ["all", "10.0", "s", "5.00", "ms/message", "50%", "of", "2", "cores"]
    assert len(lines) == 4  # a process that spent nothing is left out


def test_the_stack_and_the_load_driver_are_told_apart():
    """The benchmark's tree: itself (1), a browser process (2), the stack (3) and its moto (4)."""

    def snapshot(at: float, seconds: dict[int, float]) -> CpuSnapshot:
        tree = {1: (0, "python"), 2: (1, "python"), 3: (1, "python"), 4: (3, "moto")}
        return CpuSnapshot(
            at, {pid: ProcessCpu(pid, tree[pid][0], tree[pid][1], spent) for pid, spent in seconds.items()}
        )

    before = snapshot(0.0, {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0})
    after = snapshot(10.0, {1: 1.5, 2: 4.0, 3: 2.0, 4: 6.0})

    usage = stack_and_driver(before, after, stack=3)

    assert usage.by_name == {SUPERVISOR: 1.0, "moto": 5.0}
    assert usage.driver_seconds == 3.5
    assert usage.lines(messages=100, cores=2)[-1].endswith("not the stack: 3.5 s, 18% of 2 cores)")
