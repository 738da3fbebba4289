"""The local stack's TTL sweeper removes what DynamoDB's TTL would remove, and only that."""

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack import moto_fidelity
from devstack.moto_fidelity import all_tables, expire_items
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
        ]

    generic = answers()
    moto_fidelity.apply()
    with_json_writer = answers()

    for answer in (generic[2], with_json_writer[2]):
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
