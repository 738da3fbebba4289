"""Cold start: what importing each Lambda handler costs (prints, never asserts).

Each handler is imported in a fresh interpreter under ``python -X importtime -c "import
<name>.handler"``; the figure is the sum of the top-level entries (everything that one
import pulls in, interpreter start-up modules included), over several runs. Tracing is
off, as outside Lambda (no ``LAMBDA_TASK_ROOT``); ``--traced`` sets ``LAMBDA_TASK_ROOT``
as Lambda does, so a handler that traces also loads the X-Ray SDK.

    .venv/bin/python -m benchmarks.coldstart                 # 5 runs of each handler
    .venv/bin/python -m benchmarks.coldstart --runs 9 --top 15
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sensor_stream import catalog

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ImportEntry:
    depth: int
    self_us: int
    cumulative_us: int
    name: str


def parse_importtime(stderr: str) -> list[ImportEntry]:
    """The lines of ``-X importtime`` (``import time: self | cumulative | name``, nested
    names indented by two spaces a level)."""
    entries = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        entries.append(ImportEntry(depth, int(self_us), int(cumulative_us), name.strip()))
    return entries


def total_seconds(entries: Sequence[ImportEntry]) -> float:
    return sum(entry.cumulative_us for entry in entries if entry.depth == 0) / 1e6


@dataclass(frozen=True)
class ImportRun:
    entries: list[ImportEntry]
    cpu_seconds: float  # the interpreter's user + system CPU time, start-up included

    @property
    def seconds(self) -> float:
        return total_seconds(self.entries)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_handler(module: str, *, traced: bool = False, root: Path = ROOT) -> ImportRun:
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'functions'}{os.pathsep}{root}",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    env.pop("LAMBDA_TASK_ROOT", None)
    if traced:
        env["LAMBDA_TASK_ROOT"] = str(root / "functions")
    cpu_before = _children_cpu()
    result = subprocess.run(  # noqa: S603 - this interpreter, a module name of ours
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return ImportRun(parse_importtime(result.stderr), _children_cpu() - cpu_before)


def heaviest(entries: Sequence[ImportEntry], count: int) -> list[ImportEntry]:
    """Third-party and project packages by cumulative time, each counted where it is
    first imported (a nested entry's time is inside its parent's)."""
    roots: dict[str, ImportEntry] = {}
    for entry in entries:
        top = entry.name.split(".")[0]
        if entry.depth <= 3 and top not in {"encodings", "site", "_frozen_importlib_external"}:
            best = roots.get(entry.name)
            if best is None or best.cumulative_us < entry.cumulative_us:
                roots[entry.name] = entry
    return sorted(roots.values(), key=lambda e: e.cumulative_us, reverse=True)[:count]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.coldstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--traced", action="store_true", help="as in Lambda with tracing on")
    parser.add_argument("--top", type=int, default=0, help="list the N heaviest imports of each handler")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout to import (e.g. main's)")
    args = parser.parse_args(argv)
    print(coldstart_header(args.runs, traced=args.traced))
    for line in coldstart_lines(args.runs, traced=args.traced, top=args.top, root=args.source):
        print(line, flush=True)


def coldstart_header(runs: int, *, traced: bool) -> str:
    mode = "tracing on (LAMBDA_TASK_ROOT set, as in Lambda)" if traced else "tracing off"
    return (
        f"cold start: python -X importtime -c 'import <fn>.handler' (sum of top-level entries, wall) "
        f"and the interpreter's CPU time, {runs} runs, {mode}; load {os.getloadavg()[0]:.1f}"
    )


def coldstart_lines(runs: int, *, traced: bool = False, top: int = 0, root: Path = ROOT) -> list[str]:
    lines = []
    for spec in catalog.FUNCTIONS:
        module = f"{spec.name}.handler"
        results = [import_handler(module, traced=traced, root=root) for _ in range(runs)]
        seconds = sorted(run.seconds for run in results)
        cpu = sorted(run.cpu_seconds for run in results)
        lines.append(
            f"  {module:<16} importtime min {seconds[0]:.3f} s, median {statistics.median(seconds):.3f} s, "
            f"max {seconds[-1]:.3f} s; CPU min {cpu[0]:.3f} s, median {statistics.median(cpu):.3f} s"
        )
        if top:
            fastest = min(results, key=lambda run: run.seconds)
            for entry in heaviest(fastest.entries, top):
                lines.append(f"      {entry.cumulative_us / 1000:7.1f} ms  {'  ' * entry.depth}{entry.name}")
    return lines


if __name__ == "__main__":
    main()
