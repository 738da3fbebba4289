"""``make soak``: devices and browsers against the local stack for a while, with faults,
then per connection what was expected, received, missing, duplicated and out of order.
Exits 1 when any browser lost a reading, 0 otherwise.

    make soak                                    # 60 s
    make soak ARGS="--duration 300 --rate 20 --browsers 40"

A loss is a reading of the browser's org, sent during the run, that the browser never
received (live or replayed after a resume) by the end of the drain.

Faults from outside the stack (the same load and accounting code as ``make bench``):

- 5% of browsers (at least one) vanish twice, a quarter and 60% into the run: the TCP
  connection is cut without a close frame; 5 s later they reconnect and resume as
  the browser client does (``hello`` with ``resume.since`` = newest reading seen - 5 s);
  replayed readings come in batches marked ``replay``. Duplicates are counted as they
  arrive and after the client's de-duplication by id (web/sensor-stream-client.js: the
  newest 5,000 ids).
- one slow consumer stops reading its socket (small receive buffer) from 30% of the run
  for 40% of it; if the stack drops it, it resumes like the others.
- devices publish every 20th message twice (duplicate delivery) and record every 25th
  message 30 s in the past (late delivery), and one more 0.5 s after each drop, to the
  first dropped browser's org while it is away.
- the stack runs with ``LOCAL_WS_DISCONNECT_ON_DROP=false`` (as AWS may, it sends no
  ``$disconnect`` for vanished browsers: clean-up comes from the 410) and a flush period
  of ``--flush-period`` seconds, so hand-overs happen during the run.

Faults inside the stack, through its fault-injection admin API (``LOCAL_ADMIN_PORT``,
benchmarks/faults.py), where the stack has one: posts answered only after ~0.7 s
across the first hand-over (lanes still waiting then are handed to the successor),
DynamoDB throttling (20% for 3 s) and
5xx (10% for 2 s) through botocore hooks in the functions, 410 Gone for 10% of posts for
3 s, one browser's socket slowed to 2,000 bytes/s for 5 s, and the flush killed
(likely mid-tick) once, 70% into the run. A stack without the admin API gets none of
them, and the report says so.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.faults import stack_faults
from benchmarks.harness import Processes, Workload, org_ids, run_workload
from benchmarks.live import machine
from benchmarks.report import Figures, details, side_by_side

DROP_FRACTION = 0.05
DROPS_AT = (0.25, 0.6)
STALL_AT, STALL_FOR = 0.3, 0.4
# Dropped browsers stay away this long; a late message sent this soon after the drop is
# posted by the flush (1-3 s after it arrives) while they are away.
AWAY_SECONDS = 5.0
LATE_AFTER_DROP_SECONDS = 0.5
# The drain outlasts a flush period by this much (at least).
DRAIN_PAST_FLUSH_PERIOD_SECONDS = 10.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending (default 60)")
    parser.add_argument(
        "--drain", type=float, default=30.0, help="at most this long after (default 30; >= flush period + 10)"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="readings/s in all (default 10)")
    parser.add_argument("--browsers", type=int, default=20)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--orgs", type=int, default=2)
    parser.add_argument("--per-message", type=int, default=1)
    parser.add_argument("--flush-period", type=float, default=20.0)
    parser.add_argument("--duplicate-every", type=int, default=20, help="publish every n-th message twice")
    parser.add_argument("--late-every", type=int, default=25, help="record every n-th message late")
    parser.add_argument("--late-seconds", type=float, default=30.0)
    return parser.parse_args(argv)


def behaviour_of(browsers: int, duration: float) -> tuple[Callable[[int], dict[str, Any]], int]:
    """Which browsers drop (the first 5%) and which one stalls (the next one)."""
    droppers = max(1, math.ceil(browsers * DROP_FRACTION))

    def behaviour(index: int) -> dict[str, Any]:
        if index < droppers:
            return {"drops": tuple(duration * at for at in DROPS_AT), "away_seconds": AWAY_SECONDS}
        if index == droppers:
            return {"stall": (duration * STALL_AT, duration * STALL_FOR)}
        return {}

    return behaviour, droppers


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # After the flush is killed, nothing is delivered until the schedule's next invocation.
    args.drain = max(args.drain, args.flush_period + DRAIN_PAST_FLUSH_PERIOD_SECONDS)
    workload = Workload(
        rate=args.rate,
        browsers=args.browsers,
        per_message=args.per_message,
        units=args.units,
        devices=args.devices,
        orgs=args.orgs,
        duration=args.duration,
        drain=args.drain,
    )
    behaviour, droppers = behaviour_of(args.browsers, args.duration)
    print(f"sensor-stream soak on {machine()}", flush=True)
    print(
        f"== {args.rate:g} readings/s from {args.devices} devices in {args.orgs} org(s) -> {args.browsers} "
        f"browsers for {args.duration:g} s (+ drain <= {args.drain:g} s); {droppers} browser(s) drop at "
        f"{', '.join(f'{args.duration * at:.0f} s' for at in DROPS_AT)}; b{droppers} stalls "
        f"{args.duration * STALL_FOR:.0f} s from {args.duration * STALL_AT:.0f} s; every "
        f"{args.duplicate_every}th message twice, every {args.late_every}th {args.late_seconds:g} s late",
        flush=True,
    )
    result = run_workload(
        "soak",
        "live",
        workload,
        processes=Processes(),
        flush_period=args.flush_period,
        load_options={
            "duplicate_every": args.duplicate_every,
            "late_every": args.late_every,
            "late_seconds": args.late_seconds,
            # One late message to the dropped browsers' org while they are away.
            "late_at": tuple(args.duration * at + LATE_AFTER_DROP_SECONDS for at in DROPS_AT),
            "late_at_org": org_ids(args.orgs)[0],
        },
        behaviour=behaviour,
        faults=lambda stack: stack_faults(
            stack, flush_period=args.flush_period, org_id=org_ids(args.orgs)[0]
        ),
        stack_env={"LOCAL_WS_DISCONNECT_ON_DROP": "false"},
        log=lambda line: print(line, flush=True),
    )
    figures = Figures(result)
    for line in side_by_side([figures]):
        print(line)
    load = result.load
    print(
        f"  devices: {load.messages:,} messages, {load.duplicates_published:,} published twice, "
        f"{load.late_readings:,} readings sent late"
    )
    print("  in-stack faults (admin API):")
    for line in result.faults:
        print(f"    {line}")
    # Latency by second of the flush period would show the stalled browser, not the flush.
    for line in details(figures, per_connection=True, by_period=False):
        print(line)
    lost = [s for s in figures.summaries if s.missing]
    if lost:
        print(
            f"LOSS: {len(lost)} of {len(figures.summaries)} browsers missed "
            f"{sum(s.missing for s in lost):,} readings in all"
        )
        sys.exit(1)
    print("no loss")


if __name__ == "__main__":
    main()
