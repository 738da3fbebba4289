"""Each function's role allows exactly the DynamoDB calls the function makes.

What a function calls is recorded, not declared: the handlers run in-process over moto
(tests/support/stack.py) through a scenario that takes every path touching the table, and
a botocore hook notes each DynamoDB operation under the function that made it. A new
call without its grant (or a grant no code uses any more) fails here, and so does a new
kind of operation in ``sensor_stream.store`` that the scenario does not reach."""

from __future__ import annotations

import ast
import json
import math
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

import connect.handler
import ingest.handler
import publish.handler
from infra.functions import TABLE_ACTIONS
from infra.layer import REPOSITORY_ROOT
from sensor_stream import clients
from sensor_stream.observability import metrics
from sensor_stream.table import create_table
from tests.infra.synthesis import FUNCTION_NAMES, Synthesized
from tests.support import stack as in_process
from tests.support.clock import FakeClock
from tests.support.events import authorizer_claims
from tests.support.readings import reading
from tests.support.stack import InProcessStack
from tests.support.websocket import PostRecorder, wire

# Handlers that record no metric (a refused request) make Powertools warn.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

JWT_SECRET = "table-access-test-hs256-secret-32-bytes"
TABLE_NAME = "sensor-stream-table-access"
DYNAMO_MODULE = REPOSITORY_ROOT / "functions" / "sensor_stream" / "store" / "dynamo.py"
ENVIRONMENT = {
    "TABLE_NAME": TABLE_NAME,
    "JWT_SECRET": JWT_SECRET,
    "WEBSOCKET_CALLBACK_URL": "https://wsapi12345.execute-api.eu-west-1.amazonaws.com/prod",
    "FLUSH_GRACE_SECONDS": "0.1",
    "FLUSH_MAX_CATCH_UP_SECONDS": "30",
    "COMMAND_TIMEOUT_SECONDS": "3",
    # Every outbox write counts as late: ingest then reads the flush's progress.
    "FLUSH_CLOCK_MARGIN_SECONDS": "5",
    # A 410 is a gone browser at once (not a handshake still in progress).
    "CONNECT_GRACE_SECONDS": "0",
}
UNSET = ("JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_ORG_CLAIM", "JWT_UNITS_CLAIM", "JWT_TOKEN_USE")


def iam_actions(operation: str, params: dict[str, Any]) -> set[str]:
    """The IAM actions a call needs: its own name, except for PartiQL, which IAM grants by
    statement verb (dynamodb:PartiQLInsert, ...; docs: ql-iam)."""
    if operation not in ("ExecuteStatement", "BatchExecuteStatement"):
        return {f"dynamodb:{operation}"}
    if "body" in params:  # boto3's before-call has the serialised request
        params = json.loads(params["body"])
    statements = params.get("Statements") or [{"Statement": params.get("Statement", "")}]
    return {f"dynamodb:PartiQL{s['Statement'].split(maxsplit=1)[0].capitalize()}" for s in statements}


class CallRecorder:
    """DynamoDB operations by function. The function is the handler running (or the
    flusher, for the flush); the flush's posting threads (``post_*``) work for the flush
    even while another handler runs."""

    def __init__(self) -> None:
        self.calls: dict[str, set[str]] = defaultdict(set)
        self.current = "none"

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        function = "flush" if threading.current_thread().name.startswith("post") else self.current
        self.calls[function].update(iam_actions(model.name, params))

    def acting_as(self, function: str, action: Callable[[], Any]) -> Any:
        previous, self.current = self.current, function
        try:
            return action()
        finally:
            self.current = previous


@pytest.fixture(scope="module")
def recorded() -> dict[str, set[str]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in ENVIRONMENT.items():
            monkeypatch.setenv(name, value)
        for name in UNSET:
            monkeypatch.delenv(name, raising=False)
        clients.reset()
        with mock_aws(config={"core": {"reset_boto3_session": False}}):
            create_table(boto3.client("dynamodb"), TABLE_NAME)
            recorder = CallRecorder()
            clock = FakeClock(datetime.now(UTC))
            for module in (ingest.handler, connect.handler, publish.handler):
                monkeypatch.setattr(module, "utc_now", clock.now)

            def invoke_as_function(handler: Callable[..., Any], event: dict[str, Any]) -> Any:
                function = handler.__module__.split(".")[0]
                return recorder.acting_as(function, lambda: original_invoke(handler, event))

            original_invoke = in_process.invoke
            monkeypatch.setattr(in_process, "invoke", invoke_as_function)
            stack = InProcessStack(clock, PostRecorder(), JWT_SECRET)
            clients.store().client.meta.events.register("before-call.dynamodb", recorder)
            try:
                _every_path_to_the_table(stack, clock, recorder)
            finally:
                stack.close()
        clients.reset()
        metrics.clear_metrics()
    return dict(recorder.calls)


def _every_path_to_the_table(stack: InProcessStack, clock: FakeClock, recorder: CallRecorder) -> None:
    def flush(action: Callable[[], Any]) -> Any:
        return recorder.acting_as("flush", action)

    # ingest: new readings (conditional puts, one batch of outbox and registry items, the
    # flush's progress read for a late write), a redelivery (the first attempt's outbox
    # entry looked up), a message of several readings and its redelivery (PartiQL inserts,
    # the taken items read back), a malformed message (quarantined), and the same over HTTP.
    first = reading("fridge-1", clock.iso(-1), id="r-1")
    stack.publish_telemetry("acme", "dev-1", first)
    stack.publish_telemetry("acme", "dev-1", first)
    several = {"readings": [reading("fridge-1", clock.iso(-2), id="r-0"), reading("fridge-2", clock.iso(-2))]}
    stack.publish_telemetry("acme", "dev-1", several)
    stack.publish_telemetry("acme", "dev-1", several)
    stack.publish_telemetry("acme", "dev-1", b"not json")
    status, _ = stack.post_readings(
        authorizer_claims("acme"), {"deviceId": "gw-1", "readings": [reading("fridge-2", clock.iso())]}
    )
    assert status == 200

    # rules: new rules (a min/max and a silence one), listed.
    warm = {"metric": "temperature", "max": 0, "unitId": "fridge-1", "severity": "critical"}
    stack.put_rule("acme", "warm", **warm)
    stack.put_rule("acme", "quiet", metric="silence", maxSilenceSeconds=60, severity="warning")
    assert stack.rules_request("GET /alert-rules", authorizer_claims("acme"))[0] == 200

    # connect: connecting, every request kind (history, latest, units, alerts, resume), a
    # token refresh, and a disconnect.
    watcher = stack.open("acme")
    for request in (
        {"action": "hello", "resume": {"since": clock.iso(-60)}},
        {"action": "subscribe", "unitIds": ["fridge-1", "fridge-2"]},
        {"action": "getLatest", "unitId": "fridge-1"},
        {"action": "getHistory", "unitId": "fridge-1", "since": clock.iso(-3600), "until": clock.iso()},
        {"action": "getAlerts"},
        {"action": "listUnits"},
        {"action": "ping"},
        {"action": "refreshToken", "token": stack.token("acme")},
    ):
        stack.request(watcher, {**request, "requestId": "r"})
    leaving = stack.open("acme")
    stack.disconnect(leaving)

    # publish: a command (accepted and pending), a device's ack, and one left to time out.
    for request_id in ("c-1", "c-2"):
        stack.request(
            watcher,
            {
                "action": "sendCommand",
                "deviceId": "dev-1",
                "command": "reboot",
                "params": {},
                "requestId": request_id,
            },
        )
    (_, acknowledged), *_ = stack.published_commands()
    stack.device_ack("acme", "dev-1", {"commandId": acknowledged.command_id, "status": "ok"})

    # flush: ticks (lease, outbox, the org's connections, the rules, alert states and the
    # unit registry for silence), an alert opening, a browser that is gone (its record
    # deleted), a command timing out, a successor taking over, and a release; then the
    # rules API changing a rule (the alert it ends: its state deleted, an outbox entry) and
    # deleting one.
    gone = stack.open("acme")
    stack.recorder.gone.add(gone)
    stack.publish_telemetry("acme", "dev-1", reading("fridge-1", clock.iso(), id="r-2"))
    flush(lambda: stack.deliver("f1"))
    # Caught up (a tick reads at most FLUSH_MAX_SECONDS_PER_TICK seconds) before the
    # successor rings: the tick that finds its doorbell delivers nothing new.
    for _ in range(10):
        if flush(lambda: stack.tick(5, "f1")).seconds[-1] >= math.floor(clock.time()) - 2:
            break
    successor = stack.flusher("f2")
    assert flush(successor.wait_as_successor)
    report = flush(lambda: stack.tick(1, "f1"))
    assert report.successor == successor.owner
    assert flush(lambda: stack.flusher("f1").hand_over(successor.owner))
    assert flush(successor.poll_for_lease) is not None
    flush(lambda: stack.store.flush_state.release(successor.owner, delivered_through=None))

    def active_alerts() -> list[Any]:
        (answer,) = wire(stack.request(watcher, {"action": "getAlerts"}))
        return list(answer["active"])

    assert active_alerts(), "the warm reading opened an alert"
    stack.put_rule("acme", "warm", **{**warm, "max": 100})
    assert not active_alerts(), "the change ended it"
    assert (
        stack.rules_request("DELETE /alert-rules/{ruleId}", authorizer_claims("acme"), rule_id="quiet")[0]
        == 204
    )


def _operations_of_the_table_class() -> set[str]:
    """``self.client.<operation>`` in store/dynamo.py, the one module that calls DynamoDB."""
    tree = ast.parse(DYNAMO_MODULE.read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "client"
    }


def _granted_table_actions(synthesized: Synthesized, function: str) -> set[str]:
    role = getattr(synthesized.stack.functions, function).role
    table_arn = {"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.data.table), "Arn"]}
    actions: set[str] = set()
    for policy in synthesized.template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": synthesized.logical_id(role)}]}}
    ).values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            table_actions = [action for action in listed if action.startswith("dynamodb:")]
            if table_actions:
                assert statement["Resource"] == table_arn, statement
                actions.update(table_actions)
    return actions


def test_the_scenario_reaches_every_kind_of_table_call(recorded: dict[str, set[str]]) -> None:
    # The scenario is only as good as its reach: every operation the Table class can send
    # must have been sent by some function.
    operations = _operations_of_the_table_class()
    assert operations == {
        "put_item",
        "update_item",
        "delete_item",
        "get_item",
        "query",
        "batch_write_item",
        "batch_get_item",
        "batch_execute_statement",  # PartiQL INSERTs only (insert_statement)
    }
    sent = set().union(*recorded.values())
    operation_names = {"".join(part.title() for part in op.split("_")) for op in operations}
    expected = {action for name in operation_names for action in iam_actions(name, {"Statement": "INSERT"})}
    assert expected == sent
    assert set(recorded) == set(FUNCTION_NAMES), "every call is made by a known function"


@pytest.mark.parametrize("function", FUNCTION_NAMES)
def test_function_is_granted_exactly_the_table_calls_it_makes(
    synthesized: Synthesized, recorded: dict[str, set[str]], function: str
) -> None:
    assert recorded[function] == set(TABLE_ACTIONS[function])
    assert _granted_table_actions(synthesized, function) == set(TABLE_ACTIONS[function])


def test_no_function_may_scan_or_run_transactions(synthesized: Synthesized) -> None:
    for function in FUNCTION_NAMES:
        granted = _granted_table_actions(synthesized, function)
        assert not granted & {"dynamodb:Scan", "dynamodb:TransactWriteItems", "dynamodb:TransactGetItems"}
