"""Timers the flush fires on its clock: items in shard 0 of a second's outbox partition,
so that the one query that reads a second's readings also finds what falls due in it
(a command's timeout, a token's expiry)."""

from __future__ import annotations

from .. import keys
from ..settings import Settings
from ..table import TTL_ATTRIBUTE
from .dynamo import Item, N


def timer_item(settings: Settings, due_at: int, kind: str, identifier: str) -> Item:
    """A timer that fires at the first tick at or after ``due_at`` (epoch seconds): it is
    filed under the second before, which the flush reads at ``due_at + grace``."""
    second = due_at - 1
    return {
        **keys.key(keys.outbox_pk(second, 0), keys.due_sk(second, kind, identifier)),
        TTL_ATTRIBUTE: N(second + settings.outbox_ttl_seconds),
    }
