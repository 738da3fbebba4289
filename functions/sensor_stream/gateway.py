"""Posting to WebSocket connections through the API Gateway Management API."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from botocore.exceptions import ClientError

from .models import WireModel
from .observability import logger

# API Gateway's frame limit is 32 KB; stay below it with the envelope included.
MAX_MESSAGE_BYTES = 32_000


class ManagementApi(Protocol):
    """What the gateway uses of a Management API client: boto3's ``apigatewaymanagementapi``
    or the flush's lean one (management_api.py); both raise botocore's exceptions."""

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> object: ...

    def delete_connection(self, *, ConnectionId: str) -> object: ...


@runtime_checkable
class AsyncManagementApi(ManagementApi, Protocol):
    """A client that also posts on an event loop (the lean one: the flush's fan-out)."""

    async def post_to_connection_async(self, *, ConnectionId: str, Data: bytes) -> object: ...

    def close_async_connections(self) -> None: ...


class ConnectionGateway:
    """Sends messages to connections; a gone connection is reported, not raised."""

    def __init__(self, client: ManagementApi) -> None:
        self._client = client
        self._async_client = client if isinstance(client, AsyncManagementApi) else None

    @property
    def posts_async(self) -> bool:
        return self._async_client is not None

    def send(self, connection_id: str, message: WireModel | bytes) -> bool:
        """Post one message. False when the connection is gone (HTTP 410)."""
        data = message if isinstance(message, bytes) else message.to_json().encode()
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=data)
        except ClientError as error:
            return _gone_or_raise(error, connection_id)
        return True

    async def send_async(self, connection_id: str, message: bytes) -> bool:
        """``send`` on the caller's event loop; the client must post asynchronously."""
        client = self._async_client
        assert client is not None, "this client posts only synchronously"
        try:
            await client.post_to_connection_async(ConnectionId=connection_id, Data=message)
        except ClientError as error:
            return _gone_or_raise(error, connection_id)
        return True

    def close_posting_connections(self) -> None:
        """On the event loop that posted (``send_async``), before it stops."""
        if self._async_client is not None:
            self._async_client.close_async_connections()

    def disconnect(self, connection_id: str) -> None:
        try:
            self._client.delete_connection(ConnectionId=connection_id)
        except ClientError as error:
            if not _is_gone(error):
                raise


def _gone_or_raise(error: ClientError, connection_id: str) -> bool:
    """False for a gone connection (410); any other error is raised again."""
    if not _is_gone(error):
        raise error
    logger.info("connection gone", extra={"connection_id": connection_id})
    return False


def _is_gone(error: ClientError) -> bool:
    # botocore names it GoneException only when API Gateway sends x-amzn-ErrorType.
    return (
        error.response.get("Error", {}).get("Code") in ("GoneException", "410")
        or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 410
    )
