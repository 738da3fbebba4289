"""Tracing: the X-Ray SDK only where tracing is on, and the flush traces the ticks that did
work (one subsegment each), never an idle tick nor each request of its minute-long loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import flush.handler
from sensor_stream import clients
from sensor_stream.delivery import TickReport
from sensor_stream.tracing import TickTraces, tracing_enabled
from tests.support.clock import FakeClock
from tests.support.readings import reading
from tests.support.stack import InProcessStack

ROOT = Path(__file__).resolve().parents[2]


class FakeSubsegment:
    def __init__(self, name: str) -> None:
        self.name = name
        self.start_time = 0.0
        self.end_time: float | None = None
        self.annotations: dict[str, Any] = {}
        self.exceptions: list[Exception] = []

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value

    def add_exception(self, error: Exception, stack: Any) -> None:
        self.exceptions.append(error)


class FakeRecorder:
    """Stands in for aws_xray_sdk's xray_recorder: keeps what would have been sent."""

    def __init__(self) -> None:
        self.ended: list[FakeSubsegment] = []
        self._open: list[FakeSubsegment] = []

    def begin_subsegment(self, name: str, namespace: str = "local") -> FakeSubsegment:
        self._open.append(FakeSubsegment(name))
        return self._open[-1]

    def end_subsegment(self, end_time: float | None = None) -> None:
        subsegment = self._open.pop()
        subsegment.end_time = end_time
        self.ended.append(subsegment)


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),  # outside Lambda
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
    ],
)
def test_tracing_is_on_in_lambda_unless_disabled(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], enabled: bool
):
    for name in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert tracing_enabled() is enabled


def run_python(script: str, env: dict[str, str]) -> Any:
    """``script``'s JSON output, in a fresh interpreter with the functions on the path."""
    base = {k: v for k, v in os.environ.items() if k not in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED")}
    result = subprocess.run(  # noqa: S603 - this interpreter, a script of the test's own
        [sys.executable, "-c", script],
        env={**base, "PYTHONPATH": f"{ROOT / 'functions'}{os.pathsep}{ROOT}", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_handlers_load_no_aws_sdk_client_nor_xray_at_import():
    script = (
        "import json, sys\n"
        "import ingest.handler, connect.handler, flush.handler, publish.handler, rules.handler\n"
        "heavy = ('aws_xray_sdk', 'boto3', 's3transfer', 'botocore.client')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    assert run_python(script, {}) == []


@pytest.mark.parametrize(("handler", "patched"), [("ingest", ["botocore", "httplib"]), ("flush", [])])
def test_in_lambda_the_request_handlers_patch_botocore_and_the_flush_patches_nothing(
    handler: str, patched: list[str]
):
    script = (
        "import json\n"
        f"import {handler}.handler\n"
        "from aws_xray_sdk.core import patcher\n"
        "print(json.dumps(sorted(patcher._PATCHED_MODULES)))\n"
    )
    env = {"LAMBDA_TASK_ROOT": str(ROOT / "functions"), "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"}
    assert run_python(script, env) == patched


def test_idle_ticks_record_nothing_and_a_tick_that_did_work_records_one_subsegment():
    recorder = FakeRecorder()
    traces = TickTraces(recorder)
    busy = TickReport(seconds=[10], readings=3, connections=2)
    busy.fanout.messages_sent = 2

    for report in (TickReport(seconds=[8]), TickReport(seconds=[9]), busy, TickReport(seconds=[11])):

        def run(now: float, report: TickReport = report) -> TickReport:
            return report

        assert traces.tick(run, now=0.0) is report

    [subsegment] = recorder.ended
    assert subsegment.name == "flush tick"
    assert subsegment.annotations == {"seconds": 1, "readings": 3, "connections": 2, "messages": 2}
    assert subsegment.end_time is not None
    assert subsegment.start_time <= subsegment.end_time
    assert traces.recorded == 1


def test_a_failing_tick_is_recorded_with_its_error_and_still_raises():
    recorder = FakeRecorder()
    traces = TickTraces(recorder)

    def failing(now: float) -> TickReport:
        raise RuntimeError("throttled")

    with pytest.raises(RuntimeError):
        traces.tick(failing, now=0.0)

    [subsegment] = recorder.ended
    assert subsegment.annotations == {"failed": True}
    assert [str(error) for error in subsegment.exceptions] == ["throttled"]


def test_without_tracing_nothing_is_recorded():
    traces = TickTraces(None)
    report = TickReport(seconds=[1], readings=1)

    assert traces.tick(lambda now: report, now=0.0) is report
    assert traces.recorded == 0


def test_the_flush_handler_traces_only_its_working_ticks(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    recorder = FakeRecorder()
    monkeypatch.setattr(flush.handler, "traces", TickTraces(recorder))
    flusher = flush.handler.TracedFlusher(
        stack.store, clients.fanout_gateway(), stack.settings, clock=clock.time, sleep=clock.sleep
    )
    stack.open("acme")
    try:
        for _ in range(3):  # take the lease, then idle
            clock.advance(1)
            flusher.tick(clock.time())
        stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
        clock.advance(1.1)
        flusher.tick(clock.time())
        for _ in range(3):
            clock.advance(1)
            flusher.tick(clock.time())
    finally:
        flusher.close()

    assert [s.annotations.get("readings") for s in recorder.ended] == [1]


def test_in_lambda_the_lean_writes_record_each_request_as_botocores_patch_would():
    # LeanWrites sends over its own sockets, which the patched http.client does not see.
    script = (
        "import json\n"
        "from aws_xray_sdk.core import xray_recorder\n"
        "from sensor_stream.tracing import aws_request_traces\n"
        "sent = []\n"
        "class Emitter:\n"
        "    def send_entity(self, entity):\n"
        "        sent.append(entity.to_dict())\n"
        "    def set_daemon_address(self, address):\n"
        "        pass\n"
        "xray_recorder.configure(emitter=Emitter(), streaming_threshold=0)\n"
        "with aws_request_traces('DynamoDB')('PutItem'):\n"
        "    pass\n"
        "print(json.dumps([[e['name'], e['namespace'], e['aws'], 'end_time' in e] for e in sent]))\n"
    )
    env = {
        "LAMBDA_TASK_ROOT": str(ROOT / "functions"),
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    }
    assert run_python(script, env) == [["DynamoDB", "aws", {"operation": "PutItem"}, True]]


def test_without_tracing_the_lean_writes_record_nothing_and_load_no_xray():
    script = (
        "import json, sys\n"
        "from sensor_stream.tracing import aws_request_traces\n"
        "with aws_request_traces('DynamoDB')('PutItem'):\n"
        "    pass\n"
        "print(json.dumps('aws_xray_sdk' in sys.modules))\n"
    )
    assert run_python(script, {}) is False
