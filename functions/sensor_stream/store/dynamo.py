"""The one table through the low-level client (thread-safe: flush shares it across its
posting threads): attribute values, conditional writes, queries and batches."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..keys import Key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

Item = dict[str, Any]

BATCH_WRITE_SIZE = 25  # DynamoDB's limit per BatchWriteItem
BATCH_STATEMENTS = 25  # and per BatchExecuteStatement
BATCH_GET_SIZE = 100  # and per BatchGetItem
BATCH_ATTEMPTS = 6


def S(value: str) -> dict[str, str]:
    return {"S": value}


def N(value: float) -> dict[str, str]:
    return {"N": str(int(value)) if float(value).is_integer() else f"{value:.3f}"}


def B(value: bytes) -> dict[str, bytes]:
    return {"B": value}


def string(item: Item, name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value else None


def number(item: Item, name: str) -> float | None:
    value = item.get(name)
    return float(value["N"]) if value else None


class ConditionFailed(Exception):
    """A conditional write found the item in another state; ``item`` is that state
    (``ReturnValuesOnConditionCheckFailure=ALL_OLD``), empty when there is none."""

    def __init__(self, item: Item) -> None:
        super().__init__("condition failed")
        self.item = item


# A statement of a batch that failed for want of capacity or on a server error: sent again.
RETRYABLE_STATEMENT_ERRORS = frozenset(
    {
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
        "InternalServerError",
        "TransactionConflict",
    }
)


# Runs a function over batches and returns its results in order (map, or a thread pool's).
BatchRunner = Callable[[Callable[[Sequence[Item]], list[bool]], list[Sequence[Item]]], list[list[bool]]]


class StatementFailed(Exception):
    """A statement of a PartiQL batch failed for a reason that sending it again cannot fix
    (validation, access, a missing table)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def insert_statement(table_name: str, attribute_names: Sequence[str]) -> str:
    """``INSERT INTO "table" VALUE {'name': ?, ...}``: PartiQL's put-if-absent of one item."""
    fields = ", ".join("'{}': ?".format(name.replace("'", "''")) for name in attribute_names)
    return f'INSERT INTO "{table_name}" VALUE {{{fields}}}'


class Table:
    def __init__(self, client: DynamoDBClient, name: str) -> None:
        self.client = client
        self.name = name

    def _conditional(self, operation: Any, request: dict[str, Any]) -> dict[str, Any]:
        if "ConditionExpression" in request:
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            return operation(TableName=self.name, **request)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConditionFailed(error.response.get("Item", {})) from None  # type: ignore[arg-type]
            raise

    @staticmethod
    def _expressions(
        condition: str | None, values: dict[str, Any] | None, names: dict[str, str] | None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {}
        if condition:
            request["ConditionExpression"] = condition
        if values:
            request["ExpressionAttributeValues"] = values
        if names:
            request["ExpressionAttributeNames"] = names
        return request

    def put(
        self,
        item: Item,
        *,
        condition: str | None = None,
        values: dict[str, Any] | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        """Raises ConditionFailed when ``condition`` does not hold."""
        self._conditional(self.client.put_item, {"Item": item, **self._expressions(condition, values, names)})

    def update(
        self,
        key: Key,
        update: str,
        *,
        condition: str | None = None,
        values: dict[str, Any] | None = None,
        names: dict[str, str] | None = None,
        return_new: bool = False,
    ) -> Item:
        """The item's new attributes when ``return_new``; raises ConditionFailed."""
        request = {"Key": key, "UpdateExpression": update, **self._expressions(condition, values, names)}
        if return_new:
            request["ReturnValues"] = "ALL_NEW"
        return self._conditional(self.client.update_item, request).get("Attributes", {})

    def delete(
        self,
        key: Key,
        *,
        condition: str | None = None,
        values: dict[str, Any] | None = None,
        names: dict[str, str] | None = None,
        return_old: bool = False,
    ) -> Item:
        request = {"Key": key, **self._expressions(condition, values, names)}
        if return_old:
            request["ReturnValues"] = "ALL_OLD"
        return self._conditional(self.client.delete_item, request).get("Attributes", {})

    def get(self, key: Key, *, consistent: bool = False, projection: str | None = None) -> Item | None:
        request: dict[str, Any] = {"TableName": self.name, "Key": key, "ConsistentRead": consistent}
        if projection:
            request["ProjectionExpression"] = projection
        return self.client.get_item(**request).get("Item")

    def query(
        self,
        pk: str,
        *,
        sk_between: tuple[str, str] | None = None,
        consistent: bool = False,
        newest_first: bool = False,
        limit: int | None = None,
        projection: str | None = None,
        only: tuple[str, str] | None = None,
    ) -> Iterator[Item]:
        """Items of one partition in sort-key order (or reversed), up to ``limit``; ``only``
        (attribute, value) keeps the items whose string attribute has that value."""
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": S(pk)},
            "ConsistentRead": consistent,
            "ScanIndexForward": not newest_first,
        }
        if sk_between:
            request["KeyConditionExpression"] += " AND sk BETWEEN :low AND :high"
            request["ExpressionAttributeValues"].update({":low": S(sk_between[0]), ":high": S(sk_between[1])})
        if projection:
            request["ProjectionExpression"] = projection
        if only:
            request["FilterExpression"] = "#only = :only"
            request["ExpressionAttributeNames"] = {"#only": only[0]}
            request["ExpressionAttributeValues"][":only"] = S(only[1])
        remaining = math.inf if limit is None else limit
        while remaining > 0:
            if limit is not None:
                request["Limit"] = int(min(remaining, 1000))
            page = self.client.query(**request)
            for item in page.get("Items", []):
                remaining -= 1
                yield item
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def batch_put(self, items: Sequence[Item]) -> None:
        """Unconditional puts, 25 per request; unprocessed items (throttling) are resent
        with back-off."""

        def send(pending: list[Any]) -> list[Any]:
            response = self.client.batch_write_item(RequestItems={self.name: pending})
            return list(response.get("UnprocessedItems", {}).get(self.name, []))

        for start in range(0, len(items), BATCH_WRITE_SIZE):
            chunk = items[start : start + BATCH_WRITE_SIZE]
            _until_processed(send, [{"PutRequest": {"Item": item}} for item in chunk], "writes")

    def insert_new(
        self,
        items: Sequence[Item],
        *,
        map_batches: Callable[
            [Callable[[Sequence[Item]], list[bool]], list[Sequence[Item]]], list[list[bool]]
        ]
        | None = None,
    ) -> list[bool]:
        """Put each item unless one with its key exists (first write wins, item by item),
        25 to a request: PartiQL INSERTs in a BatchExecuteStatement, each a single-item
        write like a conditional PutItem. True where the item was put, False where its key
        was taken (``DuplicateItem``). Statements throttled or failed on a server error are
        sent again with back-off; any other failure raises StatementFailed. ``map_batches``
        runs the requests (e.g. in parallel); one after the other by default."""
        batches = [
            items[start : start + BATCH_STATEMENTS] for start in range(0, len(items), BATCH_STATEMENTS)
        ]
        run = map_batches or (lambda work, parts: [work(part) for part in parts])
        return [flag for flags in run(self._insert_batch, batches) for flag in flags]

    def _insert_batch(self, items: Sequence[Item]) -> list[bool]:
        outcome: dict[int, bool] = {}

        def send(pending: list[int]) -> list[int]:
            statements: list[Any] = [
                {
                    "Statement": insert_statement(self.name, list(items[i])),
                    "Parameters": list(items[i].values()),
                }
                for i in pending
            ]
            responses = self.client.batch_execute_statement(Statements=statements)["Responses"]
            retry: list[int] = []
            for index, response in zip(pending, responses, strict=True):
                code = response.get("Error", {}).get("Code")
                if code is None or code == "DuplicateItem":
                    outcome[index] = code is None
                elif code in RETRYABLE_STATEMENT_ERRORS:
                    retry.append(index)
                else:
                    raise StatementFailed(str(code), str(response["Error"].get("Message", "")))
            return retry

        _until_processed(send, list(range(len(items))), "inserts")
        return [outcome[index] for index in range(len(items))]

    def batch_get(self, keys: Sequence[Key], *, consistent: bool = False) -> list[Item]:
        """The items that exist among ``keys`` (100 per request), in no particular order."""
        found: list[Item] = []

        def send(pending: list[Any]) -> list[Any]:
            response = self.client.batch_get_item(
                RequestItems={self.name: {"Keys": pending, "ConsistentRead": consistent}}
            )
            responses: dict[str, Any] = dict(response.get("Responses", {}))
            found.extend(responses.get(self.name, []))
            unprocessed: dict[str, Any] = dict(response.get("UnprocessedKeys", {}))
            return list(unprocessed.get(self.name, {}).get("Keys", []))

        for start in range(0, len(keys), BATCH_GET_SIZE):
            _until_processed(send, list(keys[start : start + BATCH_GET_SIZE]), "reads")
        return found


def _until_processed(send: Callable[[list[Any]], list[Any]], pending: list[Any], what: str) -> None:
    """Send, then resend what DynamoDB left unprocessed (throttled) with back-off."""
    for attempt in range(BATCH_ATTEMPTS):
        pending = send(pending)
        if not pending:
            return
        time.sleep(0.05 * 2**attempt)
    raise RuntimeError(f"{len(pending)} {what} still unprocessed after {BATCH_ATTEMPTS} attempts")
