"""Who the flush posts to: each org's connections, kept between ticks and read again only
when the org's connection list version moved (connect, disconnect, a subscription or
token change, a gone connection), so a busy tick reads one small item per org instead of
the whole list (docs/data-model.md, pattern 15). With fan-out shards, each flusher keeps
the connections of its shard."""

from __future__ import annotations

from collections.abc import Sequence

from .models import ConnectionRecord
from .sharding import shard_of
from .store import SensorStore


class ConnectionRoster:
    def __init__(self, store: SensorStore) -> None:
        self._store = store
        # org -> (list version, its connections as read at that version)
        self._lists: dict[str, tuple[int, list[ConnectionRecord]]] = {}
        # (org, shards) -> (list version, the connections of this flusher's shard)
        self._owned: dict[tuple[str, int], tuple[int, list[ConnectionRecord]]] = {}
        self.lists_read = 0

    def of_orgs(
        self, org_ids: Sequence[str], now: float, shard: int = 0, shards: int = 1
    ) -> list[list[ConnectionRecord]]:
        """Each org's live connections of ``shard`` (of ``shards``), in the order of ``org_ids``."""
        if not org_ids:
            return []
        versions = self._store.connections.list_versions(list(org_ids))
        changed = [org for org in org_ids if org not in self._lists or self._lists[org][0] != versions[org]]
        # The version is read before the list: a change landing in between shows as a newer
        # version next tick, and the list is read again then.
        fresh = self._store.readings.parallel(lambda org: self._store.connections.of_org(org, now), changed)
        for org, records in zip(changed, fresh, strict=True):
            self._lists[org] = (versions[org], records)
        self.lists_read += len(changed)
        # TTL deletes lazily: an expired record is gone whatever the list says.
        return [[r for r in self._of_shard(org, shard, shards) if r.expires_at > now] for org in org_ids]

    def served(self, shard: int, shards: int) -> int:
        """The connections of ``shard`` among the orgs this flusher has delivered to."""
        return sum(len(self._of_shard(org, shard, shards)) for org in self._lists)

    def _of_shard(self, org_id: str, shard: int, shards: int) -> list[ConnectionRecord]:
        version, records = self._lists[org_id]
        if shards == 1 and shard == 0:
            # Only shard 0 owns everyone: a shard beyond the count (a retiring one that
            # learned of a later layout) owns nobody, or its posts would repeat shard 0's.
            return records
        cached = self._owned.get((org_id, shards))
        if cached is None or cached[0] != version:
            mine = [record for record in records if shard_of(record.connection_id, shards) == shard]
            cached = self._owned[(org_id, shards)] = (version, mine)
        return cached[1]
