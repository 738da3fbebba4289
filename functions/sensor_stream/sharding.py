"""Fan-out shards: past what one flusher can post in a tick, the connections are split over
N flushers, each delivering every reading to its share of them under its own lease.

A connection's shard is the jump consistent hash (Lamping and Veach, 2014) of its id: the
same for every flusher, and when N grows to N + 1 only 1/(N + 1) of the connections move
(all to the new shard). N is chosen by shard 0 from the shards' load: each one's
connections, or the messages it posted a second where those were more (a connection that
gets several messages a tick weighs as many; docs/scaling.md). A new N applies from an
arrival second ``since`` onwards, so each second goes to each connection from exactly one
shard, before and after the change.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

_JUMP_MULTIPLIER = 2862933555777941757
_MASK_64 = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """The bucket (0..buckets-1) of a 64-bit key: Lamping and Veach's jump consistent hash."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    bucket, jump = -1, 0
    key &= _MASK_64
    while jump < buckets:
        bucket = jump
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK_64
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def connection_key(connection_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(connection_id.encode(), digest_size=8).digest(), "big")


def shard_of(connection_id: str, shards: int) -> int:
    return jump_hash(connection_key(connection_id), shards) if shards > 1 else 0


@dataclass(frozen=True)
class ShardLayout:
    """``shards`` flushers deliver the arrival seconds from ``since`` on; ``previous``
    delivered the seconds before (one change at a time: the next waits until every shard
    has delivered past ``since``)."""

    shards: int = 1
    since: int = 0
    previous: int = 1

    def count_at(self, second: int) -> int:
        return self.shards if second >= self.since else self.previous

    def changes_within(self, first: int, last: int) -> bool:
        """Whether the seconds first..last straddle the change (a tick must not)."""
        return first < self.since <= last and self.shards != self.previous


def desired_shards(load: int, current: int, per_shard: int, most: int) -> int:
    """Shards for ``load`` (connections, or posts a second where more): up at once when one
    would carry more than ``per_shard``, down only when the others would stay below 70 %
    of it, and then to as few as stay below 70 % (no flapping at a boundary)."""
    needed = max(1, min(most, math.ceil(load / per_shard)))
    if needed > current:
        return needed
    if needed < current and load < 0.7 * per_shard * (current - 1):
        # Not down to ``needed``: shards full to the brim would grow again at the next
        # connection. The fewest n with load < 70 % of n * per_shard (< current).
        return max(needed, load * 10 // (7 * per_shard) + 1)
    return current
