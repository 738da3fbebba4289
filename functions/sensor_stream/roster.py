"""Who the flush posts to: each org's connections, kept between ticks and read again only
when the org's connection list version moved (connect, disconnect, a subscription or
token change, a gone connection), so a busy tick reads one small item per org instead of
the whole list (docs/data-model.md, pattern 15)."""

from __future__ import annotations

from collections.abc import Sequence

from .models import ConnectionRecord
from .store import SensorStore


class ConnectionRoster:
    def __init__(self, store: SensorStore) -> None:
        self._store = store
        # org -> (list version, its connections as read at that version)
        self._lists: dict[str, tuple[int, list[ConnectionRecord]]] = {}
        self.lists_read = 0

    def of_orgs(self, org_ids: Sequence[str], now: float) -> list[list[ConnectionRecord]]:
        """Each org's live connections, in the order of ``org_ids``."""
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
        return [[record for record in self._lists[org][1] if record.expires_at > now] for org in org_ids]
