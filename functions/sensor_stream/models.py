"""One pydantic model per message and record of the contract (../docs/contract.md).

Field names are camelCase on the wire and snake_case in Python; times are UTC and
serialize as ISO-8601 with millisecond precision and a ``Z`` suffix.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

MAX_READINGS_PER_MESSAGE = 100
MAX_READINGS_PER_REQUEST = 500
MAX_FUTURE_SKEW = timedelta(minutes=5)
# Readings recorded earlier come from a device whose clock is unset (it reports 1970).
EARLIEST_RECORDED_AT = datetime(2000, 1, 1, tzinfo=UTC)
# Namespace of reading ids derived from deviceId + unitId + recordedAt.
READING_ID_NAMESPACE = uuid.UUID("6f1d3c1e-8a59-4a53-9a8e-5b1f7e2c9d40")


def format_time(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: sortable as a string."""
    value = value.astimezone(UTC)
    # Written out rather than strftime("%Y"), which drops the leading zeros of years
    # before 1000 on glibc: every string must keep the same shape to sort as its time does.
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


# A date and a time at least: pydantic would also read "1772366400" as epoch seconds (or
# milliseconds, by its size); the contract says ISO strings.
_ISO_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _require_string_time(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE_TIME.match(value):
        raise ValueError("must be an ISO-8601 string such as 2026-01-31T12:00:00Z")
    return value


def _to_utc_millis(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone, e.g. a trailing Z")
    try:
        value = value.astimezone(UTC)
    except OverflowError as error:
        # e.g. 9999-12-31T23:59:59-05:00: a ValueError is what pydantic reports as invalid.
        raise ValueError("is out of range once converted to UTC") from error
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


UtcTime = Annotated[
    datetime,
    BeforeValidator(_require_string_time),
    AfterValidator(_to_utc_millis),
    PlainSerializer(format_time, return_type=str),
]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
# Devices are IoT things: names of up to 128 characters.
DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
ReadingId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
MAX_REQUEST_ID_LENGTH = 128
# Readings in one history answer (~300 bytes each: one message of API Gateway's 128 KB
# in the common case; a larger answer is split, see PartOfAnswer).
MAX_HISTORY_READINGS = 300
RequestId = Annotated[str, StringConstraints(max_length=MAX_REQUEST_ID_LENGTH)]


def utc_now() -> datetime:
    return _to_utc_millis(datetime.now(UTC))


class WireModel(BaseModel):
    """camelCase on the wire; optional fields listed in ``omit_when_none`` vanish when unset."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)
    omit_when_none: ClassVar[frozenset[str]] = frozenset({"requestId", "detail", "details", "replay"})

    @model_serializer(mode="wrap")
    def _omit_empty_optionals(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for key in self.omit_when_none & data.keys():
                if data[key] is None:
                    del data[key]
        return data

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


# --- Devices --------------------------------------------------------------------------


class ReadingIn(WireModel):
    """One reading as a device or gateway sends it (contract section 1)."""

    model_config = ConfigDict(extra="ignore")

    id: ReadingId | None = None
    unit_id: Identifier
    site_id: Identifier | None = None
    temperature: Annotated[float, Field(strict=True, ge=-100, le=150, allow_inf_nan=False)]
    humidity: Annotated[float | None, Field(strict=True, ge=0, le=100, allow_inf_nan=False)] = None
    battery: Annotated[float | None, Field(strict=True, ge=0, le=100, allow_inf_nan=False)] = None
    signal_strength: Annotated[int | None, Field(strict=True, ge=-150, le=0)] = None
    recorded_at: UtcTime

    @field_validator("recorded_at")
    @classmethod
    def _plausible_clock(cls, value: datetime, info: ValidationInfo) -> datetime:
        if value < EARLIEST_RECORDED_AT:
            raise ValueError("is before 2000-01-01; check the device clock")
        now = (info.context or {}).get("now") or utc_now()
        if value > now + MAX_FUTURE_SKEW:
            raise ValueError("is more than 5 minutes in the future")
        return value

    def reading_id(self, device_id: str) -> str:
        """The given id, or one derived so that a redelivered message maps to the same id."""
        if self.id:
            return self.id
        key = f"{device_id}|{self.unit_id}|{format_time(self.recorded_at)}"
        return str(uuid.uuid5(READING_ID_NAMESPACE, key))


Source = Literal["iot", "http"]


class Reading(WireModel):
    """A stored reading, as every client receives it."""

    id: str
    unit_id: str
    site_id: str | None
    device_id: str
    temperature: float
    humidity: float | None
    battery: float | None
    signal_strength: int | None
    recorded_at: UtcTime
    received_at: UtcTime
    source: Source

    @classmethod
    def accept(cls, raw: ReadingIn, *, device_id: str, received_at: datetime, source: Source) -> Reading:
        return cls(
            id=raw.reading_id(device_id),
            unit_id=raw.unit_id,
            site_id=raw.site_id,
            device_id=device_id,
            temperature=raw.temperature,
            humidity=raw.humidity,
            battery=raw.battery,
            signal_strength=raw.signal_strength,
            recorded_at=raw.recorded_at,
            received_at=received_at,
            source=source,
        )


class IotRuleEvent(WireModel):
    """What the IoT topic rules send to Lambda (see iot_rules.py): the raw payload in
    base64 so that malformed JSON still arrives, and the ids taken from the topic."""

    payload: str
    org_id: Identifier
    device_id: DeviceId
    topic: str
    received_at: int  # epoch milliseconds, IoT SQL timestamp()


class CommandMessage(WireModel):
    """Published to ``orgs/{orgId}/devices/{deviceId}/commands``."""

    command_id: str
    command: str
    params: dict[str, Any]
    issued_at: UtcTime


class CommandAckPayload(WireModel):
    """Published by a device to ``orgs/{orgId}/devices/{deviceId}/commands/ack``."""

    model_config = ConfigDict(extra="ignore")

    command_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    status: Literal["ok", "error"]
    detail: Annotated[str, StringConstraints(max_length=1024)] | None = None


# --- HTTP ingest ----------------------------------------------------------------------


class IngestRequest(WireModel):
    """``POST /readings`` body; readings are validated one by one to name each bad one."""

    device_id: DeviceId
    readings: Annotated[list[Any], Field(min_length=1)]


class IngestResult(WireModel):
    accepted: int
    duplicates: int


# --- WebSocket: subscriptions and client requests -------------------------------------


class Subscription(WireModel):
    """What a connection wants: the whole org (``scope: org``) or selected units/sites."""

    scope: Literal["org", "selected"] = "org"
    unit_ids: list[str] = Field(default_factory=list)
    site_ids: list[str] = Field(default_factory=list)

    def matches(self, reading: Reading) -> bool:
        return self.matches_unit(reading.unit_id, reading.site_id)

    def matches_unit(self, unit_id: str, site_id: str | None) -> bool:
        if self.scope == "org":
            return True
        return unit_id in self.unit_ids or (site_id is not None and site_id in self.site_ids)


class Resume(WireModel):
    since: UtcTime


class HelloRequest(WireModel):
    action: Literal["hello"]
    request_id: RequestId | None = None
    resume: Resume | None = None


class SubscribeRequest(WireModel):
    action: Literal["subscribe"]
    request_id: RequestId | None = None
    unit_ids: Annotated[list[Identifier], Field(max_length=500)] | None = None
    site_ids: Annotated[list[Identifier], Field(max_length=500)] | None = None
    scope: Literal["org"] | None = None


class UnsubscribeRequest(WireModel):
    action: Literal["unsubscribe"]
    request_id: RequestId | None = None
    unit_ids: Annotated[list[Identifier], Field(max_length=500)] | None = None
    site_ids: Annotated[list[Identifier], Field(max_length=500)] | None = None


class GetLatestRequest(WireModel):
    action: Literal["getLatest"]
    request_id: RequestId | None = None
    unit_id: Identifier


class GetHistoryRequest(WireModel):
    """A unit's readings recorded in a span (default: the last hour), newest last."""

    action: Literal["getHistory"]
    request_id: RequestId | None = None
    unit_id: Identifier
    since: UtcTime | None = None
    until: UtcTime | None = None
    limit: Annotated[int, Field(strict=True, ge=1, le=MAX_HISTORY_READINGS)] = MAX_HISTORY_READINGS


class PingRequest(WireModel):
    """A heartbeat: keeps the connection from idling out and tells the client it is alive."""

    action: Literal["ping"]
    request_id: RequestId | None = None


class SendCommandRequest(WireModel):
    action: Literal["sendCommand"]
    request_id: RequestId | None = None
    device_id: DeviceId
    command: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    params: dict[str, Any] = Field(default_factory=dict)


class RefreshTokenRequest(WireModel):
    """A fresh token for the same user and org, before the current one expires."""

    action: Literal["refreshToken"]
    request_id: RequestId | None = None
    token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


# A selection holds at most this many ids (its echo must fit in one WebSocket message).
MAX_SELECTED_UNITS = 500
MAX_SELECTED_SITES = 100


# --- WebSocket: server messages -------------------------------------------------------


class ConnectionMessage(WireModel):
    type: Literal["connection"] = "connection"
    request_id: str | None = None
    status: Literal["connected"] = "connected"
    connection_id: str
    server_time: UtcTime
    subscription: Subscription


class SubscribedMessage(WireModel):
    type: Literal["subscribed"] = "subscribed"
    request_id: str | None = None
    subscription: Subscription


class LatestMessage(WireModel):
    type: Literal["latest"] = "latest"
    request_id: str | None = None
    unit_id: str
    reading: Reading | None


class PartOfAnswer(WireModel):
    """An answer too large for one WebSocket message goes out in parts, each with the
    request's ``requestId``, ``part`` (1..parts) and ``parts``; the list of each part is a
    slice of the whole, in order. Small answers carry neither field."""

    part: Annotated[int | None, Field(exclude_if=lambda v: v is None)] = None
    parts: Annotated[int | None, Field(exclude_if=lambda v: v is None)] = None


class HistoryMessage(PartOfAnswer):
    """``readings`` ordered by ``recordedAt``; ``more`` when the span held more than ``limit``
    (the newest ``limit`` are sent: ask again with an earlier ``until`` for the rest)."""

    type: Literal["history"] = "history"
    request_id: str | None = None
    unit_id: str
    readings: list[Reading]
    more: bool


class PongMessage(WireModel):
    type: Literal["pong"] = "pong"
    request_id: str | None = None
    server_time: UtcTime


class TokenRefreshedMessage(WireModel):
    type: Literal["tokenRefreshed"] = "tokenRefreshed"
    request_id: str | None = None
    expires_at: UtcTime


class UnitBatch(WireModel):
    unit_id: str
    readings: list[Reading]
    count: int


class ReadingsBatchMessage(WireModel):
    type: Literal["sensor:readings:batch"] = "sensor:readings:batch"
    server_time: UtcTime
    replay: bool | None = None
    batches: list[UnitBatch]


class CommandAcceptedMessage(WireModel):
    type: Literal["command:accepted"] = "command:accepted"
    request_id: str | None = None
    command_id: str


class CommandAckMessage(WireModel):
    type: Literal["command:ack"] = "command:ack"
    request_id: str | None = None
    command_id: str
    status: Literal["ok", "error"]
    detail: str | None = None


class CommandTimeoutMessage(WireModel):
    type: Literal["command:timeout"] = "command:timeout"
    request_id: str | None = None
    command_id: str


class ErrorBody(WireModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorMessage(WireModel):
    type: Literal["error"] = "error"
    request_id: str | None = None
    error: ErrorBody


# --- Alerts and units (contract section 5) ----------------------------------------------

Metric = Literal["temperature", "humidity", "battery", "signalStrength", "silence"]
THRESHOLD_METRICS: dict[str, str] = {
    "temperature": "temperature",
    "humidity": "humidity",
    "battery": "battery",
    "signalStrength": "signal_strength",
}
Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
AlertType = Literal[
    "temperature_high",
    "temperature_low",
    "humidity_high",
    "humidity_low",
    "battery_high",
    "battery_low",
    "signalStrength_high",
    "signalStrength_low",
    "silence",
]
Bound = Annotated[float | None, Field(strict=True, allow_inf_nan=False, exclude_if=lambda v: v is None)]


def _omitted_when_none(value: Any) -> bool:
    return value is None


class AlertRuleBody(WireModel):
    """``PUT /alert-rules/{ruleId}``: a min/max rule on a metric, or a silence rule, for one
    unit, one site or (neither) every unit of the org."""

    model_config = ConfigDict(extra="forbid")

    metric: Metric
    min: Bound = None
    max: Bound = None
    max_silence_seconds: Annotated[
        int | None, Field(strict=True, ge=10, le=86400, exclude_if=_omitted_when_none)
    ] = None
    unit_id: Annotated[Identifier | None, Field(exclude_if=_omitted_when_none)] = None
    site_id: Annotated[Identifier | None, Field(exclude_if=_omitted_when_none)] = None
    for_seconds: Annotated[int, Field(strict=True, ge=0, le=86400)] = 0
    severity: Severity
    name: Annotated[
        str | None, StringConstraints(min_length=1, max_length=128), Field(exclude_if=_omitted_when_none)
    ] = None

    @model_validator(mode="after")
    def _consistent(self) -> AlertRuleBody:
        if self.unit_id is not None and self.site_id is not None:
            raise ValueError("give unitId or siteId (or neither: every unit of the org), not both")
        if self.metric == "silence":
            if self.max_silence_seconds is None:
                raise ValueError("a silence rule needs maxSilenceSeconds (10-86400)")
            if self.min is not None or self.max is not None:
                raise ValueError("a silence rule takes no min or max")
        else:
            if self.min is None and self.max is None:
                raise ValueError(f"a {self.metric} rule needs min and/or max")
            if self.max_silence_seconds is not None:
                raise ValueError("maxSilenceSeconds belongs to silence rules")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError("min must not be greater than max")
        return self


class AlertRule(AlertRuleBody):
    """A stored rule: the body with its ``ruleId`` (unique within its org)."""

    rule_id: Identifier

    def applies_to(self, unit_id: str, site_id: str | None) -> bool:
        if self.unit_id is not None:
            return unit_id == self.unit_id
        if self.site_id is not None:
            return site_id == self.site_id
        return True

    def measured_by(self, reading: dict[str, Any]) -> bool:
        """Whether a reading (wire form) carries this min/max rule's metric: one that does
        not says nothing about it (a humidity-only reading leaves a temperature alert)."""
        value = reading.get(self.metric) if self.metric != "silence" else None
        return isinstance(value, int | float) and not isinstance(value, bool)

    def breach(self, reading: dict[str, Any]) -> tuple[str, float, float] | None:
        """(alertType, value, threshold) when a reading (wire form) breaks this min/max rule."""
        if not self.measured_by(reading):
            return None
        value = reading[self.metric]
        if self.max is not None and value > self.max:
            return f"{self.metric}_high", float(value), self.max
        if self.min is not None and value < self.min:
            return f"{self.metric}_low", float(value), self.min
        return None


class RulesMessage(WireModel):
    rules: list[AlertRule]


class AlertTriggeredMessage(WireModel):
    type: Literal["alert:triggered"] = "alert:triggered"
    alert_id: str
    rule_id: str
    unit_id: str
    alert_type: AlertType
    severity: Severity
    message: str
    value: Bound = None
    threshold: Bound = None
    triggered_at: UtcTime


class AlertResolvedMessage(WireModel):
    type: Literal["alert:resolved"] = "alert:resolved"
    alert_id: str
    rule_id: str
    unit_id: str
    resolved_at: UtcTime


class GetAlertsRequest(WireModel):
    action: Literal["getAlerts"]
    request_id: RequestId | None = None


class AlertsMessage(PartOfAnswer):
    type: Literal["alerts"] = "alerts"
    request_id: str | None = None
    active: list[AlertTriggeredMessage]


class ListUnitsRequest(WireModel):
    action: Literal["listUnits"]
    request_id: RequestId | None = None


class UnitInfo(WireModel):
    unit_id: str
    site_id: str | None
    last_reading: Reading | None
    last_seen_at: UtcTime | None


class AlertState(WireModel):
    """A (rule, unit) whose condition holds: ``pending`` since ``sinceMs`` (the receivedAt
    of the first reading that broke the rule, or when silence began) until ``forSeconds``
    have passed, then ``open`` with its alert."""

    rule_id: str
    unit_id: str
    site_id: str | None = None
    state: Literal["pending", "open"]
    since_ms: int
    # What broke the rule first (a pending min/max condition opens with it).
    alert_type: AlertType | None = None
    value: float | None = None
    threshold: float | None = None
    alert: AlertTriggeredMessage | None = None


class UnitsMessage(PartOfAnswer):
    type: Literal["units"] = "units"
    request_id: str | None = None
    units: list[UnitInfo]


SessionRequest = (
    HelloRequest
    | SubscribeRequest
    | UnsubscribeRequest
    | GetLatestRequest
    | GetHistoryRequest
    | GetAlertsRequest
    | ListUnitsRequest
    | PingRequest
    | RefreshTokenRequest
)
SESSION_ACTIONS: dict[str, type[SessionRequest]] = {
    "hello": HelloRequest,
    "subscribe": SubscribeRequest,
    "unsubscribe": UnsubscribeRequest,
    "getLatest": GetLatestRequest,
    "getHistory": GetHistoryRequest,
    "getAlerts": GetAlertsRequest,
    "listUnits": ListUnitsRequest,
    "ping": PingRequest,
    "refreshToken": RefreshTokenRequest,
}


# --- DynamoDB records -----------------------------------------------------------------


class ConnectionRecord(WireModel):
    """A live WebSocket connection of an org, with its token scope and subscription.

    ``version`` grows with every change; writes are conditional on it, so concurrent
    requests of one connection never overwrite each other's changes."""

    connection_id: str
    org_id: str
    user_id: str
    # The token's ``units`` claim; None means every unit of the org.
    allowed_units: list[str] | None = None
    subscription: Subscription = Field(default_factory=Subscription)
    connected_at: UtcTime
    expires_at: int  # epoch seconds (DynamoDB TTL)
    # The token's ``exp``: the session ends then unless the client refreshes its token.
    token_expires_at: int | None = None
    version: int = 0

    def wants(self, reading: Reading) -> bool:
        return self.wants_unit(reading.unit_id, reading.site_id)

    @property
    def wants_everything(self) -> bool:
        """Every reading of its org: no unit limit in the token, the whole org subscribed."""
        return self.allowed_units is None and self.subscription.scope == "org"

    def wants_unit(self, unit_id: str, site_id: str | None) -> bool:
        if self.allowed_units is not None and unit_id not in self.allowed_units:
            return False
        return self.subscription.matches_unit(unit_id, site_id)

    def token_expired(self, now: float) -> bool:
        return self.token_expires_at is not None and self.token_expires_at <= now


class ConnectionChange(WireModel):
    """One change of an org's connection list, logged under the list version it made
    (docs/data-model.md, pattern 15): the connection's record as written, or None when
    the connection was removed. The flush applies these instead of reading the list again."""

    connection_id: str
    record: ConnectionRecord | None = None


class UnitSeen(WireModel):
    """A unit of an org as the registry knows it: written with every message that carries
    the unit, so ``lastReading`` and ``lastSeenAt`` (its ``receivedAt``) are the newest
    (by arrival)."""

    unit_id: str
    site_id: str | None
    device_id: str
    last_seen_at: UtcTime
    last_reading: Reading | None = None


class PendingCommand(WireModel):
    command_id: str
    org_id: str
    device_id: str
    connection_id: str
    request_id: str | None = None
    command: str
    issued_at: UtcTime
    due_at: int  # epoch seconds after which the command times out


class QuarantinedMessage(WireModel):
    """An IoT message that could not be stored, kept with its reason for ops."""

    org_id: str
    device_id: str
    topic: str
    payload: str
    reason: str
    details: list[dict[str, Any]] | None = None
    received_at: UtcTime
