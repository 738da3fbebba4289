"""The local Lambda Invoke API: boto3's ``lambda`` client, pointed at it as the functions
are by ``AWS_ENDPOINT_URL_LAMBDA``, invokes the stack's functions asynchronously (as the
flush's shard 0 starts the other shards) and synchronously, and hears Lambda's errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.http_server import LoopbackHttpServer
from devstack.lambda_api import LambdaInvokeApi
from devstack.lambda_runtime import AsyncInvoker, InProcessFunction
from sensor_stream.coordination import LambdaWorkerStarter

FUNCTION_NAME = "sensor-stream-flush"


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = threading.Event()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        self.arrived.set()
        return {"echo": event, "function": context.function_name}


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def lambda_client(recorder: Recorder) -> Iterator[Any]:
    invoker = AsyncInvoker(retry_base_seconds=0.05)
    api = LambdaInvokeApi(invoker)
    api.serve({FUNCTION_NAME: InProcessFunction(FUNCTION_NAME, recorder)})
    server = LoopbackHttpServer("lambda", api, 0)
    server.start()
    try:
        yield boto3.client(
            "lambda",
            endpoint_url=server.url,
            region_name="eu-west-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1}),
        )
    finally:
        server.stop()
        invoker.close()


def test_shard_starter_invokes_the_function_asynchronously(lambda_client: Any, recorder: Recorder) -> None:
    LambdaWorkerStarter(lambda_client, FUNCTION_NAME)(3)

    assert recorder.arrived.wait(5)
    assert recorder.events == [{"flushShard": 3}]


def test_event_invocation_is_accepted_with_202(lambda_client: Any, recorder: Recorder) -> None:
    answer = lambda_client.invoke(FunctionName=FUNCTION_NAME, InvocationType="Event", Payload=b'{"a": 1}')

    assert answer["StatusCode"] == 202
    assert recorder.arrived.wait(5)
    assert recorder.events == [{"a": 1}]


def test_request_response_answers_the_result(lambda_client: Any) -> None:
    arn = f"arn:aws:lambda:eu-west-1:123456789012:function:{FUNCTION_NAME}"
    answer = lambda_client.invoke(FunctionName=arn, Payload=json.dumps({"b": 2}).encode())

    assert answer["StatusCode"] == 200
    assert json.loads(answer["Payload"].read()) == {"echo": {"b": 2}, "function": FUNCTION_NAME}


def test_unknown_function_is_resource_not_found(lambda_client: Any, recorder: Recorder) -> None:
    with pytest.raises(ClientError) as raised:
        lambda_client.invoke(FunctionName="nope", InvocationType="Event", Payload=b"{}")

    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert recorder.events == []


def test_a_body_that_is_not_json_is_refused(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as raised:
        lambda_client.invoke(FunctionName=FUNCTION_NAME, Payload=b"{not json")

    assert raised.value.response["Error"]["Code"] == "InvalidRequestContentException"
