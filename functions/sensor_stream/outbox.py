"""How ingest stores readings and queues them for the flush, so that every stored reading
is delivered once and never lost (the argument is in docs/data-model.md, "Why the flush
never misses a reading").

1. Each reading is put into its unit's history once (a conditional put; the readings of a
   message go 25 to a request as PartiQL INSERTs). The history item
   records ``queuedIn``: the outbox entry and second this attempt means to queue it in.
2. The new readings go into outbox entries (one per 100 readings), written under the
   arrival second *taken when the write starts*, together with any registry refreshes:
   one BatchWriteItem for a single-reading message.
3. A write that completed later than the flush could have read its second (``s + 1 +
   grace``, less a clock margin) is checked against the flush's ``readThrough``; if the
   flush may have read the second already, the entry is queued again in the current one.
4. A redelivery finds its readings stored. If the first attempt was recent and its
   ``queuedIn`` entry cannot be found (that attempt died between its two writes, or is
   still writing), the readings are queued again. The flush drops readings it delivered
   in the last moments, so a copy from a concurrent attempt reaches nobody twice.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .models import Reading, format_time
from .observability import logger, metrics
from .store import OutboxEntry, OutboxRef, SensorStore
from .store.dynamo import Item
from .store.readings import ENTRY_READINGS

# Late writes queued again before giving up (each is one more BatchWriteItem).
MAX_REQUEUES = 5


@dataclass(frozen=True)
class StoreOutcome:
    stored: int
    duplicates: int


def reading_identity(org_id: str, reading: Reading) -> str:
    """What makes a reading the same reading: its history item's key."""
    return f"{org_id}|{reading.unit_id}|{format_time(reading.recorded_at)}|{reading.id}"


class ReadingQueue:
    """Stores and queues the readings of one message or request."""

    def __init__(self, store: SensorStore) -> None:
        self._store = store
        self._settings = store.settings
        self._clock: Callable[[], float] = lambda: store.clock()

    def store_and_queue(self, org_id: str, device_id: str, readings: list[Reading]) -> StoreOutcome:
        unique = list({reading_identity(org_id, r): r for r in reversed(readings)}.values())[::-1]
        attempt = uuid.uuid4().hex[:12]
        intended = math.floor(self._clock())
        chunks = [unique[i : i + ENTRY_READINGS] for i in range(0, len(unique), ENTRY_READINGS)]
        refs = [OutboxRef(intended, f"{attempt}.{index}") for index in range(len(chunks))]
        jobs = [(reading, ref) for chunk, ref in zip(chunks, refs, strict=True) for reading in chunk]
        existing = self._store.readings.put_histories(org_id, jobs)

        entries: list[OutboxEntry] = []
        duplicates: list[tuple[Reading, Item]] = []
        for ref in refs:
            new = []
            for (reading, job_ref), item in zip(jobs, existing, strict=True):
                if job_ref != ref:
                    continue
                if item is None:
                    new.append(reading)
                else:
                    duplicates.append((reading, item))
            if new:
                entries.append(OutboxEntry(org_id, ref.entry_id, [r.to_json() for r in new]))
        unqueued_refs, recovered = self._unqueued(org_id, duplicates)
        if recovered:
            entries.append(OutboxEntry(org_id, f"{attempt}.r", [r.to_json() for r in recovered]))
            metrics.add_metric(name="ReadingsRecovered", unit="Count", value=len(recovered))
            logger.info("queued readings whose first queueing is missing", extra={"count": len(recovered)})

        registry = self._store.readings.registry_items(org_id, device_id, unique) if entries else []
        if entries:
            self._queue(entries, intended, registry)
        for ref in unqueued_refs:
            # So that a later redelivery does not queue these readings yet again.
            self._store.readings.put_marker_if_absent(org_id, ref, "recovered")
        stored = len(unique) - len(duplicates)
        # Repeats within the message count as duplicates too.
        return StoreOutcome(stored=stored, duplicates=len(readings) - stored)

    def _unqueued(
        self, org_id: str, duplicates: list[tuple[Reading, Item]]
    ) -> tuple[set[OutboxRef], list[Reading]]:
        """Recently stored duplicates whose first attempt's outbox entry is missing."""
        recent_after = self._clock() - self._settings.recovery_window_seconds
        candidates: list[tuple[Reading, OutboxRef]] = []
        for _, item in duplicates:
            if "data" not in item:  # stored, then expired before it could be read back
                continue
            stored = Reading.model_validate_json(item["data"]["S"])
            queued_in = item.get("queuedIn", {}).get("S")
            if queued_in and stored.received_at.timestamp() >= recent_after:
                candidates.append((stored, OutboxRef.decode(queued_in)))
        if not candidates:
            return set(), []
        present = self._store.readings.present(org_id, (ref for _, ref in candidates))
        missing = {ref for _, ref in candidates if ref not in present}
        return missing, [stored for stored, ref in candidates if ref in missing]

    def _queue(self, entries: list[OutboxEntry], intended: int, registry: list[Item]) -> None:
        readings = self._store.readings
        second = math.floor(self._clock())
        items = [readings.entry_item(entry, second) for entry in entries] + registry
        if second != intended:
            # The history items point at `intended`: leave a marker there for redeliveries.
            items += [
                readings.marker_item(entry.org_id, OutboxRef(intended, entry.entry_id), "moved")
                for entry in entries
                if not entry.entry_id.endswith(".r")
            ]
        try:
            readings.write(items)
        except Exception:
            readings.forget_device_writes()
            raise
        for _ in range(MAX_REQUEUES):
            if not self._maybe_read_already(second):
                return
            second = math.floor(self._clock())
            readings.write([readings.entry_item(entry, second) for entry in entries])
            metrics.add_metric(name="OutboxRequeued", unit="Count", value=len(entries))
        logger.error("outbox write still late after re-queueing", extra={"second": second})

    def _maybe_read_already(self, second: int) -> bool:
        """Whether the flush may have read ``second`` before the write that just completed
        landed. Fast path on the clock; else the flush's announced ``readThrough``."""
        deadline = second + 1 + self._settings.flush_grace_seconds - self._settings.flush_clock_margin_seconds
        if self._clock() <= deadline:
            return False
        read_through = self._store.flush_state.read().read_through
        return read_through is not None and read_through >= second
