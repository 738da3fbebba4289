"""Alert evaluation (contract section 5), done by the flush: every stored reading passes
through it once (it delivers it), so the min/max rules are evaluated as readings are
delivered, with no read of alert state per reading; silence and ``forSeconds`` run on
its clock from a heap of deadlines, so a tick's work is proportional to what fell due,
not to the units there are. The flush is one process at a time (its lease); every change
of state is still a conditional write (store/alerts.py), so an alert opens once and
resolves once also across a hand-over, a crash or the rules API acting at the same time.
"""

from __future__ import annotations

import heapq
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .models import AlertResolvedMessage, AlertRule, AlertState, AlertTriggeredMessage
from .observability import logger, metrics
from .packing import PackedReading
from .store import SensorStore

DueKind = Literal["pending", "silence"]
AlertSink = Callable[["AlertEvent"], None]


@dataclass(frozen=True)
class AlertEvent:
    """An alert that opened or resolved, with what decides who may see it."""

    org_id: str
    unit_id: str
    site_id: str | None
    message: AlertTriggeredMessage | AlertResolvedMessage

    def to_line(self) -> str:
        return json.dumps(
            {
                "orgId": self.org_id,
                "unitId": self.unit_id,
                "siteId": self.site_id,
                "message": self.message.to_wire(),
            }
        )

    @classmethod
    def from_line(cls, line: str) -> AlertEvent:
        document = json.loads(line)
        body = document["message"]
        message = (
            AlertTriggeredMessage.model_validate(body)
            if body["type"] == "alert:triggered"
            else AlertResolvedMessage.model_validate(body)
        )
        return cls(document["orgId"], document["unitId"], document.get("siteId"), message)


def describe(
    rule: AlertRule, unit_id: str, alert_type: str, value: float | None, threshold: float | None
) -> str:
    name = rule.name or rule.rule_id
    if rule.metric == "silence":
        return f"{name}: no reading from unit {unit_id} for {rule.max_silence_seconds} s"
    direction = "above" if alert_type.endswith("_high") else "below"
    return f"{name}: {rule.metric} {value:g} {direction} {threshold:g} on unit {unit_id}"


def resolved(state: AlertState, at: datetime) -> AlertResolvedMessage | None:
    if state.alert is None:
        return None
    return AlertResolvedMessage(
        alert_id=state.alert.alert_id, rule_id=state.rule_id, unit_id=state.unit_id, resolved_at=at
    )


@dataclass(order=True)
class _Due:
    at: float
    sequence: int
    org_id: str = field(compare=False)
    rule_id: str = field(compare=False)
    unit_id: str = field(compare=False)
    kind: DueKind = field(compare=False)


class AlertEvaluator:
    """One flush invocation's view of the rules and of the (rule, unit) states."""

    def __init__(self, store: SensorStore, *, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._rules: dict[str, dict[str, AlertRule]] | None = None
        self._rules_version: int | None = None
        # Per org, loaded when first needed: (rule, unit) -> its state.
        self._states: dict[str, dict[tuple[str, str], AlertState]] = {}
        # (org, unit) -> (newest receivedAt in ms, site): where silence counts from.
        self._last_seen: dict[tuple[str, str], tuple[int, str | None]] = {}
        # (org, unit) -> the newest recordedAt evaluated: older readings change no state.
        self._last_recorded: dict[tuple[str, str], str] = {}
        self._due: list[_Due] = []
        self._sequence = 0
        self._primed: set[str] = set()

    # --- rules --------------------------------------------------------------------------

    def sync_rules(self, version: int | None) -> None:
        """Load every org's rules when their version changed (None: a rule changed, version
        not known yet); states of rules that changed are read again (the rules API ended
        what a change or deletion no longer matches)."""
        if self._rules is not None and version is not None and version == self._rules_version:
            return
        rules = self._store.alerts.all_rules()
        if self._rules is not None:
            for org_id, org_rules in self._rules.items():
                if rules.get(org_id) != org_rules:
                    self._states.pop(org_id, None)
                    self._primed.discard(org_id)
        self._rules, self._rules_version = rules, version
        for org_id, org_rules in rules.items():
            if org_id not in self._primed and any(rule.metric == "silence" for rule in org_rules.values()):
                self._prime_silence(org_id, org_rules)

    def _prime_silence(self, org_id: str, org_rules: dict[str, AlertRule]) -> None:
        """Where silence counts from for each unit the org's registry knows (written with
        every message, so exact), before this invocation has seen readings of its own."""
        self._primed.add(org_id)
        for unit in self._store.readings.units_seen(org_id):
            key = (org_id, unit.unit_id)
            seen_ms = int(unit.last_seen_at.timestamp() * 1000)
            if key not in self._last_seen or self._last_seen[key][0] < seen_ms:
                self._last_seen[key] = (seen_ms, unit.site_id)
            for rule in org_rules.values():
                if rule.metric == "silence" and rule.applies_to(unit.unit_id, unit.site_id):
                    self._schedule_silence(org_id, rule, unit.unit_id)

    def _org_rules(self, org_id: str) -> dict[str, AlertRule]:
        return (self._rules or {}).get(org_id, {})

    def _org_states(self, org_id: str) -> dict[tuple[str, str], AlertState]:
        states = self._states.get(org_id)
        if states is None:
            rules = self._org_rules(org_id)
            states = {}
            for state in self._store.alerts.states_of(org_id):
                states[(state.rule_id, state.unit_id)] = state
                rule = rules.get(state.rule_id)
                if state.state == "pending" and rule is not None:
                    self._push(
                        state.since_ms / 1000 + rule.for_seconds,
                        org_id,
                        rule.rule_id,
                        state.unit_id,
                        "pending",
                    )
            self._states[org_id] = states
        return states

    # --- readings -----------------------------------------------------------------------

    def on_readings(self, org_id: str, readings: Iterable[PackedReading]) -> list[AlertEvent]:
        rules = self._org_rules(org_id)
        if not rules:
            return []
        events: list[AlertEvent] = []
        for reading in sorted(readings, key=lambda r: (r.recorded_at, r.reading_id)):
            events.extend(self._evaluate(org_id, rules, reading))
        return events

    def _evaluate(self, org_id: str, rules: dict[str, AlertRule], reading: PackedReading) -> list[AlertEvent]:
        unit_key = (org_id, reading.unit_id)
        received_ms = _epoch_ms(reading.received_at)
        events: list[AlertEvent] = []
        applicable = [rule for rule in rules.values() if rule.applies_to(reading.unit_id, reading.site_id)]
        if not applicable:
            return events
        states = self._org_states(org_id)
        if unit_key not in self._last_seen or self._last_seen[unit_key][0] < received_ms:
            self._last_seen[unit_key] = (received_ms, reading.site_id)
        newest = reading.recorded_at >= self._last_recorded.get(unit_key, "")
        if newest:
            self._last_recorded[unit_key] = reading.recorded_at
        document: dict[str, Any] | None = None
        for rule in applicable:
            state = states.get((rule.rule_id, reading.unit_id))
            if rule.metric == "silence":
                # A reading ends silence; the next deadline counts from it.
                if state is not None:
                    events.extend(self._end(org_id, state))
                self._schedule_silence(org_id, rule, reading.unit_id)
                continue
            if not newest:
                continue  # a late reading of an older time: the state follows newer ones
            document = document if document is not None else json.loads(reading.text)
            if not rule.measured_by(document):
                continue
            breach = rule.breach(document)
            if breach is None:
                if state is not None:
                    events.extend(self._end(org_id, state))
                continue
            if state is not None and state.state == "open":
                continue
            alert_type, value, threshold = breach
            if state is None:
                state = AlertState(
                    rule_id=rule.rule_id,
                    unit_id=reading.unit_id,
                    site_id=reading.site_id,
                    state="pending",
                    since_ms=received_ms,
                    alert_type=alert_type,
                    value=value,
                    threshold=threshold,
                )
                if rule.for_seconds:
                    self._start_pending(org_id, rule, state)
                    continue
            if received_ms - state.since_ms >= rule.for_seconds * 1000:
                events.extend(self._open(org_id, rule, state, alert_type, value, threshold))
        return events

    # --- the clock ----------------------------------------------------------------------

    def due(self, now: float) -> list[AlertEvent]:
        """Pending conditions that have held long enough, and units silent too long."""
        events: list[AlertEvent] = []
        while self._due and self._due[0].at <= now:
            item = heapq.heappop(self._due)
            rule = self._org_rules(item.org_id).get(item.rule_id)
            if rule is None:
                continue
            state = self._org_states(item.org_id).get((item.rule_id, item.unit_id))
            if item.kind == "pending":
                if (
                    state is not None
                    and state.state == "pending"
                    and (state.since_ms / 1000 + rule.for_seconds <= now)
                ):
                    alert_type = state.alert_type or f"{rule.metric}_high"
                    events.extend(
                        self._open(item.org_id, rule, state, alert_type, state.value, state.threshold)
                    )
                continue
            seen = self._last_seen.get((item.org_id, item.unit_id))
            if seen is None or state is not None or rule.max_silence_seconds is None:
                continue
            silent_since = seen[0] / 1000 + rule.max_silence_seconds
            if silent_since + rule.for_seconds > now:
                continue  # a newer reading moved the deadline (its own entry is queued)
            silence = AlertState(
                rule_id=rule.rule_id,
                unit_id=item.unit_id,
                site_id=seen[1],
                state="pending",
                since_ms=int(silent_since * 1000),
            )
            events.extend(self._open(item.org_id, rule, silence, "silence", None, None))
        return events

    def _schedule_silence(self, org_id: str, rule: AlertRule, unit_id: str) -> None:
        seen = self._last_seen.get((org_id, unit_id))
        if seen is not None and rule.max_silence_seconds is not None:
            at = seen[0] / 1000 + rule.max_silence_seconds + rule.for_seconds
            self._push(at, org_id, rule.rule_id, unit_id, "silence")

    def _push(self, at: float, org_id: str, rule_id: str, unit_id: str, kind: DueKind) -> None:
        self._sequence += 1
        heapq.heappush(self._due, _Due(at, self._sequence, org_id, rule_id, unit_id, kind))

    # --- changes of state ---------------------------------------------------------------

    def _start_pending(self, org_id: str, rule: AlertRule, state: AlertState) -> None:
        states = self._org_states(org_id)
        if self._store.alerts.start_pending(org_id, state):
            states[(rule.rule_id, state.unit_id)] = state
            self._push(
                state.since_ms / 1000 + rule.for_seconds, org_id, rule.rule_id, state.unit_id, "pending"
            )
        else:
            self._reload(org_id, rule.rule_id, state.unit_id)

    def _open(
        self,
        org_id: str,
        rule: AlertRule,
        state: AlertState,
        alert_type: str,
        value: float | None,
        threshold: float | None,
    ) -> list[AlertEvent]:
        now = datetime.fromtimestamp(self._clock(), UTC)
        alert = AlertTriggeredMessage(
            alert_id=str(uuid.uuid4()),
            rule_id=rule.rule_id,
            unit_id=state.unit_id,
            alert_type=alert_type,
            severity=rule.severity,
            message=describe(rule, state.unit_id, alert_type, value, threshold),
            value=value,
            threshold=threshold,
            triggered_at=now,
        )
        opened = state.model_copy(update={"state": "open", "alert": alert})
        was_pending = (rule.rule_id, state.unit_id) in self._org_states(org_id)
        if not self._store.alerts.open(
            org_id, opened, pending_since_ms=state.since_ms if was_pending else None
        ):
            self._reload(org_id, rule.rule_id, state.unit_id)
            return []
        self._org_states(org_id)[(rule.rule_id, state.unit_id)] = opened
        metrics.add_metric(name="AlertsOpened", unit="Count", value=1)
        logger.info("alert opened", extra={"org_id": org_id, "alert": alert.to_wire()})
        return [AlertEvent(org_id, state.unit_id, state.site_id, alert)]

    def _end(self, org_id: str, state: AlertState) -> list[AlertEvent]:
        states = self._org_states(org_id)
        ended = self._store.alerts.end(org_id, state)
        states.pop((state.rule_id, state.unit_id), None)
        if not ended:
            self._reload(org_id, state.rule_id, state.unit_id)
            return []
        message = resolved(state, datetime.fromtimestamp(self._clock(), UTC))
        if message is None:
            return []
        metrics.add_metric(name="AlertsResolved", unit="Count", value=1)
        logger.info("alert resolved", extra={"org_id": org_id, "alert": message.to_wire()})
        return [AlertEvent(org_id, state.unit_id, state.site_id, message)]

    def _reload(self, org_id: str, rule_id: str, unit_id: str) -> None:
        """Someone else changed this state (a predecessor, the rules API): take theirs."""
        stored = self._store.alerts.stored(org_id, rule_id, unit_id)
        states = self._org_states(org_id)
        if stored is None:
            states.pop((rule_id, unit_id), None)
        else:
            states[(rule_id, unit_id)] = stored


def _epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
