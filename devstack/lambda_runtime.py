"""Invoking the Lambda handlers in-process, the way the Lambda service calls them."""

from __future__ import annotations

import importlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from devstack.config import ACCOUNT_ID, REGION

log = logging.getLogger("devstack.lambda")

Handler = Callable[[dict[str, Any], Any], Any]


class LambdaContext:
    """The attributes and method of Lambda's context object that handlers and Powertools use."""

    def __init__(self, function_name: str, memory_limit_in_mb: int, timeout_seconds: float) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def end_early(self) -> None:
        """Used on shutdown: a handler that watches its remaining time winds down."""
        self._deadline = time.monotonic()


class LambdaFunction:
    """One function: its handler imported once (a warm container), invoked concurrently."""

    def __init__(self, name: str, handler: Handler, *, timeout_seconds: float, memory_mb: int = 512) -> None:
        self.name = name
        self.handler = handler
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self._running: set[LambdaContext] = set()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, name: str, handler_path: str, *, timeout_seconds: float) -> LambdaFunction:
        """Import ``module.attribute`` as Lambda does with the function's handler setting."""
        module_name, _, attribute = handler_path.rpartition(".")
        handler = getattr(importlib.import_module(module_name), attribute)
        return cls(name, handler, timeout_seconds=timeout_seconds)

    def invoke(self, event: dict[str, Any]) -> Any:
        """A synchronous invocation; exceptions propagate as Lambda reports a function error."""
        context = LambdaContext(self.name, self.memory_mb, self.timeout_seconds)
        with self._lock:
            self._running.add(context)
        started = time.monotonic()
        try:
            return self.handler(event, context)
        finally:
            with self._lock:
                self._running.discard(context)
            elapsed = time.monotonic() - started
            # Lambda would have killed it; a thread cannot be killed, so say it loudly.
            if elapsed > self.timeout_seconds:
                log.error("%s ran %.1f s, over its %.0f s timeout", self.name, elapsed, self.timeout_seconds)

    def end_running_invocations(self, wait_seconds: float) -> bool:
        """Tell running invocations their time is up and wait for them; False if some remain."""
        with self._lock:
            for context in self._running:
                context.end_early()
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return True
            time.sleep(0.05)
        return False


class AsyncInvoker:
    """Asynchronous invocation (``InvocationType=Event``) as IoT rules and EventBridge use it:
    on a function error Lambda retries twice with a growing delay, then gives up and the
    event goes to the failure destination, here the log."""

    RETRIES = 2

    def __init__(self, executor: Executor, retry_base_seconds: float) -> None:
        self._executor = executor
        self._retry_base_seconds = retry_base_seconds
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False

    def invoke(self, function: LambdaFunction, event: dict[str, Any], source: str) -> None:
        self._submit(function, event, source, attempt=0)

    def _submit(self, function: LambdaFunction, event: dict[str, Any], source: str, attempt: int) -> None:
        if not self._closed:
            self._executor.submit(self._run, function, event, source, attempt)

    def _run(self, function: LambdaFunction, event: dict[str, Any], source: str, attempt: int) -> None:
        try:
            function.invoke(event)
        except Exception:
            if self._closed:
                return
            if attempt < self.RETRIES:
                delay = self._retry_base_seconds * (2**attempt)
                log.warning(
                    "%s failed on an event from %s (attempt %d); retrying in %g s",
                    function.name,
                    source,
                    attempt + 1,
                    delay,
                    exc_info=True,
                )
                self._schedule(delay, function, event, source, attempt + 1)
            else:
                log.error(
                    "FAILED DELIVERY: %s failed %d times on an event from %s; event dropped: %s",
                    function.name,
                    attempt + 1,
                    source,
                    event,
                    exc_info=True,
                )

    def _schedule(
        self, delay: float, function: LambdaFunction, event: dict[str, Any], source: str, attempt: int
    ) -> None:
        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            self._submit(function, event, source, attempt)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
