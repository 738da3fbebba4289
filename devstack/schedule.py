"""The EventBridge schedule of the flush function: a "Scheduled Event", asynchronously,
every period (``rate(1 minute)`` in AWS). The function ticks every second inside one
invocation until its remaining time runs low; the next invocation may start while the
previous one ends, and the function's lease sorts that out."""

from __future__ import annotations

import logging
import threading
import time

from devstack.events import scheduled_event
from devstack.lambda_runtime import AsyncInvoker, LambdaFunction

log = logging.getLogger("devstack.schedule")

RULE_NAME = "sensor-stream-flush-schedule"


class Schedule:
    def __init__(self, function: LambdaFunction, invoker: AsyncInvoker, period_seconds: float) -> None:
        self._function = function
        self._invoker = invoker
        self._period = period_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flush-schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        # The first run starts at once rather than at the next period, so a fresh stack
        # delivers right away; later runs keep to the period without drifting.
        next_run = time.monotonic()
        while not self._stopped.is_set():
            self._invoker.invoke(self._function, scheduled_event(RULE_NAME), source=f"schedule {RULE_NAME}")
            next_run += self._period
            self._stopped.wait(max(0.0, next_run - time.monotonic()))

    def stop(self, wait_seconds: float = 10.0) -> None:
        self._stopped.set()
        self._thread.join()
        if not self._function.end_running_invocations(wait_seconds):
            log.warning("%s is still running after the stop request", self._function.name)
