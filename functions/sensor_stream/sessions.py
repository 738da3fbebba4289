"""WebSocket sessions: connect, disconnect and the client's requests (all but sendCommand)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from .auth import TokenVerifier, token_from_subprotocols
from .catalog import CLIENT_ACTIONS
from .errors import Conflict, Forbidden, LimitExceeded, Unauthorized, UnknownAction, ValidationFailed
from .models import (
    MAX_SELECTED_SITES,
    MAX_SELECTED_UNITS,
    SESSION_ACTIONS,
    AlertsMessage,
    ConnectionMessage,
    ConnectionRecord,
    GetAlertsRequest,
    GetHistoryRequest,
    GetLatestRequest,
    HelloRequest,
    HistoryMessage,
    LatestMessage,
    ListUnitsRequest,
    PingRequest,
    PongMessage,
    RefreshTokenRequest,
    SessionRequest,
    SubscribedMessage,
    SubscribeRequest,
    Subscription,
    TokenRefreshedMessage,
    UnitInfo,
    UnitsMessage,
    UnsubscribeRequest,
    WireModel,
    format_time,
)
from .observability import logger, metrics
from .packing import PackedReading, pack_batches
from .protocol import RequestContext, in_parts, require_live_token, validate
from .settings import Settings
from .store import SensorStore, StaleConnection

# Attempts at a change of the connection record that races with another request.
MAX_RECORD_ATTEMPTS = 5


def open_connection(
    store: SensorStore,
    verifier: TokenVerifier,
    settings: Settings,
    connection_id: str,
    subprotocol_header: str | None,
    now: datetime,
) -> ConnectionRecord:
    """``$connect``: authenticate and record the connection (nothing can be posted yet);
    Unauthorized when the token is refused."""
    try:
        principal = verifier.verify(token_from_subprotocols(subprotocol_header))
    except Unauthorized as error:
        logger.info("connect refused", extra={"connection_id": connection_id, "reason": error.message})
        raise
    record = store.connections.create(
        ConnectionRecord(
            connection_id=connection_id,
            org_id=principal.org_id,
            user_id=principal.user_id,
            allowed_units=principal.units,
            subscription=Subscription(scope="org"),
            connected_at=now,
            expires_at=int(now.timestamp()) + settings.connection_ttl_seconds,
            token_expires_at=principal.expires_at,
        )
    )
    metrics.add_metric(name="Connections", unit="Count", value=1)
    logger.info("connected", extra={"connection_id": connection_id, "org_id": record.org_id})
    return record


def close_connection(store: SensorStore, connection_id: str, now: datetime) -> None:
    record = store.connections.get(connection_id, now.timestamp())
    if record:
        store.connections.delete(connection_id, record.org_id)


def answer_session_request(
    context: RequestContext, record: ConnectionRecord, document: dict[str, Any]
) -> list[WireModel | bytes]:
    action = document.get("action")
    model = SESSION_ACTIONS.get(action) if isinstance(action, str) else None
    if model is None:
        shown = repr(action) if len(repr(action)) <= 64 else repr(action)[:64] + "..."
        raise UnknownAction(f"unknown action {shown}; expected one of {', '.join(CLIENT_ACTIONS)}")
    request: SessionRequest = validate(model, document, f"'{action}' request")
    if isinstance(request, RefreshTokenRequest):
        return [refresh_token(context, record, request)]
    require_live_token(record, context.now)
    match request:
        case HelloRequest():
            return hello(context, record, request)
        case SubscribeRequest():
            record = _change_subscription(context, record, lambda current: subscribe(current, request))
            return [SubscribedMessage(request_id=request.request_id, subscription=record.subscription)]
        case UnsubscribeRequest():
            record = _change_subscription(context, record, lambda current: unsubscribe(current, request))
            return [SubscribedMessage(request_id=request.request_id, subscription=record.subscription)]
        case GetLatestRequest():
            return [get_latest(context, record, request)]
        case GetHistoryRequest():
            return [*in_parts(get_history(context, record, request), "readings")]
        case GetAlertsRequest():
            return [*in_parts(get_alerts(context, record, request), "active")]
        case ListUnitsRequest():
            return [*in_parts(list_units(context, record, request), "units")]
        case PingRequest():
            return [PongMessage(request_id=request.request_id, server_time=context.now)]
    raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover


# --- hello and resume ---------------------------------------------------------------------


def hello(
    context: RequestContext, record: ConnectionRecord, request: HelloRequest
) -> list[WireModel | bytes]:
    messages: list[WireModel | bytes] = [
        ConnectionMessage(
            request_id=request.request_id,
            connection_id=record.connection_id,
            server_time=context.now,
            subscription=record.subscription,
        )
    ]
    if request.resume:
        missed = replay_readings(context, record, request.resume.since)
        messages.extend(pack_batches(missed, server_time=context.now, replay=True))
    return messages


def replay_readings(
    context: RequestContext, record: ConnectionRecord, since: datetime
) -> list[PackedReading]:
    """Readings that **arrived** (``receivedAt``) after ``since`` that this connection may
    see, at most RESUME_MAX_SECONDS back, the newest RESUME_MAX_READINGS of them: what the
    connection would have been sent had it stayed, late readings of old times included.
    They come from the outbox: one query per window of arrival seconds."""
    settings = context.settings
    cap = settings.resume_max_readings
    since = max(since, context.now - timedelta(seconds=settings.resume_max_seconds))
    if not cap or since >= context.now:
        return []
    since_text = format_time(since)
    found: dict[tuple[str, str, str], PackedReading] = {}
    for text in context.store.readings.arrivals(
        record.org_id, math.floor(since.timestamp()), math.floor(context.now.timestamp())
    ):
        try:
            reading = PackedReading.from_text(text)
        except (ValueError, KeyError, TypeError):
            continue  # the flush reports unreadable entries; a resume just skips them
        # "since" is exclusive: the client already has what arrived then.
        if reading.received_at > since_text and record.wants_unit(reading.unit_id, reading.site_id):
            found[(reading.unit_id, reading.recorded_at, reading.reading_id)] = reading
    newest = sorted(found.values(), key=lambda r: (r.received_at, r.recorded_at, r.reading_id))
    return newest[-cap:]


# --- subscriptions ------------------------------------------------------------------------


def _check_scope(record: ConnectionRecord, unit_ids: list[str]) -> None:
    if record.allowed_units is None:
        return
    outside = sorted(set(unit_ids) - set(record.allowed_units))
    if outside:
        raise Forbidden(f"your token does not allow units {', '.join(outside)}")


def subscribe(record: ConnectionRecord, request: SubscribeRequest) -> Subscription:
    """``scope: org`` takes the whole org; unitIds/siteIds narrow an org-wide subscription
    to exactly those, or add to an existing selection."""
    if request.scope == "org":
        if request.unit_ids or request.site_ids:
            raise ValidationFailed("give either scope 'org' or unitIds/siteIds, not both")
        return Subscription(scope="org")
    if not request.unit_ids and not request.site_ids:
        raise ValidationFailed("give unitIds, siteIds or scope 'org'")
    _check_scope(record, request.unit_ids or [])
    current = record.subscription
    selected = current.scope == "selected"
    units = sorted({*(current.unit_ids if selected else []), *(request.unit_ids or [])})
    sites = sorted({*(current.site_ids if selected else []), *(request.site_ids or [])})
    if len(units) > MAX_SELECTED_UNITS or len(sites) > MAX_SELECTED_SITES:
        raise LimitExceeded(
            f"a subscription selects at most {MAX_SELECTED_UNITS} units and {MAX_SELECTED_SITES} sites "
            f"(this one would select {len(units)} units and {len(sites)} sites); "
            "subscribe to scope 'org' or to sites instead"
        )
    return Subscription(scope="selected", unit_ids=units, site_ids=sites)


def unsubscribe(record: ConnectionRecord, request: UnsubscribeRequest) -> Subscription:
    """Without ids: stop everything. With ids: drop them from a selection."""
    if not request.unit_ids and not request.site_ids:
        return Subscription(scope="selected")
    current = record.subscription
    if current.scope == "org":
        raise Conflict(
            "subscribed to the whole org; subscribe to the unitIds/siteIds you want instead of unsubscribing"
        )
    dropped_units, dropped_sites = set(request.unit_ids or []), set(request.site_ids or [])
    return Subscription(
        scope="selected",
        unit_ids=[u for u in current.unit_ids if u not in dropped_units],
        site_ids=[s for s in current.site_ids if s not in dropped_sites],
    )


def _change_subscription(context: RequestContext, record: ConnectionRecord, change: Any) -> ConnectionRecord:
    """Apply ``change`` (current record -> new subscription) and save it; when another
    request of the same connection saved first, apply it again to what that one left."""
    return _save_change(context, record, lambda current: {"subscription": change(current)})


def _save_change(context: RequestContext, record: ConnectionRecord, change: Any) -> ConnectionRecord:
    connections = context.store.connections
    for _ in range(MAX_RECORD_ATTEMPTS):
        try:
            return connections.save(record.model_copy(update=change(record)))
        except StaleConnection:
            current = connections.get(record.connection_id, context.now.timestamp())
            if current is None:
                raise Unauthorized("this connection is not registered (expired?); reconnect") from None
            record = current
    raise Conflict("this connection's record keeps changing under concurrent requests; try again")


# --- getLatest and refreshToken -----------------------------------------------------------


def get_latest(context: RequestContext, record: ConnectionRecord, request: GetLatestRequest) -> LatestMessage:
    _check_scope(record, [request.unit_id])
    # Keyed by the caller's own org: another org's unit id simply is not found here.
    reading = context.store.readings.newest(record.org_id, request.unit_id)
    return LatestMessage(request_id=request.request_id, unit_id=request.unit_id, reading=reading)


def get_history(
    context: RequestContext, record: ConnectionRecord, request: GetHistoryRequest
) -> HistoryMessage:
    """The unit's readings recorded in ``since``..``until`` (the last hour by default),
    the newest ``limit`` of them, within the token's scope and the caller's own org."""
    _check_scope(record, [request.unit_id])
    until = request.until or context.now
    since = request.since or until - timedelta(hours=1)
    readings = context.store.readings.between(
        record.org_id, request.unit_id, since, until, limit=request.limit + 1
    )
    return HistoryMessage(
        request_id=request.request_id,
        unit_id=request.unit_id,
        readings=readings[-request.limit :],
        more=len(readings) > request.limit,
    )


def _in_scope(record: ConnectionRecord, unit_id: str) -> bool:
    return record.allowed_units is None or unit_id in record.allowed_units


def get_alerts(context: RequestContext, record: ConnectionRecord, request: GetAlertsRequest) -> AlertsMessage:
    """The org's open alerts on units within the token's scope."""
    active = [
        alert for alert in context.store.alerts.open_alerts(record.org_id) if _in_scope(record, alert.unit_id)
    ]
    return AlertsMessage(request_id=request.request_id, active=active)


def list_units(context: RequestContext, record: ConnectionRecord, request: ListUnitsRequest) -> UnitsMessage:
    """Every unit of the org that has reported, within the token's scope, quiet ones too."""
    units = [
        UnitInfo(
            unit_id=unit.unit_id,
            site_id=unit.site_id,
            last_reading=unit.last_reading,
            last_seen_at=unit.last_seen_at,
        )
        for unit in context.store.readings.units_seen(record.org_id)
        if _in_scope(record, unit.unit_id)
    ]
    return UnitsMessage(request_id=request.request_id, units=units)


def refresh_token(
    context: RequestContext, record: ConnectionRecord, request: RefreshTokenRequest
) -> TokenRefreshedMessage:
    """Extend the session with a fresh token of the same user and org; its ``units``
    claim replaces the old one."""
    if context.verifier is None:
        raise AssertionError("refreshToken needs the request context's token verifier")
    principal = context.verifier.verify(request.token)
    if principal.org_id != record.org_id or principal.user_id != record.user_id:
        raise Forbidden("the new token is for another user or org; reconnect with it instead")
    updated = _save_change(
        context,
        record,
        lambda _: {"token_expires_at": principal.expires_at, "allowed_units": principal.units},
    )
    expires = updated.token_expires_at
    return TokenRefreshedMessage(
        request_id=request.request_id,
        expires_at=datetime.fromtimestamp(expires, UTC) if expires is not None else context.now,
    )
