"""What the lean clients (management_api.py, dynamodb_writes.py) share: one kept-alive
urllib3 pool per endpoint, as botocore's own URLLib3Session keeps, a request whose
network failures raise the botocore exceptions that session raises, so callers and
botocore's retry rules read them as they read boto3's, and the signer botocore's
``choose-signer`` event picks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import urllib3
from botocore import UNSIGNED
from botocore.auth import AUTH_TYPE_MAPS
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import get_cert_path


def chosen_signer(events: Any, *, service: str, operation: str, region: str, default: str) -> Any:
    """The signer class that the handlers of ``events``' ``choose-signer`` event pick for
    ``operation``, as boto3's clients let them (else ``default``'s); None: unsigned."""
    chosen = events.emit_until_response(
        f"choose-signer.{service}.{operation}",
        signing_name=service,
        region_name=region,
        signature_version=default,
        context={},
    )[1]
    signature = chosen if chosen is not None else default
    return None if signature is UNSIGNED else AUTH_TYPE_MAPS[signature]


class ConnectionPool(Protocol):
    """What the lean clients need of urllib3's connection pool (tests answer in-process)."""

    def urlopen(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> urllib3.BaseHTTPResponse: ...


def endpoint_pool(
    endpoint_url: str, *, max_connections: int, connect_timeout: float, read_timeout: float
) -> ConnectionPool:
    """One pool for the one host, never retrying inside a request; block=False: a burst past
    ``max_connections`` opens extra connections (closed after use) instead of waiting."""
    https = {"ca_certs": get_cert_path(True)} if endpoint_url.startswith("https:") else {}
    pool: ConnectionPool = urllib3.connection_from_url(
        endpoint_url,
        maxsize=max_connections,
        block=False,
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        retries=False,
        **https,
    )
    return pool


def send(
    pool: ConnectionPool, method: str, target: str, *, body: bytes, headers: Mapping[str, str], url: str
) -> urllib3.BaseHTTPResponse:
    """One request (``target``: the path or URL the pool is asked for; ``url``: the whole
    URL, as failures name it), its answer read whole."""
    try:
        return pool.urlopen(
            method, target, body=body, headers=headers, retries=False, redirect=False, preload_content=True
        )
    except urllib3.exceptions.HTTPError as error:
        raise botocore_error(error, url) from error


def botocore_error(error: urllib3.exceptions.HTTPError, url: str) -> Exception:
    """urllib3's failure as the botocore exception its URLLib3Session raises for it."""
    # In botocore's order: urllib3's NewConnectionError is a ConnectTimeoutError too.
    if isinstance(error, urllib3.exceptions.SSLError):
        return SSLError(endpoint_url=url, error=error)
    if isinstance(error, urllib3.exceptions.NewConnectionError):  # refused, DNS failures
        return EndpointConnectionError(endpoint_url=url, error=error)
    if isinstance(error, urllib3.exceptions.ConnectTimeoutError):
        return ConnectTimeoutError(endpoint_url=url, error=error)
    if isinstance(error, urllib3.exceptions.ReadTimeoutError):
        return ReadTimeoutError(endpoint_url=url, error=error)
    if isinstance(error, urllib3.exceptions.ProtocolError):
        return ConnectionClosedError(error=error, request=None, endpoint_url=url)
    return HTTPClientError(error=error)
