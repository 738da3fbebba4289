"""X-Ray tracing, loaded only where it is on.

Tracing is on by Powertools' own rule: in Lambda (``LAMBDA_TASK_ROOT`` set, not SAM or
Chalice locally) unless ``POWERTOOLS_TRACE_DISABLED`` is true. Where it is off, nothing
here imports the X-Ray SDK (a quarter of a second of cold start).

- ``trace_handler``: the request handlers (ingest, connect, publish) as before: Powertools'
  ``capture_lambda_handler``, with botocore and http.client calls as subsegments.
- ``TickTraces``: the flush runs one invocation for a minute, ticking every second. It
  patches nothing (a subsegment per query and per post of a 60-s loop would cost more CPU
  than an idle tick) and records one subsegment per tick *that did work* (readings,
  posts, timers, a hand-over, a failure), with the tick's figures as annotations; an
  idle tick records nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

if TYPE_CHECKING:
    from .delivery import TickReport

SERVICE = "sensor-stream"
# What the request handlers' tracer patches (Powertools' default, patch_all, would also
# import and patch every other library X-Ray knows that happens to be installed).
PATCHED_MODULES = ("botocore", "httplib")
TICK_SUBSEGMENT = "flush tick"

Handler = TypeVar("Handler", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    """Powertools' rule (``Tracer._is_tracer_disabled``), without importing the SDK."""
    if resolve_truthy_env_var_choice(env=os.getenv(constants.TRACER_DISABLED_ENV, "false")):
        return False
    in_lambda = bool(os.getenv(constants.LAMBDA_TASK_ROOT_ENV))
    emulated = bool(os.getenv(constants.SAM_LOCAL_ENV) or os.getenv(constants.CHALICE_LOCAL_ENV))
    return in_lambda and not emulated


def trace_handler(handler: Handler) -> Handler:
    """Powertools' ``capture_lambda_handler`` where tracing is on; the handler itself
    elsewhere (the X-Ray SDK is then never imported)."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    tracer = Tracer(service=SERVICE, patch_modules=list(PATCHED_MODULES))
    return cast(Handler, tracer.capture_lambda_handler(handler))


def aws_request_traces(service: str) -> Callable[[str], AbstractContextManager[Any]]:
    """For requests the lean clients send over their own sockets, which X-Ray's patched
    http.client and botocore no longer see: a context per request (by operation) that
    records it as X-Ray's botocore patch would, an ``aws`` subsegment named for the service
    with its operation; where tracing is off, nothing (and the SDK is not imported)."""
    if not tracing_enabled():
        return lambda operation: nullcontext()
    from aws_xray_sdk.core import xray_recorder

    @contextmanager
    def traced(operation: str) -> Iterator[None]:
        with xray_recorder.in_subsegment(service, namespace="aws") as subsegment:
            if subsegment is not None:  # None: no segment to attach to
                subsegment.set_aws({"operation": operation})
            yield

    return traced


class Recorder(Protocol):
    """The part of ``aws_xray_sdk.core.xray_recorder`` that TickTraces uses."""

    def begin_subsegment(self, name: str, namespace: str = "local") -> Any: ...

    def end_subsegment(self, end_time: float | None = None) -> None: ...


def did_work(report: TickReport) -> bool:
    return bool(
        report.readings
        or report.duplicates_dropped
        or report.unreadable
        or report.skipped_seconds
        or report.commands_timed_out
        or report.sessions_expired
        or report.lease_lost
        or report.successor
        or report.fanout.messages_sent
        or report.fanout.posts_failed
        or report.fanout.connections_gone
        or report.fanout.connections_closed
    )


class TickTraces:
    """One subsegment per flush tick that did work, recorded after the tick with its
    start and end times (an idle tick costs nothing)."""

    def __init__(self, recorder: Recorder | None) -> None:
        self._recorder = recorder
        self.recorded = 0

    @classmethod
    def from_environment(cls) -> TickTraces:
        if not tracing_enabled():
            return cls(None)
        from aws_xray_sdk.core import xray_recorder

        # Send each subsegment as it ends (as Powertools does): in Lambda the invocation's
        # segment is never closed here, so batched subsegments could be left unsent.
        xray_recorder.configure(streaming_threshold=0)
        return cls(xray_recorder)

    def tick(self, run: Callable[[float], TickReport], now: float) -> TickReport:
        """``run(now)``, traced if it did work or failed."""
        started = time.time()
        try:
            report = run(now)
        except Exception as error:
            self._record(started, {"failed": True}, error)
            raise
        if did_work(report):
            self._record(started, tick_annotations(report))
        return report

    def _record(self, started: float, values: dict[str, int | bool], error: Exception | None = None) -> None:
        if self._recorder is None:
            return
        subsegment = self._recorder.begin_subsegment(TICK_SUBSEGMENT)
        if subsegment is None:  # no segment to attach to (not in an invocation)
            return
        subsegment.start_time = started
        for key, value in values.items():
            subsegment.put_annotation(key, value)
        if error is not None:
            subsegment.add_exception(error, [])
        self._recorder.end_subsegment(time.time())
        self.recorded += 1


def tick_annotations(report: TickReport) -> dict[str, int | bool]:
    values: dict[str, int | bool] = {
        "seconds": len(report.seconds),
        "readings": report.readings,
        "connections": report.connections,
        "messages": report.fanout.messages_sent,
        "postFailures": report.fanout.posts_failed,
        "connectionsGone": report.fanout.connections_gone,
        "commandsTimedOut": report.commands_timed_out,
        "sessionsExpired": report.sessions_expired,
        "duplicatesDropped": report.duplicates_dropped,
        "secondsSkipped": report.skipped_seconds,
    }
    values = {key: value for key, value in values.items() if value}
    if report.successor:
        values["handOver"] = True
    if report.lease_lost:
        values["leaseLost"] = True
    return values
