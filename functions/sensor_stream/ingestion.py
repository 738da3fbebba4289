"""Ingest: validate readings, store each once, keep the latest per unit, queue for flush."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from .auth import Principal
from .errors import Forbidden, MalformedJson, PayloadTooLarge, ValidationFailed, describe_errors
from .models import (
    MAX_READINGS_PER_MESSAGE,
    MAX_READINGS_PER_REQUEST,
    IngestRequest,
    IngestResult,
    IotRuleEvent,
    QuarantinedMessage,
    Reading,
    ReadingIn,
    Source,
)
from .observability import logger, metrics
from .outbox import ReadingQueue
from .store import SensorStore
from .wire import decode_json

# HTTP bodies above this are refused before parsing (500 readings fit in ~150 KB).
MAX_HTTP_BODY_BYTES = 1_000_000


@dataclass
class IotIngestOutcome:
    stored: int = 0
    duplicates: int = 0
    quarantined: list[str] = field(default_factory=list)


def validate_readings(raw_items: list[Any], now: datetime) -> tuple[list[ReadingIn], list[dict[str, Any]]]:
    """Each item validated on its own, so every bad one can be named."""
    valid: list[ReadingIn] = []
    problems: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_items):
        try:
            valid.append(ReadingIn.model_validate(raw, context={"now": now}))
        except ValidationError as error:
            problem: dict[str, Any] = {"index": index, "errors": describe_errors(error)}
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                problem["id"] = raw["id"]
            problems.append(problem)
    return valid, problems


def _check_units_allowed(principal: Principal, readings: list[ReadingIn]) -> None:
    """A token limited to units may write readings of those units only."""
    if principal.units is None:
        return
    outside = [(index, r.unit_id) for index, r in enumerate(readings) if r.unit_id not in principal.units]
    if outside:
        units = ", ".join(sorted({unit_id for _, unit_id in outside}))
        raise Forbidden(
            f"your token does not allow units {units}; none were stored",
            details=[{"index": index, "unitId": unit_id} for index, unit_id in outside],
        )


def store_accepted(
    store: SensorStore,
    org_id: str,
    device_id: str,
    readings_in: list[ReadingIn],
    received_at: datetime,
    source: Source,
) -> tuple[int, int]:
    """Store validated readings and queue the new ones for delivery; returns (newly
    stored, duplicates)."""
    readings = [
        Reading.accept(raw, device_id=device_id, received_at=received_at, source=source)
        for raw in readings_in
    ]
    outcome = ReadingQueue(store).store_and_queue(org_id, device_id, readings)
    metrics.add_metric(name="ReadingsStored", unit="Count", value=outcome.stored)
    if outcome.duplicates:
        metrics.add_metric(name="ReadingsDuplicate", unit="Count", value=outcome.duplicates)
    return outcome.stored, outcome.duplicates


# Quarantine partition of rule events whose topic ids are unusable (no org to file them under).
UNROUTABLE_ORG = "_unroutable"


def ingest_iot_event(store: SensorStore, raw_event: dict[str, Any], now: datetime) -> IotIngestOutcome:
    """The IoT rule's event as Lambda receives it. One whose topic ids are invalid is
    quarantined (retrying could never succeed), not raised."""
    try:
        event = IotRuleEvent.model_validate(raw_event)
    except ValidationError as error:
        reason = "topic ids or rule event invalid"
        store.readings.quarantine(
            QuarantinedMessage(
                org_id=UNROUTABLE_ORG,
                device_id=str(raw_event.get("deviceId", ""))[:128],
                topic=str(raw_event.get("topic", "")),
                payload=str(raw_event.get("payload", "")),
                reason=reason,
                details=describe_errors(error),
                received_at=now,
            )
        )
        metrics.add_metric(name="MessagesQuarantined", unit="Count", value=1)
        logger.warning("rule event quarantined", extra={"details": describe_errors(error)})
        return IotIngestOutcome(quarantined=[reason])
    return ingest_iot_message(store, event, now)


def ingest_iot_message(store: SensorStore, event: IotRuleEvent, now: datetime) -> IotIngestOutcome:
    """One MQTT message. Bad content is quarantined with its reason; it never blocks the
    valid readings of the same message. Storage failures raise, so IoT/Lambda retry."""
    outcome = IotIngestOutcome()

    def quarantine(payload: str, reason: str, details: list[dict[str, Any]] | None = None) -> None:
        store.readings.quarantine(
            QuarantinedMessage(
                org_id=event.org_id,
                device_id=event.device_id,
                topic=event.topic,
                payload=payload,
                reason=reason,
                details=details,
                received_at=now,
            )
        )
        outcome.quarantined.append(reason)
        metrics.add_metric(name="MessagesQuarantined", unit="Count", value=1)
        logger.warning(
            "message quarantined", extra={"reason": reason, "topic": event.topic, "details": details}
        )

    try:
        text = base64.b64decode(event.payload, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        quarantine(event.payload, "payload is not UTF-8 text")
        return outcome
    try:
        document = decode_json(text, "payload")
    except MalformedJson as error:
        quarantine(text, error.message)
        return outcome

    if isinstance(document, dict) and "readings" in document:
        items = document["readings"]
        if not isinstance(items, list) or not items:
            quarantine(text, "'readings' must be a non-empty array")
            return outcome
        if len(items) > MAX_READINGS_PER_MESSAGE:
            quarantine(text, f"{len(items)} readings in one message; at most {MAX_READINGS_PER_MESSAGE}")
            return outcome
    elif isinstance(document, dict):
        items = [document]
    else:
        quarantine(text, "payload must be a JSON object")
        return outcome

    valid, problems = validate_readings(items, now)
    for problem in problems:
        quarantine(json.dumps(items[problem["index"]]), "invalid reading", problem["errors"])
    if valid:
        outcome.stored, outcome.duplicates = store_accepted(
            store, event.org_id, event.device_id, valid, now, source="iot"
        )
    return outcome


def ingest_http(
    store: SensorStore, principal: Principal, body: str | bytes | None, now: datetime
) -> IngestResult:
    """``POST /readings``: all or nothing. Any invalid reading stores none of them; ``body``
    is bytes when API Gateway passed it base64-encoded."""
    if body is None or not body.strip():
        raise MalformedJson('request body is empty; send {"deviceId", "readings": [...]}')
    # surrogatepass: a lone surrogate in the text is decode_json's to refuse, not a crash here.
    size = len(body) if isinstance(body, bytes) else len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_HTTP_BODY_BYTES:
        raise PayloadTooLarge(f"request body exceeds {MAX_HTTP_BODY_BYTES} bytes")
    document = decode_json(body, "request body")
    readings = document.get("readings") if isinstance(document, dict) else None
    if isinstance(readings, list) and len(readings) > MAX_READINGS_PER_REQUEST:
        raise PayloadTooLarge(f"{len(readings)} readings in one request; at most {MAX_READINGS_PER_REQUEST}")
    try:
        request = IngestRequest.model_validate(document)
    except ValidationError as error:
        raise ValidationFailed("request body is invalid", details=describe_errors(error)) from error

    valid, problems = validate_readings(request.readings, now)
    if problems:
        raise ValidationFailed(
            f"{len(problems)} of {len(request.readings)} readings are invalid; none were stored",
            details=problems,
        )
    _check_units_allowed(principal, valid)
    accepted, duplicates = store_accepted(
        store, principal.org_id, request.device_id, valid, now, source="http"
    )
    return IngestResult(accepted=accepted, duplicates=duplicates)
