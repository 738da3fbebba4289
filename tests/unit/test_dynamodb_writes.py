"""The store's lean writes (dynamodb_writes.py) answer as boto3's client does: the same
items stored, the same errors (a failed condition's item included), botocore's standard
retries and signer choice; over the network (a moto server) and in-process (moto's mock
answers ``before-send``, as it does for boto3)."""

from __future__ import annotations

import json
import socket
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError
from moto.server import ThreadedMotoServer

from sensor_stream import clients
from sensor_stream.dynamodb_writes import LeanWrites
from sensor_stream.store.dynamo import ConditionFailed, Table
from sensor_stream.table import create_table
from tests.unit.conftest import TABLE_NAME


def item(sk: str, **extra: Any) -> dict[str, Any]:
    return {"pk": {"S": "H#acme#u1"}, "sk": {"S": sk}, "data": {"S": '{"t": 4.2}'}, **extra}


class Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def answer(status: int, document: dict[str, Any] | None = None, crc32: int | None = None) -> AWSResponse:
    data = json.dumps(document or {}).encode()
    headers = HTTPHeaders()
    headers["Content-Type"] = "application/x-amz-json-1.0"
    headers["x-amz-crc32"] = str(zlib.crc32(data) if crc32 is None else crc32)
    return AWSResponse("https://in-process.invalid/", status, headers, Body(data))


def throttled() -> AWSResponse:
    return answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"})


def answers_first(client: Any, first: list[AWSResponse]) -> list[Any]:
    """The client's next sends are answered with ``first``, one each, then go on as usual;
    returns every request sent. (moto's mock still sees every request: botocore emits
    ``before-send`` to all its handlers and takes the first answer.)"""
    sent: list[Any] = []

    def before_send(request: Any, **_: Any) -> AWSResponse | None:
        sent.append(request)
        return first.pop(0) if first else None

    client.meta.events.register_first("before-send.dynamodb", before_send)
    return sent


# --- in-process: moto's mock answers before-send ----------------------------------------


@pytest.fixture
def boto(aws: None) -> Any:
    return boto3.client("dynamodb")


@pytest.fixture
def delays() -> list[float]:
    return []


@pytest.fixture
def lean(boto: Any, delays: list[float]) -> LeanWrites:
    return LeanWrites(boto, boto3.DEFAULT_SESSION.get_credentials(), sleep=delays.append)  # type: ignore[union-attr]


def stored(boto: Any, sk: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = boto.get_item(
        TableName=TABLE_NAME, Key={"pk": {"S": "H#acme#u1"}, "sk": {"S": sk}}, ConsistentRead=True
    ).get("Item")
    return found


def test_the_store_writes_through_the_lean_client(aws: None):
    assert isinstance(clients.store().table.client, LeanWrites)


def test_a_put_stores_the_item_boto3_reads_back_binary_values_included(lean: LeanWrites, boto: Any):
    written = item("r1", blob={"B": b"\x00\xffbinary"}, n={"N": "1.5"}, tags={"SS": ["a", "b"]})

    response = lean.put_item(TableName=TABLE_NAME, Item=written)

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert stored(boto, "r1") == written


def test_a_failed_condition_raises_what_boto3_raises_with_the_stored_item(lean: LeanWrites, boto: Any):
    first = item("r1")
    lean.put_item(TableName=TABLE_NAME, Item=first)
    request = {
        "TableName": TABLE_NAME,
        "Item": item("r1", data={"S": "other"}),
        "ConditionExpression": "attribute_not_exists(pk)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }

    with pytest.raises(ClientError) as ours:
        lean.put_item(**request)
    with pytest.raises(ClientError) as theirs:
        boto.put_item(**request)

    for error in (ours.value, theirs.value):
        assert error.response["Error"]["Code"] == "ConditionalCheckFailedException"
        assert error.response["Item"] == first  # type: ignore[typeddict-item]
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ours.value.response["Error"]["Message"] == theirs.value.response["Error"]["Message"]
    with pytest.raises(ConditionFailed) as failed:
        Table(lean, TABLE_NAME).put(item("r1"), condition="attribute_not_exists(pk)")  # type: ignore[arg-type]
    assert failed.value.item == first


def test_a_batch_write_stores_every_item(lean: LeanWrites, boto: Any):
    items = [item(f"r{i}") for i in range(25)]

    response = lean.batch_write_item(RequestItems={TABLE_NAME: [{"PutRequest": {"Item": i}} for i in items]})

    assert response["UnprocessedItems"] == {}
    assert [stored(boto, f"r{i}") for i in range(25)] == items


def test_a_refused_request_is_raised_at_once_not_retried(lean: LeanWrites, boto: Any, delays: list[float]):
    sent = answers_first(boto, [])

    with pytest.raises(ClientError) as refused:
        lean.put_item(TableName=TABLE_NAME, Item=item("r1", big={"S": "x" * 410_000}))

    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert (len(sent), delays) == (1, [])


def test_throttling_is_retried_with_botocores_backoff_until_it_passes(
    lean: LeanWrites, boto: Any, delays: list[float]
):
    sent = answers_first(boto, [throttled(), throttled()])

    response = lean.put_item(TableName=TABLE_NAME, Item=item("r1"))

    assert len(sent) == 3
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    # The standard mode's throttling back-off: rand(0, 1) x 1 s, then x 2 s.
    assert len(delays) == 2
    assert 0 <= delays[0] <= 1
    assert 0 <= delays[1] <= 2
    assert stored(boto, "r1") == item("r1")


def test_three_throttled_attempts_raise_the_throttling_error(
    lean: LeanWrites, boto: Any, delays: list[float]
):
    sent = answers_first(boto, [throttled(), throttled(), throttled()])

    with pytest.raises(ClientError) as error:
        lean.batch_write_item(RequestItems={TABLE_NAME: [{"PutRequest": {"Item": item("r1")}}]})

    assert error.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert error.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(sent) == 3


def test_the_store_makes_as_many_attempts_as_boto3_with_its_config(aws: None):
    store_writes = clients.store().table.client
    boto3_client = clients._client("dynamodb", clients._retries(parameter_validation=False))
    attempts = []
    for client, events_of in ((store_writes, store_writes), (boto3_client, boto3_client)):
        # 5xx: DynamoDB's 25-ms back-off base keeps the test short (throttling's is 1 s).
        sent = answers_first(events_of, [answer(500, {"__type": "InternalServerError"}) for _ in range(10)])
        with pytest.raises(ClientError):
            client.put_item(TableName=TABLE_NAME, Item=item("r1"))
        attempts.append(len(sent))

    assert attempts == [4, 4]


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(lambda: answer(500, {"__type": "InternalServerError"}), id="a 5xx"),
        pytest.param(lambda: answer(200, {}, crc32=1), id="a body that fails its x-amz-crc32"),
    ],
)
def test_a_transient_failure_is_retried_after_dynamodbs_short_backoff(
    lean: LeanWrites, boto: Any, delays: list[float], first: Callable[[], AWSResponse]
):
    answers_first(boto, [first()])

    lean.put_item(TableName=TABLE_NAME, Item=item("r1"))

    assert len(delays) == 1
    assert 0 <= delays[0] <= 0.025  # DynamoDB's non-throttling base
    assert stored(boto, "r1") == item("r1")


def test_requests_are_signed_with_sigv4_unless_choose_signer_picks_another(lean: LeanWrites, boto: Any):
    sent = answers_first(boto, [])
    lean.put_item(TableName=TABLE_NAME, Item=item("r1"))
    authorization = sent[0].headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/dynamodb/aws4_request" in authorization
    assert sent[0].headers["X-Amz-Target"] == "DynamoDB_20120810.PutItem"

    boto.meta.events.register("choose-signer.dynamodb", lambda **_: botocore.UNSIGNED)
    lean.put_item(TableName=TABLE_NAME, Item=item("r2"))
    assert "Authorization" not in sent[1].headers


def test_call_events_are_emitted_as_boto3_emits_them(lean: LeanWrites, boto: Any):
    seen: list[tuple[str, Any]] = []
    events = boto.meta.events
    events.register("before-parameter-build.dynamodb", lambda params, **_: seen.append(("params", params)))
    events.register("after-call.dynamodb", lambda model, parsed, **_: seen.append((model.name, parsed)))

    lean.put_item(TableName=TABLE_NAME, Item=item("r1"))

    assert seen[0] == ("params", {"TableName": TABLE_NAME, "Item": item("r1")})
    assert seen[1][0] == "PutItem"
    assert seen[1][1]["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_other_calls_are_the_boto3_clients_own(lean: LeanWrites, boto: Any):
    assert lean.get_item == boto.get_item
    assert lean.meta is boto.meta


# --- over the network: a moto server -------------------------------------------------------

CREDENTIALS = Credentials("testing", "testing")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    create_table(networked_client(url), TABLE_NAME)
    yield url
    server.stop()


def networked_client(url: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id=CREDENTIALS.access_key,
        aws_secret_access_key=CREDENTIALS.secret_key,
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


def test_over_the_network_puts_and_failed_conditions_answer_as_boto3s(server_url: str):
    boto = networked_client(server_url)
    lean = LeanWrites(boto, CREDENTIALS)
    lean.batch_write_item(RequestItems={TABLE_NAME: [{"PutRequest": {"Item": item("n1")}}]})

    with pytest.raises(ClientError) as error:
        lean.put_item(
            TableName=TABLE_NAME,
            Item=item("n1", data={"S": "other"}),
            ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    assert error.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert error.value.response["Item"] == item("n1")  # type: ignore[typeddict-item]
    assert stored(boto, "n1") == item("n1")


def test_an_unreachable_endpoint_is_retried_then_raised_as_botocore_raises_it():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    delays: list[float] = []
    boto = networked_client(closed)
    lean = LeanWrites(boto, CREDENTIALS, sleep=delays.append)

    with pytest.raises(EndpointConnectionError):
        lean.put_item(TableName=TABLE_NAME, Item=item("r1"))

    assert len(delays) == 3  # max_attempts 3 in botocore's config: retries, so 4 attempts
