"""The local Lambda runtime: execution environments in worker processes, invoked as the
Lambda service invokes them (JSON in and out, a context with the deadline, timeouts that
end the environment), and asynchronous invocation with Lambda's retries."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.lambda_runtime import (
    AsyncInvoker,
    FunctionConfig,
    FunctionError,
    InProcessFunction,
    LambdaFunction,
    StackStopping,
)
from devstack.lambda_worker import DYNAMODB_SERVER_ERROR_RATE, DYNAMODB_THROTTLE_RATE, LambdaContext
from devstack.processes import context as process_context

HANDLERS = "tests.support.lambda_handlers"


@pytest.fixture
def start_function() -> Iterator[Callable[..., LambdaFunction]]:
    started: list[LambdaFunction] = []

    def start(handler: str, rates: Any = None, **options: Any) -> LambdaFunction:
        options.setdefault("timeout_seconds", 20)
        config = FunctionConfig(name=f"fn-{handler}", handler=f"{HANDLERS}.{handler}", **options)
        function = LambdaFunction(config, rates if rates is not None else [0.0, 0.0])
        started.append(function)
        return function

    yield start
    for function in started:
        function.close()


def test_the_context_counts_down_and_can_be_ended_early():
    context = LambdaContext("flush", 512, deadline_epoch_ms=int(time.time() * 1000) + 70_000)

    remaining = context.get_remaining_time_in_millis()
    context.end_early()

    assert 60_000 < remaining <= 70_000
    assert context.get_remaining_time_in_millis() == 0
    assert context.invoked_function_arn.endswith(":function:flush")


def test_an_environment_gets_the_event_as_json_with_a_context_and_is_reused(start_function):
    function = start_function("describe", timeout_seconds=20)

    first = function.invoke({"n": 1, "nested": {"list": [1, "a"]}})
    second = function.invoke({"n": 2})

    assert first["event"] == {"n": 1, "nested": {"list": [1, "a"]}}
    assert first["functionName"] == first["environmentName"] == "fn-describe"
    assert 10_000 < first["remainingMs"] <= 20_000
    assert first["requestId"] != second["requestId"]
    # One warm environment: the module state of the first invocation is still there.
    assert (second["pid"], second["invocations"]) == (first["pid"], 2)


def test_closing_fails_the_queued_invocations_at_once_and_lets_the_running_one_finish():
    config = FunctionConfig(name="fn-sleep", handler=f"{HANDLERS}.sleep", timeout_seconds=20, concurrency=1)
    function = LambdaFunction(config, [0.0, 0.0])
    running = function.submit({"seconds": 0.5})
    while not running.running():
        time.sleep(0.01)
    backlog = [function.submit({"seconds": 0.5}) for _ in range(20)]

    function.stop_accepting()
    refused_at_once = function.submit({"seconds": 0})
    function.close()

    assert "pid" in running.result(timeout=0)
    assert refused_at_once.done()
    for queued in backlog:
        with pytest.raises(FunctionError) as refused:
            queued.result(timeout=0)
        assert refused.value.error_type == "ServiceUnavailable"
        assert isinstance(refused.value, StackStopping)
    with pytest.raises(StackStopping):
        function.submit({"seconds": 0}).result(timeout=0)


def test_errors_and_results_that_are_not_json_are_function_errors(start_function):
    with pytest.raises(FunctionError) as raised:
        start_function("fail").invoke({"n": 1})
    with pytest.raises(FunctionError) as not_json:
        start_function("not_json").invoke({})

    assert raised.value.error_type == "ValueError"
    assert "refused {'n': 1}" in str(raised.value)
    assert not_json.value.error_type == "TypeError"


def test_a_timeout_ends_the_environment_and_the_next_invocation_gets_a_fresh_one(start_function):
    function = start_function("sleep", timeout_seconds=0.5)
    warm = function.invoke({"seconds": 0})

    with pytest.raises(FunctionError) as timed_out:
        function.invoke({"seconds": 30})
    fresh = function.invoke({"seconds": 0})

    assert timed_out.value.error_type == "Sandbox.Timedout"
    assert fresh["pid"] != warm["pid"]


def test_killing_a_running_environment_fails_its_invocation_like_a_crash(start_function):
    function = start_function("sleep", timeout_seconds=30)
    running = function.submit({"seconds": 20})
    deadline = time.monotonic() + 20
    while not (killed := function.kill_running()):
        assert time.monotonic() < deadline, "the invocation never started"
        time.sleep(0.05)

    with pytest.raises(FunctionError) as crashed:
        running.result(20)
    after = function.invoke({"seconds": 0})

    assert crashed.value.error_type == "Runtime.ExitError"
    assert "SIGKILL" in str(crashed.value)
    assert after["pid"] not in killed


def test_ending_running_invocations_lets_a_handler_that_watches_its_time_finish(start_function):
    function = start_function("tick_until_time_is_low", timeout_seconds=60)
    result = function.submit({})
    deadline = time.monotonic() + 20
    while not function.end_running_invocations(wait_seconds=0.5) or not result.done():
        assert time.monotonic() < deadline, "the handler did not wind down"

    assert result.result(10) == "wound down"


def test_each_function_has_its_own_environments_so_a_busy_one_never_blocks_another(start_function):
    busy = start_function("sleep", timeout_seconds=30, concurrency=1)
    other = start_function("describe", timeout_seconds=30, concurrency=1)
    blocked = [busy.submit({"seconds": 3}), busy.submit({"seconds": 0})]

    started = time.monotonic()
    other.invoke({})
    answered_in = time.monotonic() - started

    assert answered_in < 2.5
    assert not blocked[1].done()  # concurrency 1: the second waits for the first
    assert [future.result(30)["pid"] for future in blocked] == [blocked[0].result()["pid"]] * 2
    assert busy.environments == 1


@pytest.mark.parametrize(
    ("rates", "outcome"),
    [
        ((1.0, 0.0), "throttled"),
        ((0.0, 1.0), "server error"),
        ((0.0, 0.0), "network: EndpointConnectionError"),
    ],
)
def test_dynamodb_faults_are_injected_into_the_functions_clients(start_function, rates, outcome):
    shared = process_context().RawArray("d", 2)
    function = start_function("put_item", shared)
    shared[DYNAMODB_THROTTLE_RATE], shared[DYNAMODB_SERVER_ERROR_RATE] = rates

    assert function.invoke({}) == outcome


def test_a_failing_asynchronous_invocation_is_tried_three_times_then_reported(caplog):
    attempts = []
    done = threading.Event()

    def always_fails(event, context):
        attempts.append(event)
        if len(attempts) == 3:
            done.set()
        raise RuntimeError("transient")

    with caplog.at_level(logging.WARNING, logger="devstack.lambda"):
        invoker = AsyncInvoker(retry_base_seconds=0.05)
        invoker.invoke(InProcessFunction("ingest", always_fails), {"n": 1}, source="rule r")
        assert done.wait(10)
        deadline = time.monotonic() + 10
        while not any("FAILED DELIVERY" in r.message for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.01)
        invoker.close()

    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(attempts) == 3
    assert ["retrying in 0.05 s" in retries[0], "retrying in 0.1 s" in retries[1]] == [True, True]
    assert any("FAILED DELIVERY" in r.message and "rule r" in r.message for r in caplog.records)


def test_an_event_refused_because_the_stack_is_stopping_is_neither_retried_nor_reported(caplog):
    config = FunctionConfig(name="fn-describe", handler=f"{HANDLERS}.describe", timeout_seconds=20)
    function = LambdaFunction(config, [0.0, 0.0])
    function.stop_accepting()
    with caplog.at_level(logging.INFO, logger="devstack.lambda"):
        invoker = AsyncInvoker(retry_base_seconds=0.01)
        invoker.invoke(function, {"n": 1}, source="rule r")
        time.sleep(0.1)  # past the first retry's delay, were there one
        invoker.close()
    function.close()

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_invocation_that_succeeds_on_retry_is_not_reported(caplog):
    attempts = []
    done = threading.Event()

    def fails_once(event, context):
        attempts.append(event)
        if len(attempts) == 1:
            raise RuntimeError("transient")
        done.set()

    with caplog.at_level(logging.WARNING, logger="devstack.lambda"):
        invoker = AsyncInvoker(retry_base_seconds=0.01)
        invoker.invoke(InProcessFunction("ingest", fails_once), {"n": 1}, source="rule r")
        assert done.wait(10)
        invoker.close()

    assert attempts == [{"n": 1}, {"n": 1}]
    assert not any("FAILED DELIVERY" in r.message for r in caplog.records)


def test_a_function_configured_without_retries_is_tried_once(caplog):
    attempts = []

    def fails(event, context):
        attempts.append(event)
        raise RuntimeError("no luck")

    with caplog.at_level(logging.WARNING, logger="devstack.lambda"):
        invoker = AsyncInvoker(retry_base_seconds=0.01)
        invoker.invoke(InProcessFunction("flush", fails, async_retries=0), {}, source="schedule")
        deadline = time.monotonic() + 10
        while not any("FAILED DELIVERY" in r.message for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)
        invoker.close()

    assert len(attempts) == 1


def test_a_prewarmed_environment_serves_the_first_invocations_without_another_one(start_function):
    function = start_function("describe", concurrency=4)
    function.prewarm()

    answers = [function.invoke({"n": n}) for n in range(3)]

    assert function.environments == 1
    assert {answer["pid"] for answer in answers} == {answers[0]["pid"]}


def test_an_invocation_cut_short_by_the_stack_stopping_is_refused_not_a_runtime_error(start_function):
    function = start_function("sleep", concurrency=1)
    running = function.submit({"seconds": 5})
    while not running.running():
        time.sleep(0.01)

    function.stop_accepting()
    # The worker ends with the stack, mid-invocation (at Ctrl-C the terminal's SIGINT reaches
    # the whole process group).
    while not function.kill_running():
        time.sleep(0.01)

    with pytest.raises(StackStopping):
        running.result(timeout=10)
