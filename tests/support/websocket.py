"""Capturing what the functions post to WebSocket connections.

moto's Management API appends every post to one connection into a single value and
never answers 410 Gone, so the real clients (built by ``sensor_stream.clients``) get their
posts answered in-process by a ``PostRecorder``: boto3's client (the connect and publish
functions) the way botocore's own Stubber short-circuits a call, with parameters still
validated and serialized and errors raised as the client's real exception classes; the
flush's signed client (sensor_stream/management_api.py) at its connection pool, with the
signed request in and API Gateway's HTTP answer out, so its URL, signing and error
mapping run as against the real endpoint.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import urllib3
from pydantic import Field, TypeAdapter

from sensor_stream.management_api import SignedManagementApi
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
        # Posts to these connections go through this many more times, then get ``failure``.
        self.failing_after: dict[str, int] = {}
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
        if isinstance(client, SignedManagementApi):
            client.pool = client.async_pool = _AnsweringPool(self)
            return
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
        self.delete(context["deleted_connection"])
        return success()

    @staticmethod
    def _remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["recorded_post"] = Post(params["ConnectionId"], bytes(params["Data"]))

    def _answer(self, context: dict[str, Any], **_: Any) -> Answer:
        refusal = self.post(context["recorded_post"])
        return success() if refusal is None else failure(*refusal)

    def post(self, post: Post) -> tuple[str, int] | None:
        """Record the post, or refuse it: (error code, HTTP status)."""
        release = self.held.get(post.connection_id)
        if release is not None:
            release.wait(timeout=30)
        with self._lock:
            if post.connection_id in self.gone:
                self.refused.append(post)
                return "GoneException", 410
            allowed = self.failing_after.get(post.connection_id)
            if post.connection_id in self.failing or "*" in self.failing or allowed == 0:
                self.refused.append(post)
                return self.failure
            if allowed is not None:
                self.failing_after[post.connection_id] = allowed - 1
            self.posts.append(post)
        return None

    def delete(self, connection_id: str) -> None:
        with self._lock:
            self.deleted.append(connection_id)
            self.gone.add(connection_id)  # closed: later posts get 410

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


class _AnsweringPool:
    """Stands in for the signed client's connection pools: answers their requests as API
    Gateway's ``/@connections/{id}`` would, from the recorder (the fan-out's, on its event
    loop, in a thread: a held post blocks only itself)."""

    def __init__(self, recorder: PostRecorder) -> None:
        self._recorder = recorder

    async def request(self, method: str, url: str, body: bytes, headers: Mapping[str, str]) -> Any:
        return await asyncio.to_thread(self.urlopen, method, url, body, headers)

    def close(self) -> None:
        """Nothing kept open."""

    def urlopen(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> urllib3.BaseHTTPResponse:
        assert "execute-api/aws4_request" in (headers or {}).get("Authorization", ""), "unsigned request"
        connection_id = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        if method == "DELETE":
            self._recorder.delete(connection_id)
            return urllib3.HTTPResponse(status=204)
        refusal = self._recorder.post(Post(connection_id, body or b""))
        if refusal is None:
            return urllib3.HTTPResponse(status=200)
        code, status = refusal
        return urllib3.HTTPResponse(
            body=json.dumps({"message": None}).encode(), headers={"x-amzn-ErrorType": code}, status=status
        )


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
