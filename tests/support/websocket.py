"""Capturing what the functions post to WebSocket connections.

moto's Management API appends every post to one connection into a single value and
never answers 410 Gone, so the real boto3 client (built by ``sensor_stream.clients``)
gets its ``PostToConnection`` calls answered in-process by a ``PostRecorder``, the way
botocore's own Stubber short-circuits a call: parameters are still validated and
serialized, and errors come back as the client's real exception classes.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from sensor_stream.models import (
    AlertResolvedMessage,
    AlertsMessage,
    AlertTriggeredMessage,
    CommandAcceptedMessage,
    CommandAckMessage,
    CommandTimeoutMessage,
    ConnectionMessage,
    ErrorMessage,
    HistoryMessage,
    LatestMessage,
    PongMessage,
    ReadingsBatchMessage,
    SubscribedMessage,
    TokenRefreshedMessage,
    UnitsMessage,
)

from .botocore_hooks import Answer, before_call_event, failure, success

ServerMessage = Annotated[
    ConnectionMessage
    | SubscribedMessage
    | LatestMessage
    | HistoryMessage
    | PongMessage
    | AlertTriggeredMessage
    | AlertResolvedMessage
    | AlertsMessage
    | UnitsMessage
    | ReadingsBatchMessage
    | CommandAcceptedMessage
    | CommandAckMessage
    | CommandTimeoutMessage
    | TokenRefreshedMessage
    | ErrorMessage,
    Field(discriminator="type"),
]
_SERVER_MESSAGE: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def parse_server_message(data: bytes) -> ServerMessage:
    """One posted frame as its pydantic model; it must be exactly what the model writes
    (no extra or missing fields, same formats)."""
    document = json.loads(data)
    message = _SERVER_MESSAGE.validate_python(document)
    assert message.to_wire() == document, f"posted message differs from its model: {document}"
    return message


@dataclass(frozen=True)
class Post:
    connection_id: str
    data: bytes


class PostRecorder:
    """Answers PostToConnection like API Gateway: 200 and the frame recorded, 410
    GoneException for ids in ``gone``, or ``failure`` (e.g. throttling) for ids in
    ``failing`` (``"*"`` = every id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.posts: list[Post] = []
        self.gone: set[str] = set()
        self.failing: set[str] = set()
        self.failure = ("LimitExceededException", 429)
        self.refused: list[Post] = []
        self._read_upto: dict[str, int] = defaultdict(int)
        # Posts to these connections wait until the event is set (a browser that stopped reading).
        self.held: dict[str, threading.Event] = {}
        self.deleted: list[str] = []

    def hold(self, connection_id: str) -> threading.Event:
        """Posts to the connection block until the returned event is set."""
        release = self.held[connection_id] = threading.Event()
        return release

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build.apigatewaymanagementapi.PostToConnection", self._remember)
        events.register(before_call_event(client, "PostToConnection"), self._answer)
        events.register(
            "before-parameter-build.apigatewaymanagementapi.DeleteConnection", self._remember_delete
        )
        events.register(before_call_event(client, "DeleteConnection"), self._answer_delete)

    @staticmethod
    def _remember_delete(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["deleted_connection"] = params["ConnectionId"]

    def _answer_delete(self, context: dict[str, Any], **_: Any) -> Answer:
        connection_id = context["deleted_connection"]
        with self._lock:
            self.deleted.append(connection_id)
            self.gone.add(connection_id)  # closed: later posts get 410
        return success()

    @staticmethod
    def _remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["recorded_post"] = Post(params["ConnectionId"], bytes(params["Data"]))

    def _answer(self, context: dict[str, Any], **_: Any) -> Answer:
        post: Post = context["recorded_post"]
        release = self.held.get(post.connection_id)
        if release is not None:
            release.wait(timeout=30)
        with self._lock:
            if post.connection_id in self.gone:
                self.refused.append(post)
                return failure("GoneException", 410)
            if post.connection_id in self.failing or "*" in self.failing:
                self.refused.append(post)
                return failure(*self.failure)
            self.posts.append(post)
        return success()

    # --- reading what was posted --------------------------------------------------------

    def frames(self, connection_id: str) -> list[bytes]:
        with self._lock:
            return [post.data for post in self.posts if post.connection_id == connection_id]

    def received(self, connection_id: str) -> list[ServerMessage]:
        """Every message posted to the connection so far, in order."""
        return [parse_server_message(data) for data in self.frames(connection_id)]

    def take(self, connection_id: str) -> list[ServerMessage]:
        """Messages posted to the connection since the previous ``take``."""
        messages = self.received(connection_id)
        start = self._read_upto[connection_id]
        self._read_upto[connection_id] = len(messages)
        return messages[start:]

    def connection_ids(self) -> set[str]:
        with self._lock:
            return {post.connection_id for post in self.posts}


def unit_readings(messages: list[ServerMessage]) -> list[tuple[str, str]]:
    """(unitId, recordedAt) of every reading in the batch messages, in order."""
    pairs = []
    for message in messages:
        if not isinstance(message, ReadingsBatchMessage):
            continue
        for batch in message.batches:
            pairs += [(r.unit_id, r.to_wire()["recordedAt"]) for r in batch.readings]
    return pairs


def wire(messages: list[ServerMessage]) -> list[dict[str, Any]]:
    """Messages as their JSON documents, for exact comparisons."""
    return [message.to_wire() for message in messages]


def error_answer(code: str, message: str, request_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """The ``{"type": "error", ...}`` document a refused request is answered with."""
    answer: dict[str, Any] = {"type": "error", "error": {"code": code, "message": message, **extra}}
    if request_id is not None:
        answer["requestId"] = request_id
    return answer
