"""Ingest's DynamoDB writes without boto3's per-call machinery.

Every stored message costs two requests: the history items' conditional puts (a PutItem
for one reading, a BatchExecuteStatement of PartiQL INSERTs for more) and the
BatchWriteItem of its outbox entry and registry items. Through boto3's client they cost
about twice the CPU of the requests themselves (shape-driven serialising and parsing,
endpoint rules, ~30 events, header objects): 1.6-2.6 ms of CPU a message signed, against
0.9-1.2 ms for the same requests as plain JSON over urllib3; these lean writes took 56-68 %
of boto3's (``make bench ARGS="--scenario sdk"``, devstack/README.md), and now send over
lean_http's connections instead of urllib3's. That was most of ingest's CPU, and so of
its Lambda bill.

:class:`LeanWrites` wraps the store's boto3 client: ``put_item``, ``batch_write_item``
and ``batch_execute_statement`` take and return what boto3's do, keyword for keyword,
and raise the same ``ClientError`` (code, message, HTTP status, and a failed condition's
``Item``); every other method is the boto3 client's own. What a request goes through is
botocore's, in botocore's order: the client's endpoint, User-Agent and timeouts; the
signer its ``choose-signer`` event picks (SigV4 by default); its ``before-send`` event,
whose handler may answer instead of the network (moto's in-process mock in tests, the
local stack's fault injection); the standard retry mode's conditions and back-off
(throttling, 5xx, connection errors, a bad ``x-amz-crc32``), with as many attempts as
the client's config allows. Not kept: the standard mode's client-wide retry quota, and
X-Ray's per-call details (each request is still one ``DynamoDB`` subsegment with its
operation, tracing.aws_request_traces).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.retries import standard

from .lean_http import chosen_signer, endpoint_pool
from .tracing import aws_request_traces

SERVICE = "dynamodb"
DEFAULT_SIGNATURE = "v4"


class _HttpResponse:
    """What botocore's retry conditions read of a response; header names lower-cased."""

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = {name.lower(): value for name, value in headers.items()}
        self.content = content


def _encode_bytes(value: object) -> str:
    # Binary attribute values travel as base64, as botocore serialises a blob.
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class LeanWrites:
    """``put_item``, ``batch_write_item`` and ``batch_execute_statement`` of ``client``
    (boto3's DynamoDB client) over lean_http; any other attribute is the client's."""

    def __init__(
        self,
        client: Any,
        credentials: Credentials | None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        meta = client.meta
        self._events = meta.events
        self._url = meta.endpoint_url.rstrip("/") + "/"
        self._region = meta.region_name
        self._service_model = meta.service_model
        self._target = meta.service_model.metadata["targetPrefix"]
        self._content_type = f"application/x-amz-json-{meta.service_model.metadata['jsonVersion']}"
        self._credentials = credentials
        self._user_agent = meta.config.user_agent
        self._signature = meta.config.signature_version or DEFAULT_SIGNATURE
        self._sleep = sleep
        self._retry = standard.RetryPolicy(
            # As many attempts as the client's own config allows (the store's: 4).
            retry_checker=standard.StandardRetryConditions(
                max_attempts=meta.config.retries.get("total_max_attempts", standard.DEFAULT_MAX_ATTEMPTS)
            ),
            retry_backoff=standard.ExponentialBackoff(
                service_name=SERVICE,
                throttling_detector=standard.ThrottlingErrorDetector(standard.RetryEventAdapter()),
            ),
        )
        self._traced = aws_request_traces("DynamoDB")
        self._pool = endpoint_pool(
            self._url,
            max_connections=meta.config.max_pool_connections,
            connect_timeout=meta.config.connect_timeout,
            read_timeout=meta.config.read_timeout,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **request: Any) -> dict[str, Any]:
        return self._call("PutItem", request)

    def batch_write_item(self, **request: Any) -> dict[str, Any]:
        return self._call("BatchWriteItem", request)

    def batch_execute_statement(self, **request: Any) -> dict[str, Any]:
        return self._call("BatchExecuteStatement", request)

    # --- one call: attempts as botocore's standard retry mode makes them -----------------

    def _call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """The call's events as botocore emits them (so that whatever watches or answers
        boto3's calls, a Stubber-like double or a request meter, sees these too)."""
        model = self._service_model.operation_model(operation)
        context: dict[str, Any] = {"client_region": self._region}
        events, event = self._events, f"{SERVICE}.{operation}"
        events.emit(f"before-parameter-build.{event}", params=request, model=model, context=context)
        answered = events.emit_until_response(
            f"before-call.{event}", model=model, params=request, request_signer=None, context=context
        )[1]
        http, parsed = answered if answered is not None else self._attempts(operation, model, request)
        events.emit(f"after-call.{event}", http_response=http, parsed=parsed, model=model, context=context)
        if http.status_code >= 300:
            raise ClientError(parsed, operation)  # type: ignore[arg-type]
        return parsed

    def _attempts(
        self, operation: str, model: Any, request: dict[str, Any]
    ) -> tuple[_HttpResponse, dict[str, Any]]:
        """Attempts as botocore's standard retry mode makes them."""
        body = json.dumps(request, separators=(",", ":"), default=_encode_bytes).encode()
        attempt = 1
        while True:
            response: _HttpResponse | None = None
            parsed: dict[str, Any] = {}
            caught: Exception | None = None
            try:
                response = self._send(operation, body)
                parsed = self._parse(response)
            except (BotocoreConnectionError, HTTPClientError, ValueError) as error:
                caught = error
            context = standard.RetryContext(
                attempt_number=attempt,
                operation_model=model,
                parsed_response=parsed,
                http_response=response,
                caught_exception=caught,
            )
            if self._retry.should_retry(context):
                self._sleep(self._retry.compute_retry_delay(context))
                attempt += 1
                continue
            if caught is not None:
                raise caught
            assert response is not None
            parsed["ResponseMetadata"] = {
                "RequestId": response.headers.get("x-amzn-requestid", ""),
                "HTTPStatusCode": response.status_code,
                "RetryAttempts": attempt - 1,
            }
            return response, parsed

    def _send(self, operation: str, body: bytes) -> _HttpResponse:
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={
                "X-Amz-Target": f"{self._target}.{operation}",
                "Content-Type": self._content_type,
                "User-Agent": self._user_agent,
            },
        )
        self._sign(operation, request)
        prepared = request.prepare()
        for _, answer in self._events.emit(f"before-send.{SERVICE}.{operation}", request=prepared):
            if answer is not None:
                return _HttpResponse(answer.status_code, answer.headers, answer.content)
        headers = dict(prepared.headers.items())
        with self._traced(operation):
            sent = self._pool.urlopen("POST", self._url, body=body, headers=headers)
        return _HttpResponse(sent.status, sent.headers, sent.data or b"")

    def _sign(self, operation: str, request: AWSRequest) -> None:
        signer = chosen_signer(
            self._events, service=SERVICE, operation=operation, region=self._region, default=self._signature
        )
        if signer is None:
            return
        credentials = self._credentials.get_frozen_credentials() if self._credentials else None
        signer(credentials, SERVICE, self._region).add_auth(request)

    @staticmethod
    def _parse(response: _HttpResponse) -> dict[str, Any]:
        """The body as botocore's JSON protocol parser returns it: the document on success;
        on an error, ``Error`` (code from ``__type``, message) and the error's members
        (a failed condition's ``Item``)."""
        document = json.loads(response.content) if response.content.strip() else {}
        if response.status_code < 300:
            return dict(document)
        members = {k: v for k, v in document.items() if k not in ("__type", "message", "Message")}
        code = str(document.get("__type") or response.headers.get("x-amzn-errortype") or response.status_code)
        message = document.get("message", document.get("Message", ""))
        return {**members, "Error": {"Code": code.rpartition("#")[2].split(":")[0], "Message": message}}
