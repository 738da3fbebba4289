"""The local stack's TTL sweeper removes what DynamoDB's TTL would remove, and only that."""

import boto3

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
