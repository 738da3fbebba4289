"""Shard 0's other duties when the fan-out is sharded (sensor_stream.sharding): sizing the
shards from the connections they serve, and keeping a flusher running for each.

Each minute the schedule's invocation (shard 0's successor) starts a successor for every
other shard too, so each shard is handed over as shard 0 is. Between those, at each lease
renewal, shard 0 reads the other shards' state items (only when there are others) and
starts a flusher for a shard whose lease expired with nobody waiting (a crash); every
FLUSH_SIZING_SECONDS (the first time one renewal after the invocation took over) it sets
a new layout when the connections call for another number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .observability import logger, metrics
from .settings import Settings
from .sharding import ShardLayout, desired_shards
from .store import FlushState, SensorStore

# Starts the flusher of one shard (an asynchronous invocation in AWS).
WorkerStarter = Callable[[int], None]


class ShardEvent(BaseModel):
    """The event shard 0 invokes the flush with to start another shard's flusher."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    flush_shard: int = Field(alias="flushShard", ge=1)


class LambdaWorkerStarter:
    """An asynchronous invocation of this very function with ``{"flushShard": k}``."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self._client = lambda_client
        self._function_name = function_name

    def __call__(self, shard: int) -> None:
        self._client.invoke(
            FunctionName=self._function_name,
            InvocationType="Event",
            Payload=ShardEvent(flush_shard=shard).model_dump_json(by_alias=True).encode(),
        )


class ShardCoordinator:
    def __init__(
        self,
        store: SensorStore,
        settings: Settings,
        start_worker: WorkerStarter,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._settings = settings
        self._start_worker = start_worker
        self._clock = clock
        # Set at the first renewal (None until then).
        self._sized_at: float | None = None
        self._started_at: dict[int, float] = {}

    def start_successors(self, layout: ShardLayout) -> None:
        """A fresh flusher for every other shard of the layout (each waits as successor)."""
        now = self._clock()
        for shard in range(1, layout.shards):
            self._start(shard, now)

    def on_renew(
        self, owner: str, state: FlushState, own_load: int, delivered_through: int | None, now: float
    ) -> ShardLayout:
        """After shard 0 renewed its lease (``state``): the layout from now on."""
        layout = state.layout
        settings = self._settings
        if self._sized_at is None:
            # An invocation lasts about one sizing period (the schedule's minute): counted
            # from its start, sizing would never come due before the hand-over. The first
            # is one renewal on, once the flushers know their connections.
            self._sized_at = now - settings.flush_sizing_seconds + settings.flush_renew_seconds
        sizing_due = now - self._sized_at >= settings.flush_sizing_seconds
        top = max(layout.shards, layout.previous)
        if top == 1 and not sizing_due:
            return layout  # one shard and nothing to decide: no request
        others = self._store.flush_state.read_shards(range(1, top)) if top > 1 else {}
        if sizing_due:
            self._sized_at = now
            layout = self._resize(owner, state, others, own_load, delivered_through, now)
        self._keep_running(layout, others, now)
        return layout

    def _resize(
        self,
        owner: str,
        state: FlushState,
        others: Mapping[int, FlushState],
        own_load: int,
        delivered_through: int | None,
        now: float,
    ) -> ShardLayout:
        layout = state.layout
        settings = self._settings
        load = own_load + sum(
            other.load for shard, other in others.items() if shard < layout.shards and other.held(now)
        )
        per_shard, most = settings.flush_connections_per_shard, settings.flush_max_shards
        wanted = desired_shards(load, layout.shards, per_shard, most)
        if wanted == layout.shards or state.read_through is None:
            return layout
        progress = [delivered_through, *(other.delivered_through for other in others.values())]
        if layout.since and any(p is None or p < layout.since - 1 for p in progress):
            return layout  # the previous change is still under way
        changed = ShardLayout(shards=wanted, since=state.read_through + 1, previous=layout.shards)
        if not self._store.flush_state.change_layout(owner, changed):
            return layout
        logger.info(
            "fan-out shards changed",
            extra={"load": load, "from": layout.shards, "to": wanted, "since": changed.since},
        )
        metrics.add_metric(name="FlushShardsChanged", unit="Count", value=1)
        return changed

    def _keep_running(self, layout: ShardLayout, others: Mapping[int, FlushState], now: float) -> None:
        """Start a flusher for each shard that should run and has none (lease expired or
        never taken, nobody waiting)."""
        for shard in range(1, max(layout.shards, layout.previous)):
            state = others.get(shard, FlushState.from_item({}))
            retiring = shard >= layout.shards
            if retiring and (state.delivered_through is None or state.delivered_through >= layout.since - 1):
                continue  # done with the seconds before the change (or never had any)
            fresh_successor = now - state.successor_since < self._settings.flush_lease_seconds
            if state.held(now) or (state.successor is not None and fresh_successor):
                continue
            self._start(shard, now)

    def _start(self, shard: int, now: float) -> None:
        if now - self._started_at.get(shard, float("-inf")) < self._settings.flush_lease_seconds / 2:
            return  # started a moment ago: give it time to take the lease
        self._started_at[shard] = now
        try:
            self._start_worker(shard)
        except Exception:
            # Tried again at the next renewal; the shard's readings wait, nothing is lost.
            logger.exception("starting a fan-out shard's flusher failed", extra={"shard": shard})
            metrics.add_metric(name="FlushShardStartFailures", unit="Count", value=1)
