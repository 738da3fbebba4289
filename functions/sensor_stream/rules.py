"""Alert rules over HTTP (contract section 5): ``PUT``/``GET``/``DELETE /alert-rules``.

A change or deletion ends, at once, the alerts the rule no longer matches: they resolve
for browsers with the next tick (an alert entry in the outbox) and are published for
the people who are not watching. The flush loads the rules again within seconds (the
rules version on its state item)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .alerting import AlertEvent, resolved
from .auth import Principal
from .errors import Forbidden, LimitExceeded, MalformedJson, NotFound, ValidationFailed, describe_errors
from .models import AlertRule, AlertRuleBody, AlertState, Identifier
from .observability import logger
from .protocol import validate
from .store import SensorStore
from .wire import decode_json

_RULE_ID: TypeAdapter[str] = TypeAdapter(Identifier)


def _rule_id(raw: str | None) -> str:
    try:
        return _RULE_ID.validate_python(raw)
    except ValidationError as error:
        raise ValidationFailed(
            "ruleId must be 1-64 characters of [A-Za-z0-9_.:-]", details=describe_errors(error)
        ) from error


def _check_units(principal: Principal, rule: AlertRule | None) -> None:
    """A units-limited token manages only rules of one of its units."""
    if principal.units is None or rule is None:
        return
    if rule.unit_id is None or rule.unit_id not in principal.units:
        raise Forbidden(
            "your token is limited to units: it may only manage rules whose unitId is one of them "
            "(not site or org-wide rules)"
        )


class RuleBook:
    """One request's view of an org's rules."""

    def __init__(
        self,
        store: SensorStore,
        principal: Principal,
        now: datetime,
        publish_alert: Callable[[AlertEvent], None] | None = None,
        *,
        max_rules: int,
    ) -> None:
        self._max_rules = max_rules
        self._store = store
        self._principal = principal
        self._org = principal.org_id
        self._now = now
        self._publish_alert = publish_alert

    def put(self, raw_rule_id: str | None, body: str | bytes | None) -> AlertRule:
        rule_id = _rule_id(raw_rule_id)
        if body is None or not body.strip():
            raise MalformedJson("request body is empty; send the rule as a JSON object")
        document: Any = decode_json(body, "request body")
        if not isinstance(document, dict):
            raise MalformedJson("request body must be a JSON object")
        fields = validate(AlertRuleBody, document, "alert rule")
        rule = AlertRule(rule_id=rule_id, **fields.model_dump())
        _check_units(self._principal, rule)
        existing = self._store.alerts.get_rule(self._org, rule_id)
        _check_units(self._principal, existing)
        if existing is None and len(self._store.alerts.rules_of(self._org)) >= self._max_rules:
            raise LimitExceeded(
                f"your organization has {self._max_rules} alert rules, the most it may have; "
                f"delete one, or use a site or org-wide rule instead of one per unit"
            )
        self._store.alerts.put_rule(self._org, rule)
        if existing is not None and existing != rule:
            self._end_unmatched(rule_id, rule)
        return rule

    def list(self) -> list[AlertRule]:
        rules = self._store.alerts.rules_of(self._org)
        units = self._principal.units
        return [rule for rule in rules if units is None or rule.unit_id in units]

    def delete(self, raw_rule_id: str | None) -> None:
        rule_id = _rule_id(raw_rule_id)
        existing = self._store.alerts.get_rule(self._org, rule_id)
        if existing is None:
            raise NotFound(f"no alert rule {rule_id!r} in your organization")
        _check_units(self._principal, existing)
        self._store.alerts.delete_rule(self._org, rule_id)
        self._end_unmatched(rule_id, None)

    # --- what a change ends -------------------------------------------------------------

    def _end_unmatched(self, rule_id: str, rule: AlertRule | None) -> None:
        events: list[AlertEvent] = []
        for state in self._store.alerts.states_of_rule(self._org, rule_id):
            if rule is not None and self._still_matches(rule, state):
                continue
            if not self._store.alerts.end(self._org, state):
                continue  # the flush changed it meanwhile
            message = resolved(state, self._now)
            if message is not None:
                events.append(AlertEvent(self._org, state.unit_id, state.site_id, message))
        if not events:
            return
        second = math.floor(self._now.timestamp())
        entry_id = f"rules-{rule_id}-{self._now.timestamp():.3f}"
        self._store.readings.queue_alerts({self._org: [e.to_line() for e in events]}, second, entry_id)
        for event in events:
            logger.info("alert resolved by a rule change", extra={"alert": event.message.to_wire()})
            if self._publish_alert is not None:
                self._publish_alert(event)

    def _still_matches(self, rule: AlertRule, state: AlertState) -> bool:
        if not rule.applies_to(state.unit_id, state.site_id):
            return False
        unit = next(
            (u for u in self._store.readings.units_seen(self._org) if u.unit_id == state.unit_id), None
        )
        if rule.metric == "silence":
            if unit is None or rule.max_silence_seconds is None:
                return True
            return (self._now - unit.last_seen_at).total_seconds() >= rule.max_silence_seconds
        if state.alert is not None and state.alert.alert_type == "silence":
            return False
        newest = self._store.readings.newest(self._org, state.unit_id)
        return newest is not None and rule.breach(newest.to_wire()) is not None
