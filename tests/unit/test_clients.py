"""The functions' AWS clients (sensor_stream/clients.py) as they go on the wire."""

from __future__ import annotations

import contextlib
from typing import Any

import botocore
import pytest
from botocore.exceptions import ClientError

from sensor_stream import clients


def sent_headers(client: Any) -> list[dict[str, str]]:
    """The headers of each request ``client`` sends from now on."""
    sent: list[dict[str, str]] = []
    client.meta.events.register(
        "before-send.*",
        lambda request, **_: sent.append(
            {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        ),
    )
    return sent


def test_every_request_names_the_project_and_function_in_its_user_agent(
    aws: None, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "sensor-stream-ingest")
    clients.reset()
    store = clients.store()
    sent = sent_headers(store.client)

    store.client.describe_table(TableName="sensor-stream-unit")
    store.client.describe_table(TableName="sensor-stream-unit")

    expected = f"sensor-stream/sensor-stream-ingest Botocore/{botocore.__version__} Python/"
    assert len(sent) == 2
    for headers in sent:
        assert headers["User-Agent"].startswith(expected)


def test_outside_lambda_the_user_agent_says_local(aws: None, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    clients.reset()

    assert clients.user_agent().startswith("sensor-stream/local Botocore/")


def test_dynamodb_requests_are_validated_by_dynamodb_not_the_client(aws: None):
    """Client-side validation is off for the store's client (a tenth of ingest's CPU): a
    malformed request goes out (DynamoDB answers it with a SerializationException; moto is
    more lenient) instead of raising botocore's ParamValidationError before sending."""
    client = clients.store().client
    sent = sent_headers(client)

    with contextlib.suppress(ClientError):
        client.get_item(TableName="sensor-stream-unit", Key={"pk": {"S": 5}, "sk": {"S": "b"}})

    assert len(sent) == 1
