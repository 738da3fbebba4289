"""Who the flush posts to: each org's connections, kept between ticks. Each tick reads one
small version item per org; when an org's list version moved (connect, disconnect, a
subscription or token change, a gone connection), the flusher applies the logged changes
that made the new versions instead of reading the list again, and reads the list whole
only when a change is missing from the log (docs/data-model.md, pattern 15). So a
reconnect costs each flusher one small query, not the org's whole list. With fan-out
shards, each flusher keeps the connections of its shard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .models import ConnectionChange, ConnectionRecord
from .sharding import shard_of
from .store import SensorStore

# More changes than this since the last tick: reading the list is as cheap as the log.
MAX_CHANGES_APPLIED = 200


@dataclass
class _Connections:
    """Connections by id at a list version, and the list of them once asked for."""

    version: int
    records: dict[str, ConnectionRecord]
    _listed: list[ConnectionRecord] | None = None

    def listed(self) -> list[ConnectionRecord]:
        if self._listed is None:
            self._listed = list(self.records.values())
        return self._listed


@dataclass
class _OrgList(_Connections):
    # The changes that led from the previous version to this one, for the shard views.
    previous_version: int = -1
    last_changes: list[ConnectionChange] = field(default_factory=list)


def _apply(records: dict[str, ConnectionRecord], change: ConnectionChange) -> None:
    """One change, as the org copy of the table takes it: a record never replaces a newer
    version of itself (concurrent saves log out of order); a removal removes."""
    if change.record is None:
        records.pop(change.connection_id, None)
        return
    current = records.get(change.connection_id)
    if current is None or current.version <= change.record.version:
        records[change.connection_id] = change.record


class ConnectionRoster:
    def __init__(self, store: SensorStore) -> None:
        self._store = store
        self._lists: dict[str, _OrgList] = {}
        # (org, shards) -> the connections of this flusher's shard at a list version
        self._owned: dict[tuple[str, int], _Connections] = {}
        self.lists_read = 0
        self.changes_applied = 0

    def of_orgs(
        self, org_ids: Sequence[str], now: float, shard: int = 0, shards: int = 1
    ) -> list[list[ConnectionRecord]]:
        """Each org's live connections of ``shard`` (of ``shards``), in the order of ``org_ids``."""
        if not org_ids:
            return []
        versions = self._store.connections.list_versions(list(org_ids))
        changed = [
            org for org in org_ids if org not in self._lists or self._lists[org].version != versions[org]
        ]
        # The version is read before the changes or the list: a change landing in between
        # shows as a newer version next tick.
        caught_up = self._store.readings.parallel(
            lambda org: self._catch_up(org, versions[org], now), changed
        )
        # Counted here, not in the threads (``+=`` from threads loses counts).
        self.lists_read += sum(1 for applied in caught_up if applied is None)
        self.changes_applied += sum(applied for applied in caught_up if applied is not None)
        # TTL deletes lazily: an expired record is gone whatever the list says.
        return [[r for r in self._of_shard(org, shard, shards) if r.expires_at > now] for org in org_ids]

    def served(self, shard: int, shards: int) -> int:
        """The connections of ``shard`` among the orgs this flusher has delivered to."""
        return sum(len(self._of_shard(org, shard, shards)) for org in self._lists)

    def _catch_up(self, org_id: str, version: int, now: float) -> int | None:
        """Bring the org to ``version``: the changes applied, or None when the list was read."""
        known = self._lists.get(org_id)
        if known is not None and 0 < version - known.version <= MAX_CHANGES_APPLIED:
            logged = self._store.connections.changes(org_id, known.version, version)
            if len(logged) == version - known.version:
                changes = [logged[number] for number in sorted(logged)]
                records = known.records  # nothing else holds it: the shard views copy
                for change in changes:
                    _apply(records, change)
                self._lists[org_id] = _OrgList(
                    version, records, previous_version=known.version, last_changes=changes
                )
                return len(changes)
        read = self._store.connections.of_org(org_id, now)
        self._lists[org_id] = _OrgList(version, {record.connection_id: record for record in read})
        return None

    def _of_shard(self, org_id: str, shard: int, shards: int) -> list[ConnectionRecord]:
        org = self._lists[org_id]
        if shards == 1 and shard == 0:
            # Only shard 0 owns everyone: a shard beyond the count (a retiring one that
            # learned of a later layout) owns nobody, or its posts would repeat shard 0's.
            return org.listed()
        view = self._owned.get((org_id, shards))
        if view is None or view.version != org.version:
            if view is not None and view.version == org.previous_version:
                # Only the connections that changed are hashed again.
                mine = view.records
                for change in org.last_changes:
                    if shard_of(change.connection_id, shards) == shard:
                        _apply(mine, change)
            else:
                mine = {cid: r for cid, r in org.records.items() if shard_of(cid, shards) == shard}
            view = self._owned[(org_id, shards)] = _Connections(org.version, mine)
        return view.listed()
