"""Invoking the Lambda functions the way the Lambda service does.

Each function has its own pool of execution environments (worker processes started from
the stack's forkserver, see devstack/lambda_worker.py): one invocation at a time per
environment, environments created on demand up to the function's concurrency, each with
its own imported handler, SDK clients and Powertools state. So one function's backlog
never takes another's environments (an ingest burst cannot starve the flush), a function
that overruns its timeout is killed and its environment replaced, and the functions use
both cores instead of sharing one GIL.

``InProcessFunction`` runs a plain callable on threads with the same interface, for the
emulators' unit tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from devstack.lambda_worker import EnvironmentSpec, LambdaContext, serve
from devstack.processes import context as process_context
from devstack.processes import stop_process

log = logging.getLogger("devstack.lambda")

Handler = Callable[[dict[str, Any], Any], Any]
# Lambda keeps an asynchronous event up to 6 hours and retries a failed one twice.
DEFAULT_ASYNC_RETRIES = 2
DEFAULT_MAX_EVENT_AGE_SECONDS = 6 * 3600.0
INIT_TIMEOUT_SECONDS = 30.0


class FunctionError(Exception):
    """The function raised (or its environment failed): Lambda's ``FunctionError``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


class StackStopping(FunctionError):
    """The local stack is stopping: the invocation was refused, not run."""

    def __init__(self) -> None:
        super().__init__("ServiceUnavailable", "the local stack is stopping")


class EventExpired(Exception):
    """An asynchronous event waited longer than the function's maximum event age."""


class Function(Protocol):
    """What the emulators need of a function."""

    name: str
    async_retries: int
    max_event_age_seconds: float

    def submit(self, event: dict[str, Any], *, max_age_seconds: float | None = None) -> Future[Any]: ...

    def invoke(self, event: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class FunctionConfig:
    """A function as infra/functions.py declares it, scaled to one machine."""

    name: str
    handler: str
    timeout_seconds: float
    memory_mb: int = 512
    # Most environments at once (Lambda: reserved or account concurrency).
    concurrency: int = 4
    # Asynchronous invocation configuration (EventInvokeConfig).
    async_retries: int = DEFAULT_ASYNC_RETRIES
    max_event_age_seconds: float = DEFAULT_MAX_EVENT_AGE_SECONDS
    environment: Mapping[str, str] = field(default_factory=dict)
    # CPU priority of its environments (os.nice). In AWS each environment has CPU of its
    # own; on one machine a backlog of one function would take the CPU the others need.
    nice: int = 0


@dataclass
class _Invocation:
    event_json: str
    future: Future[Any]
    expires_at: float | None


class _Environment:
    """The stack's side of one execution environment: a thread that feeds its process one
    invocation at a time and enforces the timeout."""

    def __init__(self, function: LambdaFunction, number: int, *, warm: bool = False) -> None:
        self._function = function
        self.number = number
        # Initialise before the first invocation (provisioned concurrency) instead of on it.
        self._warm = warm
        self.process: BaseProcess | None = None
        self._connection: Any = None
        self.busy = False
        # Set while the process runs an invocation (its SIGUSR1 handler is installed then).
        self.invoking = False
        self._thread = threading.Thread(
            target=self._run, name=f"lambda-{function.name}-{number}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> None:
        config = self._function.config
        ours, theirs = process_context().Pipe()
        spec = EnvironmentSpec(
            config.name, config.handler, config.memory_mb, dict(config.environment), config.nice
        )
        process = process_context().Process(
            target=serve,
            args=(spec, theirs, self._function.fault_rates),
            name=f"lambda:{config.name}#{self.number}",
            daemon=True,
        )
        process.start()
        theirs.close()
        self.process, self._connection = process, ours
        if not ours.poll(INIT_TIMEOUT_SECONDS):
            self._discard()
            raise FunctionError("Runtime.InitTimeout", f"{config.name} did not initialise")
        try:
            ready = json.loads(ours.recv_bytes())
        except (EOFError, OSError) as error:
            self._discard()
            raise FunctionError("Runtime.ExitError", f"{config.name} exited during INIT") from error
        if "initError" in ready:
            self._discard()
            init_error = ready["initError"]
            message = f"{init_error['errorType']}: {init_error['errorMessage']}"
            raise FunctionError("Runtime.ImportModuleError", message)

    def _discard(self) -> None:
        process, self.process = self.process, None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.join(5)

    def _run(self) -> None:
        function = self._function
        if self._warm:
            try:
                self._spawn()
            except FunctionError:
                log.exception("%s: could not initialise an environment ahead of use", function.name)
        while True:
            invocation = function.take()
            if invocation is None:
                break
            self.busy = True
            try:
                if not invocation.future.set_running_or_notify_cancel():
                    continue
                if invocation.expires_at is not None and time.monotonic() > invocation.expires_at:
                    expired = EventExpired(f"{function.name}: the event is older than its maximum age")
                    invocation.future.set_exception(expired)
                    continue
                try:
                    invocation.future.set_result(self._invoke(invocation.event_json))
                except BaseException as error:
                    invocation.future.set_exception(error)
            finally:
                self.busy = False
                function.idle()
        self._discard()

    def _invoke(self, event_json: str) -> Any:
        function = self._function
        if self.process is None or not self.process.is_alive():
            self._discard()
            self._spawn()
        timeout = function.config.timeout_seconds
        request_id = str(uuid.uuid4())
        deadline_ms = time.time_ns() // 1_000_000 + int(timeout * 1000)
        payload = f'{{"requestId": "{request_id}", "deadlineEpochMs": {deadline_ms}, "event": {event_json}}}'
        connection = self._connection
        try:
            connection.send_bytes(payload.encode())
            self.invoking = True
            if not connection.poll(timeout):
                self._discard()
                log.error("%s: timed out after %.2f s (RequestId: %s)", function.name, timeout, request_id)
                raise FunctionError("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds")
            answer = json.loads(connection.recv_bytes())
        except (EOFError, OSError) as error:
            if function.stopping:
                # Its environment was stopped with the stack, mid-invocation: refused, not failed.
                self._discard()
                raise StackStopping() from error
            if self.process is not None:
                self.process.join(2)  # reap it, to tell how it ended
            exit_code = self.process.exitcode if self.process else None
            self._discard()
            signal_name = f"signal: {signal.Signals(-exit_code).name}" if exit_code and exit_code < 0 else ""
            reason = f"Runtime exited with error: {signal_name or exit_code}"
            raise FunctionError("Runtime.ExitError", f"{reason} (RequestId: {request_id})") from error
        finally:
            self.invoking = False
        if "error" in answer:
            raise FunctionError(answer["error"]["errorType"], answer["error"]["errorMessage"])
        return answer["result"]

    def end_early(self) -> None:
        if self.invoking and self.process is not None and self.process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGUSR1)

    def kill(self) -> int | None:
        """SIGKILL the process (a crash); the running invocation fails, the next one gets a
        fresh environment. Returns the pid killed."""
        process = self.process
        if process is None or not process.pid or not process.is_alive():
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        return process.pid

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace_seconds=2)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class LambdaFunction:
    """One function: a queue of invocations and its pool of environments."""

    def __init__(self, config: FunctionConfig, fault_rates: Sequence[float]) -> None:
        self.config = config
        self.name = config.name
        self.async_retries = config.async_retries
        self.max_event_age_seconds = config.max_event_age_seconds
        self.fault_rates = fault_rates
        self._queue: queue.SimpleQueue[_Invocation | None] = queue.SimpleQueue()
        self._environments: list[_Environment] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def prewarm(self, count: int = 1) -> None:
        """Start environments ahead of the first invocation (Lambda: provisioned concurrency)."""
        with self._lock:
            for _ in range(min(count, self.config.concurrency) - len(self._environments)):
                self._add_environment(warm=True)
                self._idle += 1

    def _add_environment(self, *, warm: bool = False) -> None:
        environment = _Environment(self, len(self._environments) + 1, warm=warm)
        self._environments.append(environment)
        environment.start()

    def submit(self, event: dict[str, Any], *, max_age_seconds: float | None = None) -> Future[Any]:
        future: Future[Any] = Future()
        if self._closed:
            future.set_exception(StackStopping())
            return future
        expires_at = None if max_age_seconds is None else time.monotonic() + max_age_seconds
        self._queue.put(_Invocation(json.dumps(event), future, expires_at))
        with self._lock:
            # Scale out as Lambda does: a new environment when none is free, up to the limit.
            if self._idle > 0:
                self._idle -= 1
            elif len(self._environments) < self.config.concurrency:
                self._add_environment()
        return future

    def invoke(self, event: dict[str, Any]) -> Any:
        """A synchronous invocation; a function error raises :class:`FunctionError`."""
        return self.submit(event).result()

    def take(self) -> _Invocation | None:
        return self._queue.get()

    def idle(self) -> None:
        with self._lock:
            self._idle += 1

    @property
    def environments(self) -> int:
        return len(self._environments)

    def stats(self) -> dict[str, int]:
        """What an operator would read off Lambda's metrics: environments (concurrent
        executions), how many are running an invocation, and invocations waiting."""
        return {
            "environments": len(self._environments),
            "running": sum(environment.busy for environment in list(self._environments)),
            "queued": self._queue.qsize(),
        }

    def end_running_invocations(self, wait_seconds: float) -> bool:
        """Tell running invocations their time is up and wait for them; False if some remain."""
        for environment in list(self._environments):
            environment.end_early()
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if not any(environment.busy for environment in self._environments):
                return True
            time.sleep(0.05)
        return False

    def kill_running(self) -> list[int]:
        """SIGKILL every environment whose handler is running (not one still initialising);
        the pids killed."""
        killed = [environment.kill() for environment in list(self._environments) if environment.invoking]
        return [pid for pid in killed if pid is not None]

    def close(self) -> None:
        """Stop: :meth:`stop_accepting`, then each environment ends after its running
        invocation."""
        self.stop_accepting()
        for _ in self._environments:
            self._queue.put(None)
        for environment in list(self._environments):
            environment.stop()
        for environment in list(self._environments):
            environment.join(5)

    @property
    def stopping(self) -> bool:
        """Whether the stack is stopping this function (it accepts no more invocations)."""
        return self._closed

    def stop_accepting(self) -> None:
        """New invocations and those still queued fail at once (an environment would
        otherwise run the whole backlog of an overloaded stack before it saw its stop)."""
        self._closed = True
        while True:
            try:
                queued = self._queue.get_nowait()
            except queue.Empty:
                break
            if queued is not None and queued.future.set_running_or_notify_cancel():
                queued.future.set_exception(StackStopping())


class InProcessFunction:
    """A plain callable behind the same interface, on threads (the emulators' unit tests)."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        timeout_seconds: float = 30.0,
        async_retries: int = DEFAULT_ASYNC_RETRIES,
        max_event_age_seconds: float = DEFAULT_MAX_EVENT_AGE_SECONDS,
        concurrency: int = 8,
    ) -> None:
        self.name = name
        self.handler = handler
        self.timeout_seconds = timeout_seconds
        self.async_retries = async_retries
        self.max_event_age_seconds = max_event_age_seconds
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix=f"fn-{name}")

    def submit(self, event: dict[str, Any], *, max_age_seconds: float | None = None) -> Future[Any]:
        return self._executor.submit(self.invoke, event)

    def invoke(self, event: dict[str, Any]) -> Any:
        deadline_ms = time.time_ns() // 1_000_000 + int(self.timeout_seconds * 1000)
        return self.handler(event, LambdaContext(self.name, 512, deadline_ms))


class AsyncInvoker:
    """Asynchronous invocation (``InvocationType=Event``) as IoT rules and EventBridge use it:
    on a function error Lambda retries (twice by default) with a growing delay, then gives
    up and the event goes to the failure destination, here the log. An event older than
    the function's maximum event age is dropped the same way."""

    def __init__(self, retry_base_seconds: float) -> None:
        self._retry_base_seconds = retry_base_seconds
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False

    def invoke(self, function: Function, event: dict[str, Any], source: str) -> None:
        self._attempt(function, event, source, 0, time.monotonic())

    def _attempt(
        self, function: Function, event: dict[str, Any], source: str, attempt: int, queued_at: float
    ) -> None:
        if self._closed:
            return
        max_age = function.max_event_age_seconds - (time.monotonic() - queued_at)
        future = function.submit(event, max_age_seconds=max_age)
        future.add_done_callback(
            lambda done: self._settled(done, function, event, source, attempt, queued_at)
        )

    def _settled(
        self,
        done: Future[Any],
        function: Function,
        event: dict[str, Any],
        source: str,
        attempt: int,
        queued_at: float,
    ) -> None:
        if self._closed or done.cancelled():
            return
        error = done.exception()
        if error is None:
            return
        if isinstance(error, StackStopping):
            return  # nothing to retry: the stack is going away
        if isinstance(error, EventExpired):
            log.error("FAILED DELIVERY: %s: event from %s expired: %s", function.name, source, event)
            return
        if attempt < function.async_retries:
            delay = self._retry_base_seconds * (2**attempt)
            log.warning(
                "%s failed on an event from %s (attempt %d: %s); retrying in %g s",
                function.name,
                source,
                attempt + 1,
                error,
                delay,
            )
            self._schedule(delay, lambda: self._attempt(function, event, source, attempt + 1, queued_at))
        else:
            log.error(
                "FAILED DELIVERY: %s failed %d times on an event from %s (%s); event dropped: %s",
                function.name,
                attempt + 1,
                source,
                error,
                event,
            )

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            action()

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
