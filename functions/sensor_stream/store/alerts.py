"""Alert rules (every org's in one partition) and the state of each (rule, unit) whose
condition holds: pending (for ``forSeconds``) or open. Every change of state is a
conditional write on the state it expects, so an alert opens once and resolves once
whoever evaluates (the flush, a successor after a crash, the rules API)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .. import keys
from ..models import AlertRule, AlertState, AlertTriggeredMessage
from ..settings import Settings
from .dynamo import ConditionFailed, N, S, Table
from .flush_state import FLUSH_STATE_KEY
from .timers import timer_item


class AlertStore:
    def __init__(self, table: Table, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._settings = settings
        self._clock = clock

    # --- rules --------------------------------------------------------------------------

    def put_rule(self, org_id: str, rule: AlertRule) -> None:
        self._table.put(
            {**keys.rule_key(org_id, rule.rule_id), "orgId": S(org_id), "data": S(rule.to_json())}
        )
        self._rules_changed(org_id)

    def delete_rule(self, org_id: str, rule_id: str) -> AlertRule | None:
        old = self._table.delete(keys.rule_key(org_id, rule_id), return_old=True)
        if not old:
            return None
        self._rules_changed(org_id)
        return AlertRule.model_validate_json(old["data"]["S"])

    def get_rule(self, org_id: str, rule_id: str) -> AlertRule | None:
        item = self._table.get(keys.rule_key(org_id, rule_id), consistent=True)
        return AlertRule.model_validate_json(item["data"]["S"]) if item else None

    def rules_of(self, org_id: str) -> list[AlertRule]:
        items = self._table.query(keys.RULES_PK, sk_between=keys.org_rules_range(org_id), consistent=True)
        return [AlertRule.model_validate_json(item["data"]["S"]) for item in items]

    def all_rules(self) -> dict[str, dict[str, AlertRule]]:
        """Every org's rules, by org and rule id."""
        rules: dict[str, dict[str, AlertRule]] = {}
        for item in self._table.query(keys.RULES_PK, consistent=True):
            rule = AlertRule.model_validate_json(item["data"]["S"])
            rules.setdefault(item["orgId"]["S"], {})[rule.rule_id] = rule
        return rules

    def _rules_changed(self, org_id: str) -> None:
        # The flush reads the state item when it renews its lease (every few seconds): a
        # version there tells it to load the rules again. A doorbell in this second's
        # outbox makes that the next tick.
        self._table.update(FLUSH_STATE_KEY, "ADD rulesVersion :one", values={":one": N(1)})
        self._table.put(timer_item(self._settings, math.floor(self._clock()) + 1, keys.DUE_RULES, org_id))

    # --- alert states -------------------------------------------------------------------

    def states_of(self, org_id: str) -> list[AlertState]:
        items = self._table.query(keys.alerts_pk(org_id), consistent=True)
        return [AlertState.model_validate_json(item["data"]["S"]) for item in items]

    def states_of_rule(self, org_id: str, rule_id: str) -> list[AlertState]:
        items = self._table.query(
            keys.alerts_pk(org_id), sk_between=keys.rule_alerts_range(rule_id), consistent=True
        )
        return [AlertState.model_validate_json(item["data"]["S"]) for item in items]

    def open_alerts(self, org_id: str) -> list[AlertTriggeredMessage]:
        return [state.alert for state in self.states_of(org_id) if state.alert is not None]

    def start_pending(self, org_id: str, state: AlertState) -> bool:
        """A condition began to hold (it must hold ``forSeconds`` before the alert opens)."""
        return self._put(org_id, state, "attribute_not_exists(pk)", {})

    def open(self, org_id: str, state: AlertState, *, pending_since_ms: int | None) -> bool:
        """Open the alert: from nothing, or from the pending state that began then."""
        if pending_since_ms is None:
            return self._put(org_id, state, "attribute_not_exists(pk)", {})
        return self._put(
            org_id,
            state,
            "#state = :pending AND sinceMs = :since",
            {":pending": S("pending"), ":since": N(pending_since_ms)},
        )

    def end(self, org_id: str, state: AlertState) -> bool:
        """Resolve an open alert, or drop a pending one: only if it is still that one."""
        if state.alert is not None:
            condition, values = "alertId = :id", {":id": S(state.alert.alert_id)}
        else:
            condition, values = (
                "#state = :pending AND sinceMs = :since",
                {
                    ":pending": S("pending"),
                    ":since": N(state.since_ms),
                },
            )
        try:
            self._table.delete(
                keys.alert_key(org_id, state.rule_id, state.unit_id),
                condition=condition,
                values=values,
                names={"#state": "state"} if "#state" in condition else None,
            )
        except ConditionFailed:
            return False
        return True

    def stored(self, org_id: str, rule_id: str, unit_id: str) -> AlertState | None:
        item = self._table.get(keys.alert_key(org_id, rule_id, unit_id), consistent=True)
        return AlertState.model_validate_json(item["data"]["S"]) if item else None

    def _put(self, org_id: str, state: AlertState, condition: str, values: dict[str, object]) -> bool:
        item = {
            **keys.alert_key(org_id, state.rule_id, state.unit_id),
            "state": S(state.state),
            "sinceMs": N(state.since_ms),
            "data": S(state.to_json()),
        }
        if state.alert is not None:
            item["alertId"] = S(state.alert.alert_id)
        try:
            self._table.put(
                item,
                condition=condition,
                values=values or None,
                names={"#state": "state"} if "#state" in condition else None,
            )
        except ConditionFailed:
            return False
        return True
