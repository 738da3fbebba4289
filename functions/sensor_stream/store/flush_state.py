"""The flush's shared state: who delivers (a lease), who takes over next (the successor),
and how far delivery got (docs/data-model.md, "The flush").

- ``readThrough``: the newest arrival second a flusher has started to read. It is raised
  *before* the second's outbox is queried, so an ingest whose outbox write may have landed
  late can tell whether the flush might have missed it.
- ``deliveredThrough``: every post of every second up to here has been settled; a
  flusher that takes over starts right after it.

With several fan-out shards (sensor_stream.sharding) each has such an item and lease:
shard 0's is ``FLUSH/STATE`` (the one ingest reads; it also holds the shard layout and
``readThrough``, past which no shard reads), shard k's ``FLUSH/STATE#k``.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field, replace

from ..keys import DUE_SUCCESSOR, FLUSH_STATE_KEY, Key, key
from ..settings import Settings
from ..sharding import ShardLayout
from ..table import SORT_KEY
from .dynamo import B, ConditionFailed, Item, N, S, Table, number, string
from .timers import timer_item


def state_key(shard: int) -> Key:
    return FLUSH_STATE_KEY if shard == 0 else key("FLUSH", f"STATE#{shard}")


def handover_key(shard: int) -> Key:
    # The digests of recently delivered readings handed from one flusher to the next; apart
    # from the state item, which ingest reads and which must therefore stay small.
    return key("FLUSH", "HANDOVER" if shard == 0 else f"HANDOVER#{shard}")


@dataclass(frozen=True)
class Handover:
    """What a flusher leaves its successor beside the lease (``FLUSH/HANDOVER``)."""

    # 8-byte digests of the readings delivered recently, newest first.
    recent: bytes = b""
    # Connections whose readings from that arrival second on were read but not posted (a
    # flush that was behind): the successor posts them before anything newer.
    lanes: dict[str, int] = field(default_factory=dict)
    # How many of ``recent`` (the first ones) came from the seconds ``lanes`` go back to;
    # the rest were delivered before them.
    newer_digests: int = 0
    # With lanes: the next arrival second to read. ``deliveredThrough`` then stays before
    # the lanes' seconds until the successor delivered them, so that if it crashes first,
    # its own successor delivers them again (at least once) instead of not at all.
    read_from: int | None = None

    @property
    def delivered_before_lanes(self) -> bytes:
        return self.recent[8 * self.newer_digests :]


def doorbell_kind(shard: int) -> str:
    """The timer kind of a waiting successor's doorbell for this shard."""
    return DUE_SUCCESSOR if shard == 0 else f"{DUE_SUCCESSOR}-{shard}"


@dataclass(frozen=True)
class FlushState:
    owner: str | None
    lease_until: float
    successor: str | None
    successor_since: float
    read_through: int | None
    delivered_through: int | None
    # Raised by every change of an alert rule: the flush then loads the rules again.
    rules_version: int = 0
    # Shard 0's item: the fan-out shards and since when.
    layout: ShardLayout = field(default_factory=ShardLayout)
    # This shard's load when it last renewed (sizing): its connections, or the messages it
    # posted a second where those were more.
    load: int = 0

    @classmethod
    def from_item(cls, item: Item) -> FlushState:
        read = number(item, "readThrough")
        delivered = number(item, "deliveredThrough")
        return cls(
            owner=string(item, "leaseOwner"),
            lease_until=number(item, "leaseUntil") or 0.0,
            successor=string(item, "successor"),
            successor_since=number(item, "successorSince") or 0.0,
            read_through=int(read) if read is not None else None,
            delivered_through=int(delivered) if delivered is not None else None,
            rules_version=int(number(item, "rulesVersion") or 0),
            layout=ShardLayout(
                shards=int(number(item, "shards") or 1),
                since=int(number(item, "shardsSince") or 0),
                previous=int(number(item, "previousShards") or 1),
            ),
            load=int(number(item, "shardLoad") or 0),
        )

    def held(self, now: float) -> bool:
        return self.owner is not None and self.lease_until >= now


class FlushStateStore:
    """The state item and lease of one fan-out shard (0: the one ingest reads)."""

    def __init__(self, table: Table, settings: Settings, shard: int = 0) -> None:
        self._table = table
        self._settings = settings
        self.shard = shard
        self._key = state_key(shard)
        self._handover_key = handover_key(shard)

    def for_shard(self, shard: int) -> FlushStateStore:
        return FlushStateStore(self._table, self._settings, shard)

    def read(self) -> FlushState:
        return FlushState.from_item(self._table.get(self._key, consistent=True) or {})

    def read_shards(self, shards: range) -> dict[int, FlushState]:
        """Several shards' states in one request (missing items read as empty states)."""
        items = self._table.batch_get([state_key(k) for k in shards], consistent=True)
        by_sk = {item[SORT_KEY]["S"]: item for item in items}
        return {k: FlushState.from_item(by_sk.get(state_key(k)[SORT_KEY]["S"], {})) for k in shards}

    def change_layout(self, owner: str, layout: ShardLayout) -> bool:
        """Shard 0's holder sets the fan-out shards from ``layout.since`` on."""
        try:
            self._table.update(
                self._key,
                "SET shards = :n, shardsSince = :since, previousShards = :previous",
                condition="leaseOwner = :me",
                values={
                    ":n": N(layout.shards),
                    ":since": N(layout.since),
                    ":previous": N(layout.previous),
                    ":me": S(owner),
                },
            )
        except ConditionFailed:
            return False
        return True

    def acquire(self, owner: str, now: float, lease_seconds: float) -> FlushState | None:
        """Take the lease if it is free, expired or ours; None when someone else holds it."""
        try:
            item = self._table.update(
                self._key,
                "SET leaseOwner = :me, leaseUntil = :until",
                condition="attribute_not_exists(leaseOwner) OR leaseUntil < :now OR leaseOwner = :me",
                values={":me": S(owner), ":until": N(now + lease_seconds), ":now": N(now)},
                return_new=True,
            )
        except ConditionFailed:
            return None
        state = FlushState.from_item(item)
        if state.successor == owner:
            # It waited as the successor and took an expired or released lease instead.
            self._clear_successor(owner)
            state = replace(state, successor=None)
        return state

    def _clear_successor(self, owner: str) -> None:
        with contextlib.suppress(ConditionFailed):
            self._table.update(
                self._key,
                "REMOVE successor, successorSince",
                condition="successor = :me",
                values={":me": S(owner)},
            )

    def renew(
        self,
        owner: str,
        now: float,
        lease_seconds: float,
        *,
        read_through: int | None,
        delivered_through: int | None,
        load: int | None = None,
    ) -> FlushState | None:
        """Renew the lease, announce the newest second about to be read (shard 0), record
        what has been delivered and the shard's load (None: not known yet, the recorded
        figure stands), and learn whether a successor waits. None: lease lost."""
        update = "SET leaseUntil = :until"
        values = {":me": S(owner), ":until": N(now + lease_seconds)}
        if load is not None:
            update += ", shardLoad = :load"
            values[":load"] = N(load)
        if read_through is not None:
            update += ", readThrough = :read"
            values[":read"] = N(read_through)
        if delivered_through is not None:
            update += ", deliveredThrough = :delivered"
            values[":delivered"] = N(delivered_through)
        try:
            item = self._table.update(
                self._key, update, condition="leaseOwner = :me", values=values, return_new=True
            )
        except ConditionFailed:
            return None
        return FlushState.from_item(item)

    def wait_as_successor(self, candidate: str, now: float, stale_after: float) -> bool:
        """Queue up behind the current holder, and ring its doorbell: a timer in the current
        second, which the holder reads with that second's readings (it renews the state
        item only every few seconds). False when another fresh successor waits already
        (this invocation is then not needed)."""
        try:
            self._table.update(
                self._key,
                "SET successor = :me, successorSince = :now",
                condition=("attribute_not_exists(successor) OR successor = :me OR successorSince < :stale"),
                values={":me": S(candidate), ":now": N(now), ":stale": N(now - stale_after)},
            )
        except ConditionFailed:
            return False
        self._table.put(timer_item(self._settings, math.floor(now) + 1, doorbell_kind(self.shard), candidate))
        return True

    def hand_over(
        self,
        owner: str,
        successor: str,
        now: float,
        lease_seconds: float,
        *,
        delivered_through: int | None,
        handover: Handover,
    ) -> bool:
        """Pass the lease to the waiting successor, with the progress it continues from."""
        item = {**self._handover_key, "recent": B(handover.recent), "from": S(owner), "to": S(successor)}
        if handover.lanes:
            # Grouped by second: the connection ids once each (the item stays < 400 KB).
            by_second: dict[int, list[str]] = {}
            for connection_id, second in handover.lanes.items():
                by_second.setdefault(second, []).append(connection_id)
            item["lanes"] = S(json.dumps(by_second, separators=(",", ":")))
            item["newerDigests"] = N(handover.newer_digests)
            if handover.read_from is not None:
                item["readFrom"] = N(handover.read_from)
        self._table.put(item)
        update = "SET leaseOwner = :next, leaseUntil = :until REMOVE successor, successorSince"
        values = {":me": S(owner), ":next": S(successor), ":until": N(now + lease_seconds)}
        if delivered_through is not None:
            update = update.replace(" REMOVE", ", deliveredThrough = :delivered REMOVE")
            values[":delivered"] = N(delivered_through)
        try:
            self._table.update(
                self._key, update, condition="leaseOwner = :me AND successor = :next", values=values
            )
        except ConditionFailed:
            return False
        return True

    def handed_over(self, successor: str) -> Handover:
        """What a predecessor left for ``successor`` (else nothing)."""
        item = self._table.get(self._handover_key, consistent=True) or {}
        if string(item, "to") != successor:
            return Handover()
        by_second: dict[str, list[str]] = json.loads(string(item, "lanes") or "{}")
        return Handover(
            recent=bytes(item["recent"]["B"]) if "recent" in item else b"",
            lanes={cid: int(second) for second, ids in by_second.items() for cid in ids},
            newer_digests=int(number(item, "newerDigests") or 0),
            read_from=int(read_from) if (read_from := number(item, "readFrom")) is not None else None,
        )

    def release(self, owner: str, *, delivered_through: int | None) -> None:
        update = "REMOVE leaseOwner, leaseUntil"
        values = {":me": S(owner)}
        if delivered_through is not None:
            update = f"SET deliveredThrough = :delivered {update}"
            values[":delivered"] = N(delivered_through)
        with contextlib.suppress(ConditionFailed):
            self._table.update(self._key, update, condition="leaseOwner = :me", values=values)
