"""DynamoDB access: every item and query of docs/data-model.md, one store per aggregate
behind the ``SensorStore`` facade (readings, connections, commands, the flush's state)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..settings import Settings
from .alerts import AlertStore
from .commands import CommandStore
from .connections import ConnectionStore, StaleConnection
from .dynamo import ConditionFailed, Table
from .flush_state import FlushState, FlushStateStore, Handover
from .readings import DueTimer, OutboxEntry, OutboxRef, ReadingStore, SecondQueue, shard_of

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

__all__ = [
    "ConditionFailed",
    "DueTimer",
    "FlushState",
    "Handover",
    "OutboxEntry",
    "OutboxRef",
    "SecondQueue",
    "SensorStore",
    "StaleConnection",
    "shard_of",
]


class SensorStore:
    def __init__(
        self, client: DynamoDBClient, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.table = Table(client, settings.table_name)
        self.settings = settings
        # Replaceable (tests run the whole system on a fake clock).
        self.clock = clock
        self.readings = ReadingStore(self.table, settings, clock=lambda: self.clock())
        self.connections = ConnectionStore(self.table, settings, clock=lambda: self.clock())
        self.commands = CommandStore(self.table, settings)
        self.flush_state = FlushStateStore(self.table, settings)
        self.alerts = AlertStore(self.table, settings, clock=lambda: self.clock())

    @property
    def client(self) -> DynamoDBClient:
        return self.table.client
