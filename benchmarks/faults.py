"""Faults inside the stack, for the soak: the seam where the local stack's admin
endpoint plugs in.

The soak injects what it can from outside the stack itself (browsers that vanish and
resume, a slow consumer, duplicate and late device messages: benchmarks/browsers.py and
benchmarks/devices.py). Faults inside the stack go through the real seams of the code
under test, never by editing it, and need the stack's help:

- DynamoDB throttling and 5xx for a while: botocore event hooks in the stack process
  (``before-call.dynamodb.*`` returning a ProvisionedThroughputExceededException or a 500);
- a storm of 410 GoneException from the Management API (the emulator answering POSTs to
  live connections with 410 for a while);
- slow sockets: the emulator delaying its sends to some connections;
- the flush killed mid-tick once (its invocation ended between reading the outbox and
  recording its progress, as a Lambda timeout or crash would).

TODO(devstack admin endpoint): implement :class:`StackFaults` over the admin API that
the devstack is getting, e.g. ``POST {admin}/faults`` with
``{"kind": "dynamodb-throttle" | "dynamodb-5xx" | "gone-storm" | "slow-socket" |
"kill-flush", "seconds"?, "fraction"?, "connectionIds"?}`` answering what was injected,
with ``admin`` announced in the ready line; then pass it to ``run_workload`` from
benchmarks/soak.py instead of :data:`NO_FAULTS`.
"""

from __future__ import annotations

from typing import Protocol

from benchmarks.stack import RunningStack

# What the soak asks for, seconds into a run of ``duration`` seconds (as fractions).
WANTED = (
    ("dynamodb-throttle", 0.2, "DynamoDB throttling for 3 s"),
    ("dynamodb-5xx", 0.35, "DynamoDB 5xx for 2 s"),
    ("gone-storm", 0.5, "410 GoneException for 10% of posts for 3 s"),
    ("slow-socket", 0.6, "sends to one connection delayed by 2 s for 5 s"),
    ("kill-flush", 0.7, "the flush invocation killed mid-tick once"),
)


class StackFaults(Protocol):
    def during_run(self, stack: RunningStack, start: float, duration: float) -> None:
        """Schedule the faults for a run that sends from ``start`` for ``duration``
        seconds; must not block (a background thread does the work)."""

    def report(self) -> list[str]:
        """One line per fault: what was injected and when, or why not."""


class NoStackFaults:
    """Injects nothing and says so."""

    def during_run(self, stack: RunningStack, start: float, duration: float) -> None:
        return None

    def report(self) -> list[str]:
        return [f"not injected (needs the devstack admin endpoint): {text}" for _, _, text in WANTED]


NO_FAULTS: StackFaults = NoStackFaults()
