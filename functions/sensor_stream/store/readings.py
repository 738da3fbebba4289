"""Readings: each unit's history, the per-second outbox the flush reads, the unit and
device registries, and quarantined messages (docs/data-model.md)."""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from .. import keys
from ..models import QuarantinedMessage, Reading, UnitSeen, format_time
from ..settings import Settings
from ..table import TTL_ATTRIBUTE
from .dynamo import ConditionFailed, Item, N, S, Table, string

# Requests in parallel: conditional puts of a large HTTP batch, per-unit queries of a resume.
PARALLEL_REQUESTS = 16
# Readings per outbox entry: the largest MQTT message; an entry stays far under 400 KB.
ENTRY_READINGS = 100

T = TypeVar("T")
R = TypeVar("R")


def shard_of(value: str, shards: int) -> int:
    """Stable across processes and Python versions (unlike hash())."""
    return zlib.crc32(value.encode()) % shards


@dataclass(frozen=True)
class OutboxRef:
    """Where an ingest attempt queued (or meant to queue) a reading: the entry's id and the
    second it was first written to. Recorded on the history item so that a redelivery can
    tell whether the first attempt's queueing happened."""

    second: int
    entry_id: str

    def encode(self) -> str:
        return f"{self.second}#{self.entry_id}"

    @classmethod
    def decode(cls, text: str) -> OutboxRef:
        second, _, entry_id = text.partition("#")
        return cls(int(second), entry_id)


@dataclass(frozen=True)
class OutboxEntry:
    """Readings of one org queued together; ``lines`` are their JSON texts, one per line,
    as they are posted (the flush never re-serialises a reading)."""

    org_id: str
    entry_id: str
    lines: list[str]
    # The arrival second it is queued under (known once read back from the outbox).
    second: int | None = None


@dataclass(frozen=True)
class DueTimer:
    kind: str
    identifier: str


@dataclass
class SecondQueue:
    """Everything written under some arrival seconds: reading entries, due timers, and
    alert events queued by others than the flush (JSON lines, see alerting.AlertEvent)."""

    entries: list[OutboxEntry]
    timers: list[DueTimer]
    alert_lines: list[str] = field(default_factory=list)


class ReadingStore:
    def __init__(self, table: Table, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._settings = settings
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        # Device registry items this container wrote, and when: refreshed every few minutes.
        self._devices_written: dict[tuple[str, str], float] = {}

    def parallel(self, work: Callable[[T], R], items: list[T]) -> list[R]:
        if len(items) <= 1:
            return [work(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS, thread_name_prefix="store")
        return list(self._pool.map(work, items))

    # --- history ------------------------------------------------------------------------

    def history_item(self, org_id: str, reading: Reading, queued_in: OutboxRef) -> Item:
        item = {
            **keys.key(
                keys.history_pk(org_id, reading.unit_id),
                keys.history_sk(format_time(reading.recorded_at), reading.id),
            ),
            "data": S(reading.to_json()),
            "queuedIn": S(queued_in.encode()),
        }
        if self._settings.reading_ttl_days:
            item[TTL_ATTRIBUTE] = N(reading.received_at.timestamp() + self._settings.reading_ttl_days * 86400)
        return item

    def put_history(self, org_id: str, reading: Reading, queued_in: OutboxRef) -> Item | None:
        """Store a reading once. None when new; the stored item when it already existed."""
        try:
            self._table.put(
                self.history_item(org_id, reading, queued_in), condition="attribute_not_exists(pk)"
            )
        except ConditionFailed as existing:
            return existing.item
        return None

    def put_histories(self, org_id: str, jobs: list[tuple[Reading, OutboxRef]]) -> list[Item | None]:
        """Store each reading once (distinct readings; first write wins for each): None
        for each that is new, the stored item for each that already existed. One reading
        is one conditional PutItem; more go 25 to a request as PartiQL INSERTs (ten
        readings: one request, not ten), and the few that existed are read back after."""
        if len(jobs) <= 1:
            return [self.put_history(org_id, reading, ref) for reading, ref in jobs]
        items = [self.history_item(org_id, reading, ref) for reading, ref in jobs]
        inserted = self._table.insert_new(items, map_batches=self.parallel)
        taken = [keys.key_values(item) for item, new in zip(items, inserted, strict=True) if not new]
        stored: dict[tuple[str, str], Item] = {}
        if taken:
            found = self._table.batch_get([keys.key(pk, sk) for pk, sk in taken], consistent=True)
            stored = {keys.key_values(item): item for item in found}
        # A taken key whose item is gone again (expired) reads as an empty item.
        return [
            None if new else stored.get(keys.key_values(item), {})
            for item, new in zip(items, inserted, strict=True)
        ]

    def newest(self, org_id: str, unit_id: str) -> Reading | None:
        """The reading with the latest ``recordedAt`` of a unit: the newest history item."""
        for item in self._table.query(keys.history_pk(org_id, unit_id), newest_first=True, limit=1):
            return Reading.model_validate_json(item["data"]["S"])
        return None

    def between(
        self, org_id: str, unit_id: str, since: datetime, until: datetime, limit: int
    ) -> list[Reading]:
        """The newest ``limit`` readings recorded from ``since`` to ``until``, oldest first."""
        items = self._table.query(
            keys.history_pk(org_id, unit_id),
            sk_between=(keys.history_sk(format_time(since), ""), keys.history_sk(format_time(until), "~")),
            newest_first=True,
            limit=limit,
        )
        return [Reading.model_validate_json(item["data"]["S"]) for item in items][::-1]

    # --- outbox -------------------------------------------------------------------------

    def org_shards(self, org_id: str) -> list[int]:
        """The outbox shards an org's entries go to: OUTBOX_ORG_SPREAD of them from the
        org's own, so that a resume reads only those."""
        shards = self._settings.outbox_shards
        first = shard_of(org_id, shards)
        return [(first + k) % shards for k in range(min(self._settings.outbox_org_spread, shards))]

    def outbox_key(self, org_id: str, ref: OutboxRef) -> keys.Key:
        org_shards = self.org_shards(org_id)
        shard = org_shards[shard_of(ref.entry_id, len(org_shards))]
        return keys.key(keys.outbox_pk(ref.second, shard), keys.outbox_sk(ref.second, org_id, ref.entry_id))

    def entry_item(self, entry: OutboxEntry, second: int) -> Item:
        return {
            **self.outbox_key(entry.org_id, OutboxRef(second, entry.entry_id)),
            "orgId": S(entry.org_id),
            "data": S("\n".join(entry.lines)),
            TTL_ATTRIBUTE: N(second + self._settings.outbox_ttl_seconds),
        }

    def marker_item(self, org_id: str, ref: OutboxRef, reason: str) -> Item:
        """A stand-in at a history item's ``queuedIn`` for readings that were queued
        elsewhere; it carries no readings, so the flush skips it."""
        return {
            **self.outbox_key(org_id, ref),
            "orgId": S(org_id),
            "marker": S(reason),
            TTL_ATTRIBUTE: N(ref.second + self._settings.outbox_ttl_seconds),
        }

    def write(self, items: list[Item]) -> None:
        """Unconditional puts (outbox entries, markers, registry refreshes), batched."""
        self._table.batch_put(items)

    def put_marker_if_absent(self, org_id: str, ref: OutboxRef, reason: str) -> None:
        # Conditional, so that it never replaces an entry that landed in the meantime.
        with contextlib.suppress(ConditionFailed):
            self._table.put(self.marker_item(org_id, ref, reason), condition="attribute_not_exists(pk)")

    def present(self, org_id: str, refs: Iterable[OutboxRef]) -> set[OutboxRef]:
        """Which of ``refs`` exist (entry or marker), read strongly consistently."""
        wanted = {keys.key_values(self.outbox_key(org_id, ref)): ref for ref in set(refs)}
        if not wanted:
            return set()
        found = self._table.batch_get([keys.key(pk, sk) for pk, sk in wanted], consistent=True)
        return {wanted[keys.key_values(item)] for item in found}

    def seconds_queue(self, first: int, last: int) -> SecondQueue:
        """Everything written for arrival seconds ``first``..``last``: one query per shard
        and window, in parallel, strongly consistent, so that nothing acknowledged before a
        query is missed. Entries come in second order."""
        partitions = [
            (keys.outbox_pk(window, shard), seconds)
            for window, seconds in keys.outbox_seconds(first, last)
            for shard in range(self._settings.outbox_shards)
        ]
        pages = self.parallel(
            lambda partition: list(self._table.query(partition[0], sk_between=partition[1], consistent=True)),
            partitions,
        )
        queue = SecondQueue(entries=[], timers=[])
        for item in sorted((item for page in pages for item in page), key=lambda item: item["sk"]["S"]):
            _, sort_key = keys.key_values(item)
            second, _, rest = sort_key.partition("#")
            if rest.startswith(keys.DUE_PREFIX):
                kind, _, identifier = rest[len(keys.DUE_PREFIX) :].partition("#")
                queue.timers.append(DueTimer(kind, identifier))
            elif "data" in item:
                org_id = string(item, "orgId") or ""
                entry_id = rest[len(org_id) + 1 :]
                queue.entries.append(
                    OutboxEntry(org_id, entry_id, item["data"]["S"].split("\n"), second=int(second))
                )
            elif "alerts" in item:
                queue.alert_lines.extend(item["alerts"]["S"].split("\n"))
        return queue

    def alert_entry_item(self, org_id: str, entry_id: str, lines: list[str], second: int) -> Item:
        """Alert events for the flush to deliver with the second's readings."""
        ref = OutboxRef(second, entry_id)
        return {
            **self.outbox_key(org_id, ref),
            "orgId": S(org_id),
            "alerts": S("\n".join(lines)),
            TTL_ATTRIBUTE: N(second + self._settings.outbox_ttl_seconds),
        }

    def queue_alerts(self, lines_by_org: Mapping[str, list[str]], second: int, entry_id: str) -> None:
        """Alert events (AlertEvent lines) for every flusher to deliver with the second."""
        self.write(
            [self.alert_entry_item(org_id, entry_id, lines, second) for org_id, lines in lines_by_org.items()]
        )

    def arrivals(self, org_id: str, first: int, last: int) -> Iterator[str]:
        """The JSON texts of the org's readings that arrived in seconds ``first``..``last``
        (from its outbox shards, one query per shard and window, in parallel). The outbox
        keeps OUTBOX_TTL_SECONDS of them."""
        partitions = [
            (keys.outbox_pk(window, shard), seconds)
            for window, seconds in keys.outbox_seconds(first, last)
            for shard in self.org_shards(org_id)
        ]
        pages = self.parallel(
            lambda partition: list(
                self._table.query(
                    partition[0], sk_between=partition[1], consistent=True, only=("orgId", org_id)
                )
            ),
            partitions,
        )
        for page in pages:
            for item in page:
                if "data" in item:
                    yield from item["data"]["S"].split("\n")

    # --- registries ---------------------------------------------------------------------

    def registry_items(self, org_id: str, device_id: str, readings: list[Reading]) -> list[Item]:
        """Registry items to go out with a message's outbox batch: each of its units with the
        message's newest reading of it (so listing the units needs one query), and the device
        when this container has not written it in the last REGISTRY_REFRESH_SECONDS."""
        now = self._clock()
        items: list[Item] = []
        device = (org_id, device_id)
        if self._devices_written.get(device, 0) < now - self._settings.registry_refresh_seconds:
            items.append({**keys.device_key(org_id, device_id), "lastSeenAt": S(format_time_epoch(now))})
            self._devices_written[device] = now
        newest: dict[str, Reading] = {}
        for reading in readings:
            current = newest.get(reading.unit_id)
            if current is None or reading.recorded_at >= current.recorded_at:
                newest[reading.unit_id] = reading
        for unit_id, reading in newest.items():
            seen = UnitSeen(
                unit_id=unit_id,
                site_id=reading.site_id,
                device_id=device_id,
                last_seen_at=reading.received_at,
                last_reading=reading,
            )
            items.append({**self._unit_key(org_id, unit_id), "data": S(seen.to_json())})
        return items

    def forget_device_writes(self) -> None:
        """After a failed batch: write the device again next time."""
        self._devices_written.clear()

    def _unit_key(self, org_id: str, unit_id: str) -> keys.Key:
        shard = shard_of(unit_id, self._settings.unit_registry_shards)
        return keys.key(keys.unit_registry_pk(org_id, shard), unit_id)

    def unit_seen(self, org_id: str, unit_id: str) -> UnitSeen | None:
        item = self._table.get(self._unit_key(org_id, unit_id))
        return UnitSeen.model_validate_json(item["data"]["S"]) if item else None

    def units_seen(self, org_id: str) -> list[UnitSeen]:
        """Every unit of the org that has reported (one query per registry shard, in parallel)."""
        partitions = [keys.unit_registry_pk(org_id, k) for k in range(self._settings.unit_registry_shards)]
        pages = self.parallel(lambda pk: list(self._table.query(pk)), partitions)
        units = [UnitSeen.model_validate_json(item["data"]["S"]) for page in pages for item in page]
        return sorted(units, key=lambda unit: unit.unit_id)

    def device_known(self, org_id: str, device_id: str) -> bool:
        return self._table.get(keys.device_key(org_id, device_id), projection="pk") is not None

    # --- quarantine ---------------------------------------------------------------------

    def quarantine(self, message: QuarantinedMessage) -> None:
        day = message.received_at.strftime("%Y-%m-%d")
        digest = zlib.crc32(message.payload.encode()) & 0xFFFFFFFF
        expires = message.received_at.timestamp() + self._settings.quarantine_ttl_days * 86400
        key = keys.quarantine_key(
            message.org_id, day, format_time(message.received_at), message.device_id, digest
        )
        self._table.put({**key, "data": S(message.to_json()), TTL_ATTRIBUTE: N(expires)})

    def quarantined(self, org_id: str, day: str) -> list[QuarantinedMessage]:
        items = self._table.query(keys.quarantine_pk(org_id, day))
        return [QuarantinedMessage.model_validate_json(item["data"]["S"]) for item in items]


def format_time_epoch(epoch_seconds: float) -> str:
    return format_time(datetime.fromtimestamp(epoch_seconds, UTC))
