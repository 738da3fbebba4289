"""The local stack's moto process (devstack/aws_server.py), a real process on loopback:
boto3 and the lean writes are answered on kept-alive connections, and a long-polling SQS
receive (the alert inbox's) does not hold up DynamoDB."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from benchmarks.sdk_overhead import CREDENTIALS, start_dynamodb, store_client
from sensor_stream import clients, table
from sensor_stream.dynamodb_writes import LeanWrites

TABLE = "aws-server-test"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    url, process = start_dynamodb()
    table.create_table(clients._client("dynamodb", clients._retries(), url), TABLE)
    yield url
    process.terminate()
    process.join(5)


def test_boto3_and_the_lean_writes_are_answered(endpoint):
    boto = store_client(endpoint, signed=True)
    lean = LeanWrites(store_client(endpoint, signed=True), CREDENTIALS)
    item = {"pk": {"S": "H#1"}, "sk": {"S": "r1"}, "data": {"S": '{"humidity": null}'}}

    lean.put_item(TableName=TABLE, Item=item, ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(ClientError) as taken:
        lean.put_item(TableName=TABLE, Item=item, ConditionExpression="attribute_not_exists(pk)")
    got = boto.get_item(TableName=TABLE, Key={"pk": {"S": "H#1"}, "sk": {"S": "r1"}}, ConsistentRead=True)

    assert taken.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert got["Item"] == item


def test_a_long_polling_sqs_receive_does_not_hold_up_dynamodb(endpoint):
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    polled = threading.Event()

    def long_poll() -> None:
        sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)
        polled.set()

    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()
    threading.Event().wait(0.3)  # the receive is in the server now

    tables = store_client(endpoint, signed=True).list_tables()["TableNames"]

    assert TABLE in tables
    assert not polled.is_set()  # answered while the receive still waits
    poller.join(10)
