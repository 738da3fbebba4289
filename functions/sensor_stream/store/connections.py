"""WebSocket connections: a record by connection id (requests) and a copy under the org
(the flush's fan-out), both versioned; the org's list version and a log of its changes
(so the flush applies a change instead of reading the list again); and each
connection's request counter."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from ..keys import (
    DUE_SESSION_END,
    connection_key,
    org_connection_change_key,
    org_connection_change_sk,
    org_connection_changes_pk,
    org_connection_key,
    org_connections_pk,
    org_connections_version_key,
    request_window_key,
)
from ..models import ConnectionChange, ConnectionRecord
from ..settings import Settings
from ..table import PARTITION_KEY, TTL_ATTRIBUTE
from .dynamo import ConditionFailed, Item, N, S, Table
from .timers import timer_item

# How long a change of an org's connection list stays in its log: a flusher that is further
# behind (or new) reads the list whole.
CHANGE_LOG_SECONDS = 3600


class StaleConnection(Exception):
    """The record changed since it was read (another request of the same connection)."""


class _LocalWindows:
    """This container's count of each connection's requests in the current window: a flood
    is refused here without a table write; the table's count holds across containers."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def over_limit(self, connection_id: str, window: int, limit: int) -> bool:
        with self._lock:
            seen_window, count = self._counts.get(connection_id, (window, 0))
            count = count + 1 if seen_window == window else 1
            if len(self._counts) > 10_000:
                self._counts.clear()
            self._counts[connection_id] = (window, count)
            return count > limit


class ConnectionStore:
    def __init__(self, table: Table, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._settings = settings
        self._clock = clock
        self._local_windows = _LocalWindows()

    def _items(self, record: ConnectionRecord) -> tuple[Item, Item]:
        attributes = {
            "data": S(record.to_json()),
            "version": N(record.version),
            TTL_ATTRIBUTE: N(record.expires_at),
        }
        return (
            {**connection_key(record.connection_id), **attributes},
            {**org_connection_key(record.org_id, record.connection_id), **attributes},
        )

    def create(self, record: ConnectionRecord) -> ConnectionRecord:
        """Record a new connection (version 1) and its token's expiry timer. The by-id copy
        goes first, so the org copy never points at an unknown record."""
        record = record.model_copy(update={"version": 1})
        by_id, by_org = self._items(record)
        self._table.put(by_id, condition="attribute_not_exists(pk)")
        self._put_org_copy(by_org, record.version)
        self._list_changed(record.org_id, record.connection_id, record)
        self._schedule_expiry(record)
        return record

    def save(self, record: ConnectionRecord) -> ConnectionRecord:
        """Store a change made to ``record`` as read; raises StaleConnection when another
        request changed (or removed) it since."""
        updated = record.model_copy(update={"version": record.version + 1})
        by_id, by_org = self._items(updated)
        try:
            self._table.put(by_id, condition="version = :read", values={":read": N(record.version)})
        except ConditionFailed as conflict:
            raise StaleConnection(record.connection_id) from conflict
        self._put_org_copy(by_org, updated.version)
        self._list_changed(updated.org_id, updated.connection_id, updated)
        if updated.token_expires_at != record.token_expires_at:
            self._schedule_expiry(updated)
        return updated

    def _put_org_copy(self, item: Item, version: int) -> None:
        # Concurrent saves may land out of order here: an older version never wins.
        with contextlib.suppress(ConditionFailed):
            self._table.put(
                item, condition="attribute_not_exists(pk) OR version < :new", values={":new": N(version)}
            )

    def _list_changed(self, org_id: str, connection_id: str, record: ConnectionRecord | None) -> None:
        """Bump the org's list version and log the change (the connection's record as written,
        None when it was removed) under the new version. After the
        change itself: a flusher that reads the new version then finds the change, in the
        log or in the list (docs/data-model.md, pattern 15). Should the log write fail, the
        version has a gap there, and the flush reads the list whole."""
        bumped = self._table.update(
            org_connections_version_key(org_id), "ADD v :one", values={":one": N(1)}, return_new=True
        )
        self._table.put(
            {
                **org_connection_change_key(org_id, int(bumped["v"]["N"])),
                "data": S(ConnectionChange(connection_id=connection_id, record=record).to_json()),
                TTL_ATTRIBUTE: N(int(self._clock()) + CHANGE_LOG_SECONDS),
            }
        )

    def changes(self, org_id: str, after: int, through: int) -> dict[int, ConnectionChange]:
        """The logged changes that made list versions ``after`` + 1 .. ``through`` (consistent;
        a version whose change is missing or expired is absent)."""
        between = (org_connection_change_sk(after + 1), org_connection_change_sk(through))
        items = self._table.query(org_connection_changes_pk(org_id), sk_between=between, consistent=True)
        return {
            int(item["sk"]["S"]): ConnectionChange.model_validate_json(item["data"]["S"]) for item in items
        }

    def list_versions(self, org_ids: list[str]) -> dict[str, int]:
        """Each org's connection list version (0: never changed), in one read per 100 orgs."""
        items = self._table.batch_get([org_connections_version_key(org) for org in org_ids], consistent=True)
        found = {item[PARTITION_KEY]["S"]: int(item["v"]["N"]) for item in items}
        return {org: found.get(org_connections_pk(org), 0) for org in org_ids}

    def _schedule_expiry(self, record: ConnectionRecord) -> None:
        if record.token_expires_at is not None:
            self._table.put(
                timer_item(self._settings, record.token_expires_at, DUE_SESSION_END, record.connection_id)
            )

    def get(self, connection_id: str, now: float) -> ConnectionRecord | None:
        item = self._table.get(connection_key(connection_id), consistent=True)
        if not item:
            return None
        record = ConnectionRecord.model_validate_json(item["data"]["S"])
        # TTL deletes lazily (up to days later): an expired record is already gone.
        return record if record.expires_at > now else None

    def delete(self, connection_id: str, org_id: str) -> None:
        # The org copy first: flush stops posting to it before the record disappears.
        self._table.delete(org_connection_key(org_id, connection_id))
        self._list_changed(org_id, connection_id, None)
        self._table.delete(connection_key(connection_id))

    def of_org(self, org_id: str, now: float) -> list[ConnectionRecord]:
        """The org's connections (consistent: what a version read before it announced)."""
        records = (
            ConnectionRecord.model_validate_json(item["data"]["S"])
            for item in self._table.query(org_connections_pk(org_id), consistent=True)
            if "data" in item
        )
        return [record for record in records if record.expires_at > now]

    def admit_request(self, connection_id: str, now: float) -> bool:
        """Count one client request against the connection's window; False when the
        connection already used CONNECTION_REQUEST_LIMIT requests in this window."""
        window_seconds = self._settings.connection_request_window_seconds
        window = int(now // window_seconds)
        limit = self._settings.connection_request_limit
        if self._local_windows.over_limit(connection_id, window, limit):
            return False
        try:
            self._table.update(
                request_window_key(connection_id, window),
                f"ADD requests :one SET {TTL_ATTRIBUTE} = :expires",
                condition="attribute_not_exists(requests) OR requests < :limit",
                values={
                    ":one": N(1),
                    ":limit": N(limit),
                    ":expires": N((window + 2) * window_seconds),
                },
            )
        except ConditionFailed:
            return False
        return True
