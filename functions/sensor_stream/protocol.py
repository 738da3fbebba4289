"""What every WebSocket client message goes through, whichever function its route reaches:
the connection's request allowance, parsing, its record, and errors answered in the
contract's shape (``{"type": "error", "requestId"?, "error": {"code", "message"}}``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.parser.models import APIGatewayWebSocketMessageEventModel
from pydantic import BaseModel, ValidationError

from . import clients
from .auth import TokenVerifier
from .errors import AppError, MalformedJson, Throttled, Unauthorized, ValidationFailed, describe_errors
from .gateway import ConnectionGateway
from .models import (
    MAX_REQUEST_ID_LENGTH,
    ConnectionRecord,
    ErrorBody,
    ErrorMessage,
    PartOfAnswer,
    WireModel,
)
from .observability import logger, metrics
from .settings import Settings, get_settings
from .store import SensorStore
from .wire import decode_json

ModelT = TypeVar("ModelT", bound=BaseModel)
PartT = TypeVar("PartT", bound=PartOfAnswer)

# API Gateway takes messages of up to 128 KB (32 KB frames, joined by the browser); an
# answer stays below with room for its envelope.
MAX_ANSWER_BYTES = 120_000


@dataclass(frozen=True)
class RequestContext:
    """What answering one client message needs; built per invocation by the handler."""

    store: SensorStore
    gateway: ConnectionGateway
    settings: Settings
    now: datetime
    # Verifies the fresh token of a refreshToken request.
    verifier: TokenVerifier | None = None


Answerer = Callable[[RequestContext, ConnectionRecord, dict[str, Any]], list[WireModel | bytes]]


def invocation_context(now: datetime, *, verifies_tokens: bool = False) -> RequestContext:
    """The context of an invocation at ``now`` on the container's shared clients; with the
    token verifier (PyJWT and cryptography load on first use) for a function that takes
    refreshToken."""
    return RequestContext(
        store=clients.store(),
        gateway=clients.gateway(),
        settings=get_settings(),
        now=now,
        verifier=clients.token_verifier() if verifies_tokens else None,
    )


def validate(model: type[ModelT], document: Any, what: str) -> ModelT:
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise ValidationFailed(f"invalid {what}", details=describe_errors(error)) from error


def parse_client_message(body: str | None) -> tuple[dict[str, Any], str | None]:
    """The JSON object of a client message and its requestId (for error answers)."""
    document = decode_json(body or "", "message")
    if not isinstance(document, dict):
        raise MalformedJson("message must be a JSON object with an 'action'")
    request_id = document.get("requestId")
    # Only a requestId the request may carry is echoed: answers must not grow with the request.
    valid = isinstance(request_id, str) and len(request_id) <= MAX_REQUEST_ID_LENGTH
    return document, request_id if valid else None


def require_live_token(record: ConnectionRecord, now: datetime) -> None:
    if record.token_expired(now.timestamp()):
        raise Unauthorized("your token has expired; send refreshToken with a fresh one, or reconnect")


def error_message(error: AppError, request_id: str | None) -> ErrorMessage:
    return ErrorMessage(
        request_id=request_id,
        error=ErrorBody(code=error.code, message=error.message, details=error.details),
    )


def answer_client_message(
    context: RequestContext, connection_id: str, body: str | None, answer: Answerer
) -> None:
    """Answer one client message on its connection; errors are answered, never raised."""
    request_id: str | None = None
    try:
        if not context.store.connections.admit_request(connection_id, context.now.timestamp()):
            request_id = _request_id_if_any(body)
            metrics.add_metric(name="RequestsThrottled", unit="Count", value=1)
            window = context.settings.connection_request_window_seconds
            raise Throttled(
                f"more than {context.settings.connection_request_limit} requests in {window} s on this "
                f"connection; wait and try again"
            )
        document, request_id = parse_client_message(body)
        record = context.store.connections.get(connection_id, context.now.timestamp())
        if record is None:
            raise Unauthorized("this connection is not registered (expired?); reconnect")
        for message in answer(context, record, document):
            context.gateway.send(connection_id, message)
    except AppError as error:
        logger.info("request refused", extra={"code": error.code, "error_message": error.message})
        context.gateway.send(connection_id, error_message(error, request_id))


def answer_websocket_message(
    context: RequestContext, event: APIGatewayWebSocketMessageEventModel, answer: Answerer
) -> None:
    """answer_client_message for a message of the WebSocket API (its body text, if any)."""
    body = event.body if isinstance(event.body, str) else None
    answer_client_message(context, event.request_context.connection_id, body, answer)


def _request_id_if_any(body: str | None) -> str | None:
    try:
        return parse_client_message(body)[1]
    except AppError:
        return None


def in_parts(answer: PartT, list_field: str, limit: int = MAX_ANSWER_BYTES) -> list[PartT]:
    """The answer as one message, or in parts of at most ``limit`` bytes each when its
    list (``list_field``) makes it larger (PartOfAnswer)."""
    whole = answer.to_json().encode()
    if len(whole) <= limit:
        return [answer]
    items: list[Any] = getattr(answer, list_field)
    envelope = len(answer.model_copy(update={list_field: [], "part": 99_999, "parts": 99_999}).to_json())
    chunks: list[list[Any]] = [[]]
    size = envelope
    for item in items:
        # Each item's own JSON, plus the comma between items.
        item_size = len(item.to_json().encode()) + 1
        if chunks[-1] and size + item_size > limit:
            chunks.append([])
            size = envelope
        chunks[-1].append(item)
        size += item_size
    return [
        answer.model_copy(update={list_field: chunk, "part": number, "parts": len(chunks)})
        for number, chunk in enumerate(chunks, start=1)
    ]
