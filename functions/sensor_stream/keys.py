"""The key of every item in the one table, in one place (docs/data-model.md, "Items").

Keys are plain strings; ``Key`` is the low-level client's ``{"pk": {"S": ...}, "sk": ...}``.
Times inside keys are ``format_time`` strings (fixed width, so string order is time order)
and seconds are epoch seconds.
"""

from __future__ import annotations

from typing import Any

from .table import PARTITION_KEY, SORT_KEY

Key = dict[str, dict[str, str]]

# The outbox keeps each window of this many arrival seconds in one partition (per shard),
# sorted by second: a tick reads its seconds with one query per shard, and a resume reads
# an org's arrivals over a span with one query per window. Changing it needs a drained outbox.
OUTBOX_WINDOW_SECONDS = 10
# Sort keys of the timers that share a second with the readings that arrived in it. "~"
# sorts after every character of an org id, so a second's timers come after its entries.
DUE_PREFIX = "~due#"
DUE_COMMAND = "cmd"
# A waiting successor's doorbell: the running flusher finds it with the second's readings.
DUE_SUCCESSOR = "successor"
DUE_SESSION_END = "session"
# A changed alert rule's doorbell: the flusher loads the rules again on its next tick.
DUE_RULES = "rules"


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
    return f"OUTBOX#{second // OUTBOX_WINDOW_SECONDS}#{shard}"


def outbox_sk(second: int, org_id: str, entry_id: str) -> str:
    return f"{second}#{org_id}#{entry_id}"


def due_sk(second: int, kind: str, identifier: str) -> str:
    return f"{second}#{DUE_PREFIX}{kind}#{identifier}"


def outbox_seconds(first: int, last: int) -> list[tuple[int, tuple[str, str]]]:
    """The windows holding arrival seconds ``first``..``last`` and, for each, the sort-key
    range of those seconds in it ("#" < "$": every key of second s sorts between them)."""
    ranges = []
    for window in range(first // OUTBOX_WINDOW_SECONDS, last // OUTBOX_WINDOW_SECONDS + 1):
        low = max(first, window * OUTBOX_WINDOW_SECONDS)
        high = min(last, (window + 1) * OUTBOX_WINDOW_SECONDS - 1)
        ranges.append((window * OUTBOX_WINDOW_SECONDS, (f"{low}#", f"{high}$")))
    return ranges


def unit_registry_pk(org_id: str, shard: int) -> str:
    return f"UNITS#{org_id}#{shard}"


def device_key(org_id: str, device_id: str) -> Key:
    return key(f"DEVICE#{org_id}#{device_id}", "DEVICE")


def quarantine_key(org_id: str, day: str, received_at: str, device_id: str, digest: int) -> Key:
    return key(f"QUARANTINE#{org_id}#{day}", f"{received_at}#{device_id}#{digest:08x}")


def quarantine_pk(org_id: str, day: str) -> str:
    return f"QUARANTINE#{org_id}#{day}"


# --- alerts --------------------------------------------------------------------------------

# Every org's rules in one partition (rules change rarely; the flush loads them all).
RULES_PK = "RULES"


def rule_key(org_id: str, rule_id: str) -> Key:
    return key(RULES_PK, f"{org_id}#{rule_id}")


def org_rules_range(org_id: str) -> tuple[str, str]:
    return f"{org_id}#", f"{org_id}#~"


def alerts_pk(org_id: str) -> str:
    return f"ALERT#{org_id}"


def alert_key(org_id: str, rule_id: str, unit_id: str) -> Key:
    return key(alerts_pk(org_id), f"{rule_id}#{unit_id}")


def rule_alerts_range(rule_id: str) -> tuple[str, str]:
    return f"{rule_id}#", f"{rule_id}#~"


# --- connections ---------------------------------------------------------------------------


def connection_key(connection_id: str) -> Key:
    return key(f"CONN#{connection_id}", "CONN")


def org_connections_pk(org_id: str) -> str:
    return f"ORGCONNS#{org_id}"


def org_connection_key(org_id: str, connection_id: str) -> Key:
    return key(org_connections_pk(org_id), connection_id)


# Sorts after every connection id (API Gateway's are base64): the org's connection list
# version, bumped by every change of the list, so the flush re-reads the list only then.
ORG_CONNECTIONS_VERSION_SK = "~version"


def org_connections_version_key(org_id: str) -> Key:
    return key(org_connections_pk(org_id), ORG_CONNECTIONS_VERSION_SK)


def org_connection_changes_pk(org_id: str) -> str:
    return f"ORGCHANGES#{org_id}"


def org_connection_change_sk(version: int) -> str:
    """The change that made an org's connection list ``version`` (zero-padded: sorts by number)."""
    return f"{version:012d}"


def org_connection_change_key(org_id: str, version: int) -> Key:
    return key(org_connection_changes_pk(org_id), org_connection_change_sk(version))


def request_window_key(connection_id: str, window: int) -> Key:
    return key(f"RATE#{connection_id}", str(window))


# --- commands and the flush ----------------------------------------------------------------


def command_key(command_id: str) -> Key:
    return key(f"CMD#{command_id}", "CMD")


FLUSH_STATE_KEY = key("FLUSH", "STATE")
