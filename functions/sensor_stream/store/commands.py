"""Commands waiting for their device's acknowledgement (or their timeout)."""

from __future__ import annotations

from typing import Any

from ..keys import DUE_COMMAND, command_key
from ..models import PendingCommand
from ..settings import Settings
from ..table import TTL_ATTRIBUTE
from .dynamo import ConditionFailed, N, S, Table
from .timers import timer_item


class CommandStore:
    def __init__(self, table: Table, settings: Settings) -> None:
        self._table = table
        self._settings = settings

    def put_pending(self, command: PendingCommand) -> None:
        # The timer first: without its command it is skipped; the reverse would never time out.
        self._table.put(timer_item(self._settings, command.due_at, DUE_COMMAND, command.command_id))
        self._table.put(
            {
                **command_key(command.command_id),
                "orgId": S(command.org_id),
                "deviceId": S(command.device_id),
                "data": S(command.to_json()),
                TTL_ATTRIBUTE: N(command.due_at + 3600),
            },
            condition="attribute_not_exists(pk)",
        )

    def complete(self, command_id: str, org_id: str, device_id: str) -> PendingCommand | None:
        """Take the pending command off the books if it is still pending for this device.
        Ack and timeout race for this one conditional delete: exactly one wins."""
        return self._take(
            command_id,
            "attribute_exists(pk) AND orgId = :org AND deviceId = :device",
            {":org": S(org_id), ":device": S(device_id)},
        )

    def expire(self, command_id: str) -> PendingCommand | None:
        return self._take(command_id, "attribute_exists(pk)", None)

    def _take(self, command_id: str, condition: str, values: dict[str, Any] | None) -> PendingCommand | None:
        try:
            old = self._table.delete(
                command_key(command_id), condition=condition, values=values, return_old=True
            )
        except ConditionFailed:
            return None
        return PendingCommand.model_validate_json(old["data"]["S"]) if old else None
