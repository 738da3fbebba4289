"""Invoking handlers as Lambda does: the context object, and asynchronous retries."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from devstack.lambda_runtime import AsyncInvoker, LambdaContext, LambdaFunction


def test_the_context_counts_down_and_can_be_ended_early():
    context = LambdaContext("flush", 512, timeout_seconds=70)

    remaining = context.get_remaining_time_in_millis()
    context.end_early()

    assert 60_000 < remaining <= 70_000
    assert context.get_remaining_time_in_millis() == 0
    assert context.invoked_function_arn.endswith(":function:flush")
    assert context.aws_request_id != LambdaContext("flush", 512, 70).aws_request_id


def test_a_failing_asynchronous_invocation_is_tried_three_times_then_reported(caplog):
    attempts = []
    done = threading.Event()

    def always_fails(event, context):
        attempts.append(event)
        if len(attempts) == 3:
            done.set()
        raise RuntimeError("transient")

    with ThreadPoolExecutor(2) as executor, caplog.at_level(logging.WARNING, logger="devstack.lambda"):
        invoker = AsyncInvoker(executor, retry_base_seconds=0.05)
        invoker.invoke(LambdaFunction("ingest", always_fails, timeout_seconds=5), {"n": 1}, source="rule r")
        assert done.wait(10)
        deadline = time.monotonic() + 10
        while not any("FAILED DELIVERY" in r.message for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.01)
        invoker.close()

    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(attempts) == 3
    assert ["retrying in 0.05 s" in retries[0], "retrying in 0.1 s" in retries[1]] == [True, True]
    assert any("FAILED DELIVERY" in r.message and "rule r" in r.message for r in caplog.records)


def test_an_invocation_that_succeeds_on_retry_is_not_reported(caplog):
    attempts = []
    done = threading.Event()

    def fails_once(event, context):
        attempts.append(event)
        if len(attempts) == 1:
            raise RuntimeError("transient")
        done.set()

    with ThreadPoolExecutor(2) as executor, caplog.at_level(logging.WARNING, logger="devstack.lambda"):
        invoker = AsyncInvoker(executor, retry_base_seconds=0.01)
        invoker.invoke(LambdaFunction("ingest", fails_once, timeout_seconds=5), {"n": 1}, source="rule r")
        assert done.wait(10)
        invoker.close()

    assert attempts == [{"n": 1}, {"n": 1}]
    assert not any("FAILED DELIVERY" in r.message for r in caplog.records)


def test_ending_running_invocations_lets_a_handler_that_watches_its_time_finish():
    started = threading.Event()

    def ticks_until_time_is_low(event, context):
        started.set()
        while context.get_remaining_time_in_millis() > 1000:
            time.sleep(0.01)
        return "done"

    function = LambdaFunction("flush", ticks_until_time_is_low, timeout_seconds=60)
    with ThreadPoolExecutor(1) as executor:
        result = executor.submit(function.invoke, {})
        assert started.wait(10)
        assert function.end_running_invocations(wait_seconds=10)
        assert result.result(10) == "done"
