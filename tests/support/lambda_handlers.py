"""Handlers that the local Lambda runtime's tests run in real execution environments
(worker processes import them by ``module.attribute``, as Lambda imports a handler)."""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
from botocore.config import Config

# Module state lives per environment: a second invocation in the same one sees it.
_invocations = 0


def describe(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _invocations
    _invocations += 1
    return {
        "event": event,
        "pid": os.getpid(),
        "invocations": _invocations,
        "functionName": context.function_name,
        "environmentName": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "remainingMs": context.get_remaining_time_in_millis(),
        "requestId": context.aws_request_id,
    }


def sleep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(event["seconds"])
    return {"pid": os.getpid()}


def fail(event: dict[str, Any], context: Any) -> None:
    raise ValueError(f"refused {event}")


def not_json(event: dict[str, Any], context: Any) -> Any:
    return {1, 2}


def tick_until_time_is_low(event: dict[str, Any], context: Any) -> str:
    while context.get_remaining_time_in_millis() > 1000:
        time.sleep(0.01)
    return "wound down"


def put_item(event: dict[str, Any], context: Any) -> str:
    """One DynamoDB call (no retries) to a port where nothing listens: only an injected
    fault answers it before the network would."""
    client = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",
        region_name="eu-west-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1),
    )
    try:
        client.put_item(TableName="t", Item={"pk": {"S": "a"}})
    except client.exceptions.ProvisionedThroughputExceededException:
        return "throttled"
    except client.exceptions.InternalServerError:
        return "server error"
    except Exception as error:
        return f"network: {type(error).__name__}"
    return "stored"
