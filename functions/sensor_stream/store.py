"""DynamoDB access: every item layout and query of docs/data-model.md lives here.

One table, string keys ``pk``/``sk``; record bodies are stored as compact JSON in
``data`` (no float/Decimal juggling) next to the few attributes that conditions need.
Only the low-level client is used: it is thread-safe, so flush shares it across its
posting threads.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from .models import (
    ConnectionRecord,
    PendingCommand,
    QuarantinedMessage,
    Reading,
    format_time,
)
from .observability import logger
from .settings import Settings
from .table import TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

BATCH_WRITE_SIZE = 25  # DynamoDB's limit per BatchWriteItem
BATCH_WRITE_ATTEMPTS = 6
WRITE_CONCURRENCY = 8  # parallel conditional puts for a large HTTP batch
FLUSH_STATE_KEY = {"pk": {"S": "FLUSH"}, "sk": {"S": "STATE"}}


class FlushProgress(NamedTuple):
    """Last delivered arrival second, and last second whose command timeouts ran."""

    delivered_through: int | None
    commands_through: int | None


def shard_of(value: str, shards: int) -> int:
    """Stable across processes and Python versions (unlike hash())."""
    return zlib.crc32(value.encode()) % shards


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": str(int(value))}


def _key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"pk": _s(pk), "sk": _s(sk)}


def _is_conditional_failure(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


class SensorStore:
    def __init__(self, client: DynamoDBClient, settings: Settings) -> None:
        self._db = client
        self._table = settings.table_name
        self._settings = settings
        self._pool: ThreadPoolExecutor | None = None

    # --- keys -------------------------------------------------------------------------

    @staticmethod
    def history_key(org_id: str, reading: Reading) -> dict[str, dict[str, str]]:
        return _key(f"UNIT#{org_id}#{reading.unit_id}", f"R#{format_time(reading.recorded_at)}#{reading.id}")

    def latest_pk(self, org_id: str, unit_id: str) -> str:
        return f"LATEST#{org_id}#{shard_of(unit_id, self._settings.latest_shards)}"

    @staticmethod
    def outbox_pk(bucket: int, shard: int) -> str:
        return f"OUTBOX#{bucket}#{shard}"

    # --- readings ---------------------------------------------------------------------

    def store_readings(self, org_id: str, readings: list[Reading], bucket: int) -> set[str]:
        """Store each reading in its unit's history (once: conditional put) and queue it in
        the outbox of arrival second ``bucket``. Returns the ids that were already stored.

        History is written first; a redelivery finds it and queues nothing, unless the
        earlier attempt died before its outbox write landed (checked by key), so a reading
        is delivered once and never lost. No transactions: they cost twice the WCU."""
        # Repeated ids within one call: keep the first.
        unique = list({reading.id: reading for reading in reversed(readings)}.values())[::-1]
        outcomes = list(self._map(lambda r: self._put_history(org_id, r, bucket), unique))
        queue = [r for r, previous in zip(unique, outcomes, strict=True) if previous is None]
        stored_before = [
            (r, previous) for r, previous in zip(unique, outcomes, strict=True) if previous is not None
        ]
        queue += [r for r, previous in stored_before if not self._in_outbox(org_id, r, previous)]
        self._write_outbox(org_id, queue, bucket)
        return {r.id for r, _ in stored_before}

    def _map(self, work: Any, items: list[Any]) -> Iterator[Any]:
        if len(items) <= 1:
            return map(work, items)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=WRITE_CONCURRENCY, thread_name_prefix="store")
        return self._pool.map(work, items)

    def _put_history(self, org_id: str, reading: Reading, bucket: int) -> int | None:
        """None when newly stored; else the outbox second of the earlier store."""
        item = {**self.history_key(org_id, reading), "data": _s(reading.to_json()), "bucket": _n(bucket)}
        if self._settings.reading_ttl_days:
            ttl_seconds = self._settings.reading_ttl_days * 86400
            item[TTL_ATTRIBUTE] = _n(reading.received_at.timestamp() + ttl_seconds)
        try:
            self._db.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise
            previous: dict[str, Any] = error.response.get("Item", {})  # type: ignore[assignment]
            return int(previous.get("bucket", {}).get("N", bucket))
        return None

    def _outbox_key(self, org_id: str, reading: Reading, bucket: int) -> dict[str, dict[str, str]]:
        shard = shard_of(reading.id, self._settings.outbox_shards)
        sort_key = f"{org_id}#{reading.unit_id}#{format_time(reading.recorded_at)}#{reading.id}"
        return _key(self.outbox_pk(bucket, shard), sort_key)

    def _in_outbox(self, org_id: str, reading: Reading, bucket: int) -> bool:
        key = self._outbox_key(org_id, reading, bucket)
        found = self._db.get_item(
            TableName=self._table, Key=key, ConsistentRead=True, ProjectionExpression="pk"
        )
        return "Item" in found

    def _write_outbox(self, org_id: str, readings: list[Reading], bucket: int) -> None:
        expires = _n(bucket + self._settings.outbox_ttl_seconds)
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        **self._outbox_key(org_id, reading, bucket),
                        "orgId": _s(org_id),
                        "data": _s(reading.to_json()),
                        TTL_ATTRIBUTE: expires,
                    }
                }
            }
            for reading in readings
        ]
        for start in range(0, len(requests), BATCH_WRITE_SIZE):
            self._batch_write(requests[start : start + BATCH_WRITE_SIZE])

    def _batch_write(self, requests: list[Any]) -> None:
        for attempt in range(BATCH_WRITE_ATTEMPTS):
            response = self._db.batch_write_item(RequestItems={self._table: requests})
            requests = response.get("UnprocessedItems", {}).get(self._table, [])
            if not requests:
                return
            time.sleep(0.05 * 2**attempt)  # throttled: back off, then resend the rest
        raise RuntimeError(
            f"{len(requests)} outbox writes still unprocessed after {BATCH_WRITE_ATTEMPTS} attempts"
        )

    def update_latest(self, org_id: str, reading: Reading) -> bool:
        """Keep the newest reading per unit; an older or equal ``recordedAt`` never wins."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    **_key(self.latest_pk(org_id, reading.unit_id), reading.unit_id),
                    "recordedAt": _s(format_time(reading.recorded_at)),
                    "data": _s(reading.to_json()),
                },
                ConditionExpression="attribute_not_exists(pk) OR recordedAt < :recorded",
                ExpressionAttributeValues={":recorded": _s(format_time(reading.recorded_at))},
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            raise
        return True

    def update_latest_of_units(self, org_id: str, readings: list[Reading]) -> None:
        """``update_latest`` for the newest reading of each of several units, in parallel."""
        for _ in self._map(lambda reading: self.update_latest(org_id, reading), readings):
            pass

    def get_latest(self, org_id: str, unit_id: str) -> Reading | None:
        item = self._db.get_item(
            TableName=self._table, Key=_key(self.latest_pk(org_id, unit_id), unit_id)
        ).get("Item")
        return Reading.model_validate_json(item["data"]["S"]) if item else None

    def list_units(self, org_id: str) -> list[str]:
        units: list[str] = []
        for shard in range(self._settings.latest_shards):
            for item in self._query(pk=f"LATEST#{org_id}#{shard}", projection="sk"):
                units.append(item["sk"]["S"])
        return sorted(units)

    def readings_since(self, org_id: str, unit_id: str, since: datetime, limit: int) -> list[Reading]:
        """The newest ``limit`` readings of a unit recorded at or after ``since``, oldest first."""
        items = self._query(
            pk=f"UNIT#{org_id}#{unit_id}",
            sk_between=(f"R#{format_time(since)}", "R#~"),
            newest_first=True,
            limit=limit,
        )
        readings = [Reading.model_validate_json(item["data"]["S"]) for item in items]
        return readings[::-1]

    def outbox(self, bucket: int) -> list[tuple[str, Reading]]:
        """Everything that arrived in second ``bucket``: (orgId, reading) pairs.
        Strongly consistent, so nothing written before the query is missed."""
        found = []
        for shard in range(self._settings.outbox_shards):
            for item in self._query(pk=self.outbox_pk(bucket, shard), consistent=True):
                found.append((item["orgId"]["S"], Reading.model_validate_json(item["data"]["S"])))
        return found

    # --- devices ----------------------------------------------------------------------

    def register_device(self, org_id: str, device_id: str, seen_at: datetime) -> None:
        self._db.update_item(
            TableName=self._table,
            Key=_key(f"DEVICE#{org_id}#{device_id}", "DEVICE"),
            UpdateExpression="SET firstSeenAt = if_not_exists(firstSeenAt, :seen), lastSeenAt = :seen",
            ExpressionAttributeValues={":seen": _s(format_time(seen_at))},
        )

    def device_exists(self, org_id: str, device_id: str) -> bool:
        key = _key(f"DEVICE#{org_id}#{device_id}", "DEVICE")
        return "Item" in self._db.get_item(TableName=self._table, Key=key, ProjectionExpression="pk")

    # --- quarantine -------------------------------------------------------------------

    def quarantine(self, message: QuarantinedMessage) -> None:
        day = message.received_at.strftime("%Y-%m-%d")
        digest = zlib.crc32(message.payload.encode()) & 0xFFFFFFFF
        expires = message.received_at.timestamp() + self._settings.quarantine_ttl_days * 86400
        self._db.put_item(
            TableName=self._table,
            Item={
                **_key(
                    f"QUARANTINE#{message.org_id}#{day}",
                    f"{format_time(message.received_at)}#{message.device_id}#{digest:08x}",
                ),
                "data": _s(message.to_json()),
                TTL_ATTRIBUTE: _n(expires),
            },
        )

    def quarantined(self, org_id: str, day: str) -> list[QuarantinedMessage]:
        items = self._query(pk=f"QUARANTINE#{org_id}#{day}")
        return [QuarantinedMessage.model_validate_json(item["data"]["S"]) for item in items]

    # --- connections ------------------------------------------------------------------

    def save_connection(self, record: ConnectionRecord) -> None:
        """Two copies: by connection id (requests) and under the org (flush fan-out).
        The by-id copy goes first, so the org copy never points at an unknown record."""
        data = _s(record.to_json())
        expiry = _n(record.expires_at)
        for pk, sk in (
            (f"CONN#{record.connection_id}", "CONN"),
            (f"ORGCONNS#{record.org_id}", record.connection_id),
        ):
            self._db.put_item(
                TableName=self._table, Item={**_key(pk, sk), "data": data, TTL_ATTRIBUTE: expiry}
            )

    def get_connection(self, connection_id: str, now: float) -> ConnectionRecord | None:
        item = self._db.get_item(
            TableName=self._table, Key=_key(f"CONN#{connection_id}", "CONN"), ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        record = ConnectionRecord.model_validate_json(item["data"]["S"])
        # TTL deletes lazily (up to days later): an expired record is already gone.
        return record if record.expires_at > now else None

    def delete_connection(self, connection_id: str, org_id: str) -> None:
        # The org copy first: flush stops posting to it before the record disappears.
        self._db.delete_item(TableName=self._table, Key=_key(f"ORGCONNS#{org_id}", connection_id))
        self._db.delete_item(TableName=self._table, Key=_key(f"CONN#{connection_id}", "CONN"))

    def connections_of_org(self, org_id: str, now: float) -> list[ConnectionRecord]:
        records = (
            ConnectionRecord.model_validate_json(item["data"]["S"])
            for item in self._query(pk=f"ORGCONNS#{org_id}")
        )
        return [record for record in records if record.expires_at > now]

    # --- pending commands -------------------------------------------------------------

    def put_pending_command(self, command: PendingCommand) -> None:
        # The due entry first: without its command it is skipped; the reverse would never time out.
        expiry = _n(command.due_at + 3600)
        self._db.put_item(
            TableName=self._table,
            Item={**_key(f"CMDDUE#{command.due_at}", command.command_id), TTL_ATTRIBUTE: expiry},
        )
        self._db.put_item(
            TableName=self._table,
            Item={
                **_key(f"CMD#{command.command_id}", "CMD"),
                "orgId": _s(command.org_id),
                "deviceId": _s(command.device_id),
                "data": _s(command.to_json()),
                TTL_ATTRIBUTE: expiry,
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    def complete_command(self, command_id: str, org_id: str, device_id: str) -> PendingCommand | None:
        """Take the pending command off the books if it is still pending for this device.
        Ack and timeout race for this one conditional delete: exactly one wins."""
        return self._take_command(
            command_id,
            condition="attribute_exists(pk) AND orgId = :org AND deviceId = :device",
            values={":org": _s(org_id), ":device": _s(device_id)},
        )

    def expire_command(self, command_id: str) -> PendingCommand | None:
        return self._take_command(command_id, condition="attribute_exists(pk)", values=None)

    def _take_command(
        self, command_id: str, condition: str, values: dict[str, Any] | None
    ) -> PendingCommand | None:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": _key(f"CMD#{command_id}", "CMD"),
            "ConditionExpression": condition,
            "ReturnValues": "ALL_OLD",
        }
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            old = self._db.delete_item(**request).get("Attributes")
        except ClientError as error:
            if _is_conditional_failure(error):
                return None
            raise
        return PendingCommand.model_validate_json(old["data"]["S"]) if old else None

    def commands_due(self, second: int) -> list[str]:
        return [item["sk"]["S"] for item in self._query(pk=f"CMDDUE#{second}", consistent=True)]

    # --- flush lease and progress -----------------------------------------------------

    def acquire_flush_lease(self, owner: str, now: float, duration: float) -> FlushProgress | None:
        """One flusher at a time: take (or renew) the lease if free, expired or already ours.
        Returns the recorded progress, read in the same request; None when someone else holds it."""
        try:
            response = self._db.update_item(
                TableName=self._table,
                Key=FLUSH_STATE_KEY,
                UpdateExpression="SET leaseOwner = :owner, leaseUntil = :until",
                ConditionExpression=(
                    "attribute_not_exists(leaseUntil) OR leaseUntil < :now OR leaseOwner = :owner"
                ),
                ExpressionAttributeValues={
                    ":owner": _s(owner),
                    ":until": {"N": f"{now + duration:.3f}"},
                    ":now": {"N": f"{now:.3f}"},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return None
            raise
        item = response["Attributes"]
        delivered = item.get("deliveredThrough", {}).get("N")
        commands = item.get("commandsThrough", {}).get("N")
        return FlushProgress(int(delivered) if delivered else None, int(commands) if commands else None)

    def release_flush_lease(self, owner: str) -> None:
        try:
            self._db.update_item(
                TableName=self._table,
                Key=FLUSH_STATE_KEY,
                UpdateExpression="REMOVE leaseOwner, leaseUntil",
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeValues={":owner": _s(owner)},
            )
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise

    def record_flush_progress(self, owner: str, delivered_through: int, commands_through: int) -> bool:
        """Advance progress only while still holding the lease (False = lease lost)."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=FLUSH_STATE_KEY,
                UpdateExpression="SET deliveredThrough = :delivered, commandsThrough = :commands",
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeValues={
                    ":owner": _s(owner),
                    ":delivered": _n(delivered_through),
                    ":commands": _n(commands_through),
                },
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            raise
        return True

    # --- query helper -----------------------------------------------------------------

    def _query(
        self,
        *,
        pk: str,
        sk_between: tuple[str, str] | None = None,
        consistent: bool = False,
        newest_first: bool = False,
        limit: int | None = None,
        projection: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s(pk)},
            "ConsistentRead": consistent,
            "ScanIndexForward": not newest_first,
        }
        if sk_between:
            request["KeyConditionExpression"] += " AND sk BETWEEN :low AND :high"
            request["ExpressionAttributeValues"].update(
                {":low": _s(sk_between[0]), ":high": _s(sk_between[1])}
            )
        if projection:
            request["ProjectionExpression"] = projection
        remaining = math.inf if limit is None else limit
        while remaining > 0:
            if limit is not None:
                request["Limit"] = int(min(remaining, 1000))
            page = self._db.query(**request)
            items: Iterable[dict[str, Any]] = page.get("Items", [])
            for item in items:
                remaining -= 1
                yield item
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        logger.debug("query stopped at its limit", extra={"pk": pk, "limit": limit})
