"""make bench's in-process part (benchmarks/run.py: our own code against in-process moto)
runs on the code as it is: each part prints its line, and its flush tick posts the
readings to every connection."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 4


def test_the_in_process_benchmark_runs_every_part_and_its_tick_reaches_each_connection():
    arguments = ["--readings", "20", "--per-message", "10", "--connections", str(CONNECTIONS)]
    result = subprocess.run(  # noqa: S603 - this interpreter, the project's own module
        [sys.executable, "-m", "benchmarks.run", *arguments],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'functions'}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    assert set(lines) == {"ingest", "flush", "packing"}, result.stdout
    tick = re.search(r"(\d+) readings to (\d+) connections -> (\d+) posts", lines["flush"])
    assert tick, lines["flush"]
    readings, connections, posts = map(int, tick.groups())
    assert (readings, connections) == (500, CONNECTIONS)
    # Half the connections take the whole org (500 readings: several 32-KB messages each),
    # half two units of the hundred: at least one post each.
    assert posts > CONNECTIONS
