"""A lean client of API Gateway's Management API, for the flush's many posts.

boto3's client spends most of a post's CPU on its own machinery (parameter validation,
serialising, endpoint rules, event hooks, parsing): ~0.8 ms a post, 1.0-1.3 ms on the
flush's 32 threads, which bounds a flush at 512 MB (0.29 vCPU) to ~220-300 posts a
second. A post needs far less: its URL, a SigV4 signature and one request on a
kept-alive connection. This client does just that, with botocore's own signer (service
``execute-api``) and credentials (refreshed by botocore when they can expire), over
lean_http's kept-alive connections: about half boto3's CPU a post over urllib3 on the
flush's thread pool (docs/posting.md), and less again since lean_http reads answers with
httptools instead of urllib3 (devstack/README.md). The fan-out posts with
``post_to_connection_async`` on its event loop (lean_http's asyncio connections), with
no thread a post.

Its failures are botocore's, so callers read them as they read boto3's: a ``ClientError``
whose code is what API Gateway names in ``x-amzn-ErrorType`` (``GoneException``,
``PayloadTooLargeException``, ``LimitExceededException``, ...) or else the HTTP status,
with the status in ``ResponseMetadata``; and botocore's ``ConnectTimeoutError``,
``ReadTimeoutError``, ``EndpointConnectionError``, ``ConnectionClosedError`` for the
network. Like the boto3 client the flush used, it never retries inside a call.
"""

from __future__ import annotations

import json
from http.client import responses as reason_phrases
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.utils import percent_encode

from .lean_http import (
    AsyncConnectionPool,
    AsyncKeepAliveConnections,
    HttpAnswer,
    chosen_signer,
    endpoint_pool,
)

SIGNING_SERVICE = "execute-api"
USER_AGENT = "sensor-stream-management-api/1"


class ExecuteApiSigner:
    """SigV4 headers for requests to one endpoint, by botocore's signer and credentials;
    or the signer a handler of the session's ``choose-signer`` event names, as boto3's
    clients let it choose (none does in AWS)."""

    def __init__(
        self,
        endpoint_url: str,
        *,
        region: str,
        credentials: Credentials,
        events: Any = None,
    ) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.stage_path = parts.path.rstrip("/")
        self._region = region
        self._credentials = credentials
        self._signer = self._chosen_signer(events)

    def _chosen_signer(self, events: Any) -> Any:
        if events is None:
            return SigV4Auth
        # One answer for every operation: the flush's posts and deletes are signed alike.
        return chosen_signer(
            events, service=SIGNING_SERVICE, operation="PostToConnection", region=self._region, default="v4"
        )

    def connection_path(self, connection_id: str) -> str:
        # Encoded as botocore encodes a URI label: ids hold '=' (and could hold '/').
        return f"{self.stage_path}/@connections/{percent_encode(connection_id)}"

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        request = AWSRequest(method=method, url=self.origin + path, data=body)
        # Frozen: a refresh between reading the key and the token cannot mix two sets.
        credentials = self._credentials.get_frozen_credentials()
        if self._signer is not None:
            self._signer(credentials, SIGNING_SERVICE, self._region).add_auth(request)
        headers = dict(request.headers.items())
        headers["User-Agent"] = USER_AGENT
        return headers


class SignedManagementApi:
    """``post_to_connection`` and ``delete_connection`` of boto3's client, keyword for
    keyword, on ``endpoint_url`` (``https://{api}.execute-api.{region}.amazonaws.com/{stage}``)."""

    def __init__(
        self,
        endpoint_url: str,
        *,
        region: str,
        credentials: Credentials,
        timeout_seconds: float,
        max_connections: int,
        events: Any = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.signer = ExecuteApiSigner(endpoint_url, region=region, credentials=credentials, events=events)
        self.pool = endpoint_pool(
            endpoint_url,
            max_connections=max_connections,
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
        )
        # The fan-out's posts, on its event loop.
        self.async_pool: AsyncConnectionPool = AsyncKeepAliveConnections(
            endpoint_url,
            max_connections=max_connections,
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
        )

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> None:
        self._call("PostToConnection", "POST", ConnectionId, Data)

    async def post_to_connection_async(self, *, ConnectionId: str, Data: bytes) -> None:
        """``post_to_connection`` on the caller's event loop (same answers and errors)."""
        path = self.signer.connection_path(ConnectionId)
        headers = self.signer.headers("POST", path, Data)
        response = await self.async_pool.request("POST", path, Data, headers)
        if response.status >= 300:
            raise ClientError(_error_response(response), "PostToConnection")  # type: ignore[arg-type]

    def close_async_connections(self) -> None:
        """On the event loop that posted: its kept-alive connections closed."""
        self.async_pool.close()

    def delete_connection(self, *, ConnectionId: str) -> None:
        self._call("DeleteConnection", "DELETE", ConnectionId, b"")

    def _call(self, operation: str, method: str, connection_id: str, body: bytes) -> None:
        path = self.signer.connection_path(connection_id)
        headers = self.signer.headers(method, path, body)
        response = self.pool.urlopen(method, path, body=body, headers=headers)
        if response.status >= 300:
            raise ClientError(_error_response(response), operation)  # type: ignore[arg-type]


def _error_response(response: HttpAnswer) -> dict[str, Any]:
    """The error as botocore's rest-json parser reads it: the code from x-amzn-ErrorType,
    else the body's code or __type, else the status; a 5xx that is not JSON (a proxy's
    HTML page) is just its status."""
    message: object
    data = (response.data or b"").strip()
    if response.status >= 500 and (not data or data.startswith(b"<html>")):
        code, message = str(response.status), reason_phrases.get(response.status, "")
    else:
        try:
            document = json.loads(data or b"{}")
        except ValueError:
            document = None
        body = document if isinstance(document, dict) else {}
        header = response.headers.get("x-amzn-ErrorType")
        found = header or body.get("code", body.get("Code")) or body.get("__type")
        # "GoneException:http://internal.amazon.com/..." or "aws.protocols#Name": the name.
        code = str(found).split(":", 1)[0].rsplit("#", 1)[-1] if found else str(response.status)
        message = body.get("message", body.get("Message", ""))
    return {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {
            "RequestId": response.headers.get("x-amzn-RequestId", ""),
            "HTTPStatusCode": response.status,
            "HTTPHeaders": {name.lower(): value for name, value in response.headers.items()},
        },
    }
