"""The key of every item in the one table, in one place (docs/data-model.md, "Items").

Keys are plain strings; ``Key`` is the low-level client's ``{"pk": {"S": ...}, "sk": ...}``.
Times inside keys are ``format_time`` strings (fixed width, so string order is time order)
and seconds are epoch seconds.
"""

from __future__ import annotations

from typing import Any

from .table import PARTITION_KEY, SORT_KEY

Key = dict[str, dict[str, str]]

# Sort keys of the timers that share a second's outbox partition with its readings. "~"
# sorts after every character of an org id, so timers come after the entries.
DUE_PREFIX = "~due#"
DUE_COMMAND = "cmd"
DUE_SESSION_END = "session"


def key(pk: str, sk: str) -> Key:
    return {PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}}


def key_values(item: dict[str, Any]) -> tuple[str, str]:
    return item[PARTITION_KEY]["S"], item[SORT_KEY]["S"]


# --- readings ------------------------------------------------------------------------------


def history_pk(org_id: str, unit_id: str) -> str:
    return f"UNIT#{org_id}#{unit_id}"


def history_sk(recorded_at: str, reading_id: str) -> str:
    return f"R#{recorded_at}#{reading_id}"


HISTORY_SK_LOW = "R#"
HISTORY_SK_HIGH = "R#~"


def outbox_pk(second: int, shard: int) -> str:
    return f"OUTBOX#{second}#{shard}"


def outbox_sk(org_id: str, entry_id: str) -> str:
    return f"{org_id}#{entry_id}"


def due_sk(kind: str, identifier: str) -> str:
    return f"{DUE_PREFIX}{kind}#{identifier}"


def unit_registry_pk(org_id: str) -> str:
    return f"UNITS#{org_id}"


def device_key(org_id: str, device_id: str) -> Key:
    return key(f"DEVICE#{org_id}#{device_id}", "DEVICE")


def quarantine_key(org_id: str, day: str, received_at: str, device_id: str, digest: int) -> Key:
    return key(f"QUARANTINE#{org_id}#{day}", f"{received_at}#{device_id}#{digest:08x}")


def quarantine_pk(org_id: str, day: str) -> str:
    return f"QUARANTINE#{org_id}#{day}"


# --- connections ---------------------------------------------------------------------------


def connection_key(connection_id: str) -> Key:
    return key(f"CONN#{connection_id}", "CONN")


def org_connections_pk(org_id: str) -> str:
    return f"ORGCONNS#{org_id}"


def org_connection_key(org_id: str, connection_id: str) -> Key:
    return key(org_connections_pk(org_id), connection_id)


def request_window_key(connection_id: str, window: int) -> Key:
    return key(f"RATE#{connection_id}", str(window))


# --- commands and the flush ----------------------------------------------------------------


def command_key(command_id: str) -> Key:
    return key(f"CMD#{command_id}", "CMD")


FLUSH_STATE_KEY = key("FLUSH", "STATE")
