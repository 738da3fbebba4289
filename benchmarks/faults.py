"""Faults inside the stack, for the soak, through the local stack's fault-injection admin
API (``LOCAL_ADMIN_PORT``) where the stack has one.

The soak injects what it can from outside the stack itself (browsers that vanish and
resume, a slow consumer, duplicate and late device messages: benchmarks/browsers.py and
benchmarks/devices.py). Faults inside the stack go through the real seams of the code
under test, never by editing it, and need the stack's admin API:

    PUT  /faults/dynamodb               {"throttleRate", "serverErrorRate"}  (botocore hooks in the functions)
    PUT  /faults/gateway                {"goneRate", "goneConnectionIds"}    (410 from the Management API)
    PUT  /faults/connections/{id}       {"bytesPerSecond"}                   (a slow socket)
    POST /functions/{name}/kill         (SIGKILL the function's running environments)

:func:`stack_faults` asks the admin API (``GET /faults``); a stack without one gets
:class:`NoStackFaults`, which injects nothing and says so in the report.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

import boto3

from benchmarks.stack import RunningStack

REGION = "eu-west-1"
HTTP_TIMEOUT_SECONDS = 10.0
# Killed this long after a tick should have started (ticks run on a 1-s grid from the
# invocation's start, which is about the ready line; the stack's own invocation start is
# not visible from outside, so "mid-tick" is likely rather than certain).
KILL_INTO_TICK_SECONDS = 0.1
# Slow posts around the first hand-over (each post's answer held back, lognormal; p99
# under FLUSH_POST_TIMEOUT_SECONDS).
SLOW_POST_MEDIAN_MS, SLOW_POST_P99_MS = 700, 1200
SLOW_POSTS_BEFORE_HANDOVER_SECONDS, SLOW_POSTS_AFTER_HANDOVER_SECONDS = 3.0, 4.0


# An admin API call at a time: (when, what, the call).
Step = tuple[float, str, Callable[[], Any]]


class StackFaults(Protocol):
    def during_run(self, stack: RunningStack, start: float, duration: float) -> None:
        """Schedule the faults for a run that sends from ``start`` for ``duration``
        seconds; must not block (a background thread does the work)."""

    def report(self) -> list[str]:
        """One line per fault: what was injected and when, or why not."""


class NoStackFaults:
    """For a stack without the admin API: injects nothing and says so."""

    def during_run(self, stack: RunningStack, start: float, duration: float) -> None:
        return None

    def report(self) -> list[str]:
        return ["none injected: the stack has no fault-injection admin API (LOCAL_ADMIN_PORT)"]


NO_FAULTS: StackFaults = NoStackFaults()


def _request(method: str, url: str, document: Any = None) -> Any:
    data = None if document is None else json.dumps(document).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback only
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
        body = response.read()
    return json.loads(body) if body else None


def has_admin_api(stack: RunningStack) -> bool:
    try:
        _request("GET", f"{stack.admin_url}/faults")
    except (OSError, ValueError):
        return False
    return True


def stack_faults(stack: RunningStack, *, flush_period: float, org_id: str) -> StackFaults:
    """The admin API's faults where the stack has it (a socket of ``org_id`` slowed)."""
    return AdminApiFaults(flush_period, org_id) if has_admin_api(stack) else NoStackFaults()


class AdminApiFaults:
    """The soak's in-stack faults at fixed fractions of the run: slow posts across the
    first hand-over, DynamoDB throttling, then DynamoDB 5xx, a 410 storm, one slow socket,
    and the flush killed mid-tick once."""

    def __init__(self, flush_period: float, org_id: str) -> None:
        self._flush_period = flush_period
        self._org_id = org_id
        self._plan: AdminApiPlan | None = None

    def during_run(self, stack: RunningStack, start: float, duration: float) -> None:
        admin = stack.admin_url

        def dynamodb(document: dict[str, float]) -> Callable[[], Any]:
            return lambda: _request("PUT", f"{admin}/faults/dynamodb", document)

        def gateway(document: dict[str, float]) -> Callable[[], Any]:
            return lambda: _request("PUT", f"{admin}/faults/gateway", document)

        slow_connection: list[str] = []

        def slow(bytes_per_second: float | None) -> Callable[[], Any]:
            def act() -> Any:
                if not slow_connection:
                    slow_connection.append(_a_connection(stack, self._org_id))
                url = f"{admin}/faults/connections/{slow_connection[0]}"
                return _request("PUT", url, {"bytesPerSecond": bytes_per_second})

            return act

        kill_at = self._mid_tick(stack.ready_at, start + duration * 0.7)
        # Posts answered only after ~0.7 s across the first hand-over (under the flush's
        # 2-s post timeout, whose retries would repeat readings): lanes still wait for
        # readings when the lease passes, and are handed to the successor.
        handover_at = self._next_invocation(stack.ready_at, start + duration * 0.1)
        plan: list[Step] = [
            *SlowPosts(
                SLOW_POST_MEDIAN_MS,
                SLOW_POST_P99_MS,
                SLOW_POSTS_BEFORE_HANDOVER_SECONDS + SLOW_POSTS_AFTER_HANDOVER_SECONDS,
            ).steps(admin, handover_at - SLOW_POSTS_BEFORE_HANDOVER_SECONDS),
            (start + duration * 0.2, "DynamoDB throttling 20% for 3 s", dynamodb({"throttleRate": 0.2})),
            (start + duration * 0.2 + 3, "DynamoDB throttling off", dynamodb({})),
            (start + duration * 0.35, "DynamoDB 5xx 10% for 2 s", dynamodb({"serverErrorRate": 0.1})),
            (start + duration * 0.35 + 2, "DynamoDB 5xx off", dynamodb({})),
            (start + duration * 0.5, "410 Gone for 10% of posts for 3 s", gateway({"goneRate": 0.1})),
            (start + duration * 0.5 + 3, "410 storm off", gateway({})),
            (start + duration * 0.6, "one connection's socket at 2,000 bytes/s for 5 s", slow(2000)),
            (start + duration * 0.6 + 5, "that socket at full speed", slow(None)),
            (kill_at, "the flush killed (likely mid-tick)", self._kill(admin, "flush")),
        ]
        self._plan = AdminApiPlan(plan, start)

    def _next_invocation(self, origin: float, after: float) -> float:
        """When the flush's schedule next starts an invocation (a hand-over) after ``after``."""
        return origin + math.ceil((after - origin) / self._flush_period) * self._flush_period

    def _mid_tick(self, origin: float, after: float) -> float:
        """The first moment after ``after`` that is KILL_INTO_TICK_SECONDS past a tick of
        the flush, whose invocations start every period at about ``origin`` and tick every
        second from their start until 3 s before the next one (not in the hand-over gap)."""
        period = self._flush_period
        invocation = origin + max(0, int((after - origin) // period)) * period
        tick = max(0, math.ceil(after - invocation))
        if tick > period - 4:
            invocation, tick = invocation + period, 1
        return invocation + tick + KILL_INTO_TICK_SECONDS

    @staticmethod
    def _kill(admin: str, function: str) -> Callable[[], Any]:
        """SIGKILL the function's running environments; if none is running (between two
        invocations), try again a second later, a few times."""

        def act() -> Any:
            answer: Any = None
            for _ in range(5):
                answer = _request("POST", f"{admin}/functions/{function}/kill")
                if not isinstance(answer, dict) or answer.get("killed"):
                    break
                time.sleep(1.0)
            return answer

        return act

    def report(self) -> list[str]:
        return self._plan.report() if self._plan else ["none injected (the run ended first)"]


class SlowPosts:
    """Every Management API post answered after a lognormal latency (``median_ms``,
    ``p99_ms``) for the first ``seconds`` of sending: a gateway slower than the flush
    expects, so the flush falls behind and hands over lanes still holding readings."""

    def __init__(self, median_ms: float, p99_ms: float, seconds: float) -> None:
        self.median_ms, self.p99_ms, self.seconds = median_ms, p99_ms, seconds
        self._plan: AdminApiPlan | None = None

    @classmethod
    def parse(cls, text: str) -> SlowPosts:
        """``MEDIAN_MS:P99_MS:SECONDS``, e.g. ``60:200:14``."""
        median_ms, p99_ms, seconds = (float(part) for part in text.split(":"))
        return cls(median_ms, p99_ms, seconds)

    def during_run(self, stack: RunningStack, start: float, duration: float) -> None:
        self._plan = AdminApiPlan(self.steps(stack.admin_url, start), start)

    def steps(self, admin: str, at: float) -> list[Step]:
        """The admin API calls that slow the posts from ``at`` on, and end it."""
        url = f"{admin}/faults/gateway"
        latency = {"median": self.median_ms, "p99": self.p99_ms}
        what = f"posts answered after {self.median_ms:g} ms (p99 {self.p99_ms:g}) for {self.seconds:g} s"
        return [
            (at, what, lambda: _request("PUT", url, {"postLatencyMs": latency})),
            (at + self.seconds, "posts answered at once", lambda: _request("PUT", url, {})),
        ]

    def report(self) -> list[str]:
        return self._plan.report() if self._plan else ["none injected"]


class AdminApiPlan:
    """Admin API calls at set times, from a background thread; a line for each."""

    def __init__(self, plan: list[Step], start: float) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, args=(sorted(plan, key=lambda s: s[0]), start), daemon=True
        )
        self._thread.start()

    def _run(self, plan: list[Step], start: float) -> None:
        for at, what, act in plan:
            time.sleep(max(0.0, at - time.time()))
            try:
                answer = act()
                outcome = "done" if not isinstance(answer, dict) or "killed" not in answer else str(answer)
            except (OSError, ValueError) as error:
                outcome = f"failed: {error}"
            with self._lock:
                self._lines.append(f"{time.time() - start:5.1f} s  {what}: {outcome}")

    def report(self) -> list[str]:
        self._thread.join(timeout=HTTP_TIMEOUT_SECONDS)
        with self._lock:
            return list(self._lines) or ["none injected (the run ended first)"]


def _a_connection(stack: RunningStack, org_id: str) -> str:
    """A connection id of the org, from the stack's own connection records."""
    client = boto3.client(
        "dynamodb",
        endpoint_url=stack.aws_url,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - fake, local only
    )
    items = client.query(
        TableName=stack.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"ORGCONNS#{org_id}"}},
        ProjectionExpression="sk",
    )
    ids = sorted(item["sk"]["S"] for item in items.get("Items", []))
    if not ids:
        raise ValueError("no connection to slow down")
    return ids[0]
