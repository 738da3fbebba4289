"""WebSocket sessions: connect, disconnect and the client's requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from .auth import TokenVerifier, token_from_subprotocols
from .delivery import batch_messages
from .errors import (
    AppError,
    Conflict,
    Forbidden,
    MalformedJson,
    Unauthorized,
    UnknownAction,
    ValidationFailed,
)
from .gateway import ConnectionGateway
from .ingestion import describe_errors
from .models import (
    MAX_REQUEST_ID_LENGTH,
    SESSION_ACTIONS,
    ConnectionMessage,
    ConnectionRecord,
    ErrorBody,
    ErrorMessage,
    GetLatestRequest,
    HelloRequest,
    LatestMessage,
    Reading,
    SessionRequest,
    SubscribedMessage,
    SubscribeRequest,
    Subscription,
    UnsubscribeRequest,
    WireModel,
)
from .observability import logger, metrics
from .settings import Settings
from .store import SensorStore
from .wire import decode_json

KNOWN_ACTIONS = (*SESSION_ACTIONS, "sendCommand")


@dataclass
class Session:
    """What one request needs; built per invocation by the handler."""

    store: SensorStore
    gateway: ConnectionGateway
    settings: Settings
    now: datetime


def open_connection(
    store: SensorStore,
    verifier: TokenVerifier,
    settings: Settings,
    connection_id: str,
    subprotocol_header: str | None,
    now: datetime,
) -> ConnectionRecord:
    """``$connect``: authenticate and record the connection (nothing can be posted yet)."""
    principal = verifier.verify(token_from_subprotocols(subprotocol_header))
    record = ConnectionRecord(
        connection_id=connection_id,
        org_id=principal.org_id,
        user_id=principal.user_id,
        allowed_units=principal.units,
        subscription=Subscription(scope="org"),
        connected_at=now,
        expires_at=int(now.timestamp()) + settings.connection_ttl_seconds,
    )
    store.save_connection(record)
    metrics.add_metric(name="Connections", unit="Count", value=1)
    return record


def close_connection(store: SensorStore, connection_id: str, now: datetime) -> None:
    record = store.get_connection(connection_id, now.timestamp())
    if record:
        store.delete_connection(connection_id, record.org_id)


def parse_client_message(body: str | None) -> tuple[dict[str, Any], str | None]:
    """The JSON object of a client message and its requestId (for error answers)."""
    document = decode_json(body or "", "message")
    if not isinstance(document, dict):
        raise MalformedJson("message must be a JSON object with an 'action'")
    request_id = document.get("requestId")
    # Only a requestId the request may carry is echoed: answers must not grow with the request.
    valid = isinstance(request_id, str) and len(request_id) <= MAX_REQUEST_ID_LENGTH
    return document, request_id if valid else None


def error_message(error: AppError, request_id: str | None) -> ErrorMessage:
    return ErrorMessage(
        request_id=request_id,
        error=ErrorBody(code=error.code, message=error.message, details=error.details),
    )


def handle_client_message(session: Session, connection_id: str, body: str | None) -> None:
    """Answer one client message on its connection; errors are answered, not raised."""
    request_id: str | None = None
    try:
        document, request_id = parse_client_message(body)
        action = document.get("action")
        model = SESSION_ACTIONS.get(action) if isinstance(action, str) else None
        if model is None:
            shown = repr(action) if len(repr(action)) <= 64 else repr(action)[:64] + "..."
            raise UnknownAction(f"unknown action {shown}; expected one of {', '.join(KNOWN_ACTIONS)}")
        try:
            request = model.model_validate(document)
        except ValidationError as error:
            raise ValidationFailed(f"invalid '{action}' request", details=describe_errors(error)) from error
        record = session.store.get_connection(connection_id, session.now.timestamp())
        if record is None:
            raise Unauthorized("this connection is not registered (expired?); reconnect")
        for message in answer(session, record, request):
            session.gateway.send(connection_id, message)
    except AppError as error:
        logger.info("request refused", extra={"code": error.code, "error_message": error.message})
        session.gateway.send(connection_id, error_message(error, request_id))


def answer(session: Session, record: ConnectionRecord, request: SessionRequest) -> list[WireModel]:
    match request:
        case HelloRequest():
            return hello(session, record, request)
        case SubscribeRequest():
            record = subscribe(session, record, request)
            return [SubscribedMessage(request_id=request.request_id, subscription=record.subscription)]
        case UnsubscribeRequest():
            record = unsubscribe(session, record, request)
            return [SubscribedMessage(request_id=request.request_id, subscription=record.subscription)]
        case GetLatestRequest():
            return [get_latest(session, record, request)]
    raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover


def hello(session: Session, record: ConnectionRecord, request: HelloRequest) -> list[WireModel]:
    messages: list[WireModel] = [
        ConnectionMessage(
            request_id=request.request_id,
            connection_id=record.connection_id,
            server_time=session.now,
            subscription=record.subscription,
        )
    ]
    if request.resume:
        missed = replay_readings(session, record, request.resume.since)
        messages.extend(batch_messages(missed, server_time=session.now, replay=True))
    return messages


def replay_readings(session: Session, record: ConnectionRecord, since: datetime) -> list[Reading]:
    """Readings recorded after ``since`` that this connection may see, bounded by
    RESUME_MAX_SECONDS back and the newest RESUME_MAX_READINGS in all."""
    settings = session.settings
    since = max(since, session.now - timedelta(seconds=settings.resume_max_seconds))
    cap = settings.resume_max_readings
    found: list[Reading] = []
    for unit_id in session.store.list_units(record.org_id):
        if record.allowed_units is not None and unit_id not in record.allowed_units:
            continue
        readings = session.store.readings_since(record.org_id, unit_id, since, limit=cap)
        # "since" is exclusive: the client already has the reading it names.
        found.extend(r for r in readings if r.recorded_at > since and record.wants(r))
    found.sort(key=lambda r: r.recorded_at)
    return found[-cap:] if cap else []


def _check_scope(record: ConnectionRecord, unit_ids: list[str]) -> None:
    if record.allowed_units is None:
        return
    outside = sorted(set(unit_ids) - set(record.allowed_units))
    if outside:
        raise Forbidden(f"your token does not allow units {', '.join(outside)}")


def subscribe(session: Session, record: ConnectionRecord, request: SubscribeRequest) -> ConnectionRecord:
    """``scope: org`` takes the whole org; unitIds/siteIds narrow an org-wide subscription
    to exactly those, or add to an existing selection."""
    if request.scope == "org":
        if request.unit_ids or request.site_ids:
            raise ValidationFailed("give either scope 'org' or unitIds/siteIds, not both")
        subscription = Subscription(scope="org")
    else:
        if not request.unit_ids and not request.site_ids:
            raise ValidationFailed("give unitIds, siteIds or scope 'org'")
        _check_scope(record, request.unit_ids or [])
        current = record.subscription
        base_units = current.unit_ids if current.scope == "selected" else []
        base_sites = current.site_ids if current.scope == "selected" else []
        subscription = Subscription(
            scope="selected",
            unit_ids=sorted({*base_units, *(request.unit_ids or [])}),
            site_ids=sorted({*base_sites, *(request.site_ids or [])}),
        )
    return _save_subscription(session, record, subscription)


def unsubscribe(session: Session, record: ConnectionRecord, request: UnsubscribeRequest) -> ConnectionRecord:
    """Without ids: stop everything. With ids: drop them from a selection."""
    if not request.unit_ids and not request.site_ids:
        return _save_subscription(session, record, Subscription(scope="selected"))
    current = record.subscription
    if current.scope == "org":
        raise Conflict(
            "subscribed to the whole org; subscribe to the unitIds/siteIds you want instead of unsubscribing"
        )
    subscription = Subscription(
        scope="selected",
        unit_ids=[u for u in current.unit_ids if u not in set(request.unit_ids or [])],
        site_ids=[s for s in current.site_ids if s not in set(request.site_ids or [])],
    )
    return _save_subscription(session, record, subscription)


def _save_subscription(
    session: Session, record: ConnectionRecord, subscription: Subscription
) -> ConnectionRecord:
    updated = record.model_copy(update={"subscription": subscription})
    session.store.save_connection(updated)
    return updated


def get_latest(session: Session, record: ConnectionRecord, request: GetLatestRequest) -> LatestMessage:
    _check_scope(record, [request.unit_id])
    # Keyed by the caller's own org: another org's unit id simply is not found here.
    reading = session.store.get_latest(record.org_id, request.unit_id)
    return LatestMessage(request_id=request.request_id, unit_id=request.unit_id, reading=reading)
