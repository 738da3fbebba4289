"""The local stack's TTL sweeper removes what DynamoDB's TTL would remove, and only that."""

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack import moto_fidelity
from devstack.moto_fidelity import all_tables, expire_items
from sensor_stream.table import create_table
from tests.unit.conftest import TABLE_NAME

NOW = 1_800_000_000


def _put(client, pk: str, sk: str, expires_at: int | None) -> None:
    item = {"pk": {"S": pk}, "sk": {"S": sk}}
    if expires_at is not None:
        item["expiresAt"] = {"N": str(expires_at)}
    client.put_item(TableName=TABLE_NAME, Item=item)


def test_items_past_their_ttl_are_removed_and_the_rest_kept(aws):
    client = boto3.client("dynamodb")
    _put(client, "CONN#a", "CONN", NOW - 1)
    _put(client, "CONN#b", "CONN", NOW + 60)
    _put(client, "OUTBOX#1#0", "r1", NOW - 3600)
    _put(client, "OUTBOX#1#0", "r2", None)

    removed = expire_items(all_tables, now=NOW)

    items = client.scan(TableName=TABLE_NAME)["Items"]
    assert removed == 2
    assert sorted((i["pk"]["S"], i["sk"]["S"]) for i in items) == [("CONN#b", "CONN"), ("OUTBOX#1#0", "r2")]


def test_answers_carrying_items_are_the_same_with_the_json_writer(aws):
    client = boto3.client("dynamodb")
    item: dict[str, Any] = {
        "pk": {"S": "UNIT#a"},
        "sk": {"S": "R#1"},
        "n": {"N": "1.5"},
        "b": {"B": b"\x00\x01"},
        "flag": {"BOOL": True},
        "none": {"NULL": True},
        "tags": {"SS": ["x", "y"]},
        "nested": {"M": {"list": {"L": [{"S": "a"}, {"N": "2"}]}}},
    }
    client.put_item(TableName=TABLE_NAME, Item=item)
    client.put_item(TableName=TABLE_NAME, Item={"pk": {"S": "UNIT#a"}, "sk": {"S": "R#2"}})

    def answers() -> list[Any]:
        key = {"pk": {"S": "UNIT#a"}, "sk": {"S": "R#1"}}
        return [
            client.get_item(TableName=TABLE_NAME, Key=key)["Item"],
            "Item" in client.get_item(TableName=TABLE_NAME, Key={"pk": {"S": "none"}, "sk": {"S": "x"}}),
            client.query(
                TableName=TABLE_NAME,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": "UNIT#a"}},
                Limit=1,
            ),
            client.update_item(
                TableName=TABLE_NAME,
                Key={"pk": {"S": "UNIT#a"}, "sk": {"S": "R#2"}},
                UpdateExpression="SET v = :v",
                ExpressionAttributeValues={":v": {"N": "3"}},
                ReturnValues="ALL_NEW",
            )["Attributes"],
            client.batch_write_item(
                RequestItems={
                    TABLE_NAME: [
                        {"PutRequest": {"Item": {"pk": {"S": "UNIT#b"}, "sk": {"S": "R#1"}}}},
                        {"DeleteRequest": {"Key": {"pk": {"S": "UNIT#b"}, "sk": {"S": "R#0"}}}},
                    ]
                },
                ReturnConsumedCapacity="TOTAL",
            ),
        ]

    generic = answers()
    moto_fidelity.apply()
    with_json_writer = answers()

    for answers_of_one_writer in (generic, with_json_writer):
        for answer in (answers_of_one_writer[2], answers_of_one_writer[4]):
            answer.pop("ResponseMetadata")
    assert with_json_writer == generic
    assert with_json_writer[0] == item
    assert with_json_writer[1] is False
    assert "LastEvaluatedKey" in with_json_writer[2]


def test_conditions_parsed_once_still_decide_per_item(aws):
    moto_fidelity.apply()
    client = boto3.client("dynamodb")
    outcomes = []
    for pk in ("UNIT#a", "UNIT#b", "UNIT#a"):
        try:
            client.put_item(
                TableName=TABLE_NAME,
                Item={"pk": {"S": pk}, "sk": {"S": "R#1"}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            outcomes.append("stored")
        except client.exceptions.ConditionalCheckFailedException:
            outcomes.append("exists")

    assert outcomes == ["stored", "stored", "exists"]


def test_an_update_expression_parsed_once_applies_each_requests_values(aws):
    moto_fidelity.apply()
    client = boto3.client("dynamodb")
    key = {"pk": {"S": "DEVICE#a"}, "sk": {"S": "DEVICE"}}

    def register(seen: str) -> dict[str, Any]:
        return client.update_item(
            TableName=TABLE_NAME,
            Key=key,
            UpdateExpression="SET firstSeenAt = if_not_exists(firstSeenAt, :seen), lastSeenAt = :seen",
            ExpressionAttributeValues={":seen": {"S": seen}},
            ReturnValues="ALL_NEW",
        )["Attributes"]

    first, second = register("t1"), register("t2")

    assert (first["firstSeenAt"], first["lastSeenAt"]) == ({"S": "t1"}, {"S": "t1"})
    assert (second["firstSeenAt"], second["lastSeenAt"]) == ({"S": "t1"}, {"S": "t2"})


def test_an_item_past_the_size_limit_is_refused_and_one_under_it_stored(aws):
    client = boto3.client("dynamodb")
    under = {"pk": {"S": "UNIT#a"}, "sk": {"S": "R#1"}, "a": {"S": "x" * 200_000}, "b": {"S": "y" * 200_000}}
    over = {**under, "sk": {"S": "R#2"}, "c": {"S": "z" * 10_000}}
    moto_fidelity.apply()

    client.put_item(TableName=TABLE_NAME, Item=under)
    with pytest.raises(ClientError) as refused:
        client.put_item(TableName=TABLE_NAME, Item=over)

    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "size has exceeded" in refused.value.response["Error"]["Message"]
    stored = client.get_item(TableName=TABLE_NAME, Key={"pk": {"S": "UNIT#a"}, "sk": {"S": "R#1"}})["Item"]
    assert stored == under


def _moto_parse(action: str, body: bytes) -> Any:
    """What moto's own parser makes of a DynamoDB request body (its shape-driven walk)."""
    from moto.core.parse import PROTOCOL_PARSERS
    from moto.core.utils import get_service_model

    operation = get_service_model("dynamodb").operation_model(action)
    parser = PROTOCOL_PARSERS["json"](operation, map_type=dict)
    request: Any = {
        "method": "POST",
        "values": {},
        "headers": {},
        "body": body,
        "url_path": "/",
        "url_params": {},
    }
    return parser.parse(request)


scalars = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=8)),
    st.builds(lambda n: {"N": str(n)}, st.integers(-(10**12), 10**12)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(
        lambda ss: {"SS": sorted(ss)}, st.sets(st.text(min_size=1, max_size=4), min_size=1, max_size=3)
    ),
    st.builds(
        lambda ns: {"NS": [str(n) for n in sorted(ns)]}, st.sets(st.integers(0, 99), min_size=1, max_size=3)
    ),
)
attribute_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.builds(lambda items: {"L": items}, st.lists(inner, max_size=3)),
        st.builds(
            lambda fields: {"M": fields}, st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3)
        ),
    ),
    max_leaves=8,
)
items = st.dictionaries(st.text(min_size=1, max_size=6), attribute_values, min_size=1, max_size=5)


@given(items, items)
@settings(max_examples=60)
def test_an_item_request_without_binary_values_is_its_json_as_moto_would_parse_it(item, key):
    requests = {
        "PutItem": {
            "TableName": TABLE_NAME,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk) OR v < :v",
            "ExpressionAttributeValues": {":v": {"N": "3"}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        },
        "BatchWriteItem": {
            "RequestItems": {TABLE_NAME: [{"PutRequest": {"Item": item}}, {"DeleteRequest": {"Key": key}}]}
        },
        "Query": {
            "TableName": TABLE_NAME,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "a"}},
            "ExclusiveStartKey": key,
            "Limit": 25,
            "ConsistentRead": True,
        },
        "UpdateItem": {
            "TableName": TABLE_NAME,
            "Key": key,
            "UpdateExpression": "SET #a = :a",
            "ExpressionAttributeNames": {"#a": "a"},
            "ExpressionAttributeValues": {":a": item[next(iter(item))]},
        },
    }
    for action, request in requests.items():
        body = json.dumps(request).encode()
        assert action in moto_fidelity.PLAIN_JSON_ACTIONS
        assert _moto_parse(action, body) == json.loads(body), action


def test_binary_values_still_arrive_as_bytes_and_nested_values_as_sent(aws):
    moto_fidelity.apply()
    client = boto3.client("dynamodb")
    item: dict[str, Any] = {
        "pk": {"S": "BIN#1"},
        "sk": {"S": "x"},
        "blob": {"B": b"\x00\xffraw"},
        "blobs": {"BS": [b"a", b"b"]},
        "nested": {"M": {"list": {"L": [{"N": "1.5"}, {"S": "two"}, {"BOOL": False}, {"NULL": True}]}}},
    }
    client.put_item(TableName=TABLE_NAME, Item=item)
    client.put_item(
        TableName=TABLE_NAME, Item={"pk": {"S": "PLAIN#1"}, "sk": {"S": "x"}, "n": {"NS": ["1", "2"]}}
    )
    got = client.get_item(
        TableName=TABLE_NAME, Key={"pk": {"S": "BIN#1"}, "sk": {"S": "x"}}, ConsistentRead=True
    )
    assert got["Item"] == item
    queried = client.query(
        TableName=TABLE_NAME,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "PLAIN#1"}},
    )["Items"]
    assert queried == [{"pk": {"S": "PLAIN#1"}, "sk": {"S": "x"}, "n": {"NS": ["1", "2"]}}]


def test_request_ids_are_moto_s_fifty_two_letters_and_digits(aws):
    moto_fidelity.apply()
    client = boto3.client("dynamodb")
    ids = [client.list_tables()["ResponseMetadata"]["RequestId"] for _ in range(3)]
    assert all(len(value) == 52 and value.isalnum() and value.isascii() for value in ids)
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    ("path", "query", "host"),
    [("/", "", "127.0.0.1:4566"), ("/a%2Fb/c", "x=1&y=%20", "localhost:8000"), ("//twice", "", "h")],
)
def test_a_request_url_from_its_host_header_is_moto_s_raw_url(path, query, host):
    from moto.moto_server.werkzeug_app import BackendRequest
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path="/", base_url=f"http://{host}", query_string=query).get_environ()
    environ["RAW_URI"] = f"{path}?{query}" if query else path
    request = BackendRequest(environ)
    assert moto_fidelity._raw_url(request) == request.raw_url


def test_queries_without_copies_answer_the_stored_items_and_projections_leave_them_whole(aws):
    moto_fidelity.apply()
    client = boto3.client("dynamodb")
    stored: Any = {"pk": {"S": "OUTBOX#1"}, "sk": {"S": "r1"}, "data": {"S": "x"}}
    stored["n"] = {"M": {"a": {"N": "1"}}}
    client.put_item(TableName=TABLE_NAME, Item=stored)
    condition: Any = {
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "OUTBOX#1"}},
    }

    projected = client.query(TableName=TABLE_NAME, ProjectionExpression="sk, n.a", **condition)["Items"]
    plain = client.query(TableName=TABLE_NAME, ConsistentRead=True, **condition)["Items"]
    scanned = client.scan(TableName=TABLE_NAME)["Items"]

    assert projected == [{"sk": {"S": "r1"}, "n": {"M": {"a": {"N": "1"}}}}]
    assert plain == scanned == [stored]
    assert not getattr(moto_fidelity._scope, "share_results", False)


SIGNED = "SignedHeaders=host, Signature=x"


def _dynamodb_environ(operation: str, request: dict[str, Any]) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(
        path="/",
        base_url="http://127.0.0.1:4566",
        method="POST",
        data=json.dumps(request).encode(),
        headers=[
            ("X-Amz-Target", f"DynamoDB_20120810.{operation}"),
            ("Content-Type", "application/x-amz-json-1.0"),
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential=testing/20261123/eu-west-1/dynamodb/aws4_request, {SIGNED}",
            ),
        ],
    ).get_environ()
    environ["RAW_URI"] = "/"
    return environ


ITEM = {"pk": {"S": "H#u1"}, "sk": {"S": "r1"}, "v": {"N": "1"}, "gone": {"NULL": True}}
# DynamoDB requests ("@" stands for the table's name) the local stack's writes, reads and
# errors take.
DYNAMODB_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("PutItem", {"Item": ITEM, "ConditionExpression": "attribute_not_exists(pk)"}),
    (
        "PutItem",
        {
            "Item": {**ITEM, "v": {"N": "2"}},
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        },
    ),
    (
        "BatchWriteItem",
        {"RequestItems": {"@": [{"PutRequest": {"Item": {"pk": {"S": "O#1"}, "sk": {"S": "a"}}}}]}},
    ),
    ("GetItem", {"Key": {"pk": {"S": "H#u1"}, "sk": {"S": "r1"}}, "ConsistentRead": True}),
    ("Query", {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "H#u1"}}}),
    (
        "UpdateItem",
        {
            "Key": {"pk": {"S": "H#u1"}, "sk": {"S": "r1"}},
            "UpdateExpression": "SET v = v + :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
            "ReturnValues": "ALL_NEW",
        },
    ),
    ("PutItem", {"Item": {"pk": {"S": ""}, "sk": {"S": "x"}}}),  # a validation error
    ("DescribeTable", {"TableName": "missing"}),  # an error
]


def _addressed(request: dict[str, Any], table: str) -> dict[str, Any]:
    body = json.loads(json.dumps(request).replace('"@"', json.dumps(table)))
    return body if "RequestItems" in body or "TableName" in body else {"TableName": table, **body}


def _answer_through_wsgi(app: Any, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        started.update(status=int(status.split()[0]), headers=dict(headers))

    content = b"".join(app(_dynamodb_environ(operation, body), start_response))
    return started["status"], started["headers"], content


def test_the_fast_paths_set_up_answers_every_request_as_motos_own_set_up(aws):
    """set_up_json_request stands in for moto's setup_class on DynamoDB requests: the same
    requests, each against its own table, get the same answers both ways."""
    from moto.dynamodb.responses import DynamoHandler
    from moto.moto_server.werkzeug_app import BackendRequest, DomainDispatcherApplication, create_backend_app

    moto_fidelity.apply()
    client = boto3.client("dynamodb")
    twin = f"{TABLE_NAME}-twin"
    create_table(client, twin)
    fast = moto_fidelity.DynamoDbFastPath(DomainDispatcherApplication(create_backend_app))

    def answer_by_moto(operation: str, request: dict[str, Any]) -> tuple[Any, ...]:
        environ = _dynamodb_environ(operation, _addressed(request, twin))
        status, _, answer = DynamoHandler.dispatch(BackendRequest(environ), "http://127.0.0.1:4566/", {})
        return int(status), json.loads(answer or "{}")

    for operation, request in DYNAMODB_REQUESTS:
        ours_status, _, ours = _answer_through_wsgi(fast, operation, _addressed(request, TABLE_NAME))
        theirs_status, theirs = answer_by_moto(operation, request)
        assert ours_status == theirs_status, operation
        expected = json.dumps(theirs).replace(twin, TABLE_NAME)
        assert json.dumps(json.loads(ours or b"{}")) == expected, operation


def test_a_parsed_request_handed_to_moto_is_answered_as_through_wsgi(aws):
    """DynamoDbFastPath.answer (the local stack's server hands it the request it parsed)
    answers status, headers and body as the WSGI path does, errors included."""
    from email.message import Message

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    moto_fidelity.apply()
    client = boto3.client("dynamodb")
    twin = f"{TABLE_NAME}-direct"
    create_table(client, twin)
    fast = moto_fidelity.DynamoDbFastPath(DomainDispatcherApplication(create_backend_app))
    varying = {"x-amzn-requestid", "x-amz-crc32", "content-length"}

    for operation, request in DYNAMODB_REQUESTS:
        wsgi_status, wsgi_headers, wsgi_body = _answer_through_wsgi(
            fast, operation, _addressed(request, TABLE_NAME)
        )
        environ = _dynamodb_environ(operation, _addressed(request, twin))
        headers = Message()
        for name, value in environ.items():
            if name.startswith("HTTP_"):
                headers[name[5:].replace("_", "-").title()] = value
        headers["Content-Type"] = environ["CONTENT_TYPE"]
        body = environ["wsgi.input"].read()
        status, direct_headers, direct_body = fast.answer(
            "POST", "/", headers, body, "http://127.0.0.1:4566/"
        )

        assert status == wsgi_status, operation
        assert direct_body.decode().replace(twin, TABLE_NAME) == wsgi_body.decode(), operation
        assert {k.lower(): v for k, v in direct_headers.items() if k.lower() not in varying} == {
            k.lower(): v for k, v in wsgi_headers.items() if k.lower() not in varying
        }, operation


@pytest.mark.parametrize(
    "body",
    [
        # A reading's JSON in a string attribute: "null" inside a string is no null member.
        {"TableName": TABLE_NAME, "Item": {"pk": {"S": "a"}, "data": {"S": '{"humidity": null}'}}},
        {"TableName": TABLE_NAME, "Item": {"pk": {"S": "a"}}, "ConditionExpression": None},
        {"TableName": TABLE_NAME, "Item": {"pk": {"S": "a"}, "m": {"L": [{"S": "x"}]}}, "Expected": None},
    ],
    ids=["null-in-a-string", "null-member", "nested-null-member"],
)
def test_a_request_with_null_in_it_is_read_as_motos_parser_reads_it(monkeypatch, body):
    from moto.dynamodb.responses import DynamoHandler

    moto_fidelity.apply()
    handler = DynamoHandler()
    monkeypatch.setattr(handler, "_get_action", lambda: "PutItem")
    data = json.dumps(body).encode()
    fields = {"data": data, "content_type": "application/x-amz-json-1.0", "method": "POST", "path": "/"}
    request: Any = type("Request", (), {**fields, "values": {}, "headers": {}})
    handler.uri_match = {}

    DynamoHandler.parse_parameters(handler, request)

    assert handler.params == _moto_parse("PutItem", data)


@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=12, unique=True))
@settings(max_examples=30)
def test_a_partitions_string_sort_keys_come_back_in_dynamodbs_order_utf8_bytes(sort_keys):
    from moto import mock_aws

    moto_fidelity.apply()
    with mock_aws():
        client = boto3.client("dynamodb")
        create_table(client, "order")
        for sort_key in sort_keys:
            client.put_item(TableName="order", Item={"pk": {"S": "p"}, "sk": {"S": sort_key}})
        items = client.query(
            TableName="order", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}}
        )["Items"]

    assert [item["sk"]["S"] for item in items] == sorted(sort_keys, key=lambda key: key.encode())


KEY_CONDITIONS: dict[str, Any] = {
    "sk BETWEEN :a AND :b": lambda key, a, b: a <= key <= b,
    "begins_with(sk, :a)": lambda key, a, b: key.startswith(a),
    "sk < :a": lambda key, a, b: key < a,
    "sk <= :a": lambda key, a, b: key <= a,
    "sk > :a": lambda key, a, b: key > a,
    "sk >= :a": lambda key, a, b: key >= a,
    "sk = :a": lambda key, a, b: key == a,
}


@given(
    st.lists(st.text(alphabet="ab#$09é", min_size=1, max_size=4), min_size=1, max_size=15, unique=True),
    st.sampled_from(sorted(KEY_CONDITIONS)),
    st.text(alphabet="ab#$09é", min_size=1, max_size=3),
    st.text(alphabet="ab#$09é", min_size=1, max_size=3),
)
@settings(max_examples=40)
def test_a_key_condition_on_string_sort_keys_keeps_what_dynamodb_keeps(sort_keys, condition, low, high):
    from moto import mock_aws

    moto_fidelity.apply()
    values = {":p": {"S": "p"}, ":a": {"S": low}}
    if ":b" in condition:
        values[":b"] = {"S": high}
    with mock_aws():
        client = boto3.client("dynamodb")
        create_table(client, "range")
        for sort_key in sort_keys:
            client.put_item(TableName="range", Item={"pk": {"S": "p"}, "sk": {"S": sort_key}})
        try:
            items = client.query(
                TableName="range",
                KeyConditionExpression=f"pk = :p AND {condition}",
                ExpressionAttributeValues=values,
            )["Items"]
        except ClientError:  # BETWEEN with low > high: DynamoDB refuses it too
            assert ":b" in condition
            assert low > high
            return

    kept = [key for key in sort_keys if KEY_CONDITIONS[condition](key, low, high)]
    assert [item["sk"]["S"] for item in items] == sorted(kept, key=lambda key: key.encode())
