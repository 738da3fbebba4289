"""One Lambda execution environment: a process that imports the function's handler once
(its INIT phase) and then runs one invocation at a time, as Lambda's runtime does.

The stack talks to it over a pipe with JSON, as the Lambda service talks to a runtime:
the event arrives as JSON (so the handler gets exactly what ``json.loads`` of AWS's event
would give), and the result goes back as JSON (a result that is not JSON-serialisable is
a function error, as in Lambda). The context carries the invocation's deadline, so
``get_remaining_time_in_millis`` counts down; SIGUSR1 ends it early (the stack is
stopping and asks a long-running invocation to wind down).

Fault injection (devstack/faults.py): the runtime registers a botocore hook on the
environment's default session before the handler is imported, so every DynamoDB client
the function creates can be made to fail with throttling or 5xx answers at a rate the
stack sets; the function's own code is untouched and its SDK retries apply as in AWS.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import random
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from devstack.config import ACCOUNT_ID, REGION
from devstack.processes import die_with_parent, name_process

log = logging.getLogger("devstack.lambda")

# Indexes into the shared array of DynamoDB fault rates (devstack/faults.py).
DYNAMODB_THROTTLE_RATE = 0
DYNAMODB_SERVER_ERROR_RATE = 1
FAULT_SLOTS = 2


class LambdaContext:
    """The attributes and method of Lambda's context object that handlers and Powertools use."""

    def __init__(
        self,
        function_name: str,
        memory_limit_in_mb: int,
        deadline_epoch_ms: int,
        *,
        request_id: str | None = None,
        log_stream_name: str = "",
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = log_stream_name
        self._deadline_ms = deadline_epoch_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - time.time_ns() // 1_000_000)

    def end_early(self) -> None:
        """Used on shutdown: a handler that watches its remaining time winds down."""
        self._deadline_ms = time.time_ns() // 1_000_000


@dataclass(frozen=True)
class EnvironmentSpec:
    """What an environment needs to start: the function's configuration."""

    function_name: str
    handler: str
    memory_mb: int
    environment: dict[str, str] = field(default_factory=dict)
    nice: int = 0


class _InjectedBody:
    """The raw body botocore reads from a response that a hook answered in place of the
    network (``AWSResponse.content`` joins ``raw.stream()``)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def dynamodb_fault_hook(rates: Sequence[float], chance: Callable[[], float] = random.random) -> Any:
    """A ``before-send.dynamodb`` handler: answers an attempt with a throttling (400) or
    an internal server error (500) at the given rates, else lets it go to the network.
    It runs per attempt, so botocore's retries see the fault as they would in AWS."""
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    def before_send(request: Any, **_: Any) -> Any:
        throttle, server_error = rates[DYNAMODB_THROTTLE_RATE], rates[DYNAMODB_SERVER_ERROR_RATE]
        if throttle <= 0 and server_error <= 0:
            return None
        draw = chance()
        if draw < throttle:
            status, error = 400, "ProvisionedThroughputExceededException"
            message = "The level of configured provisioned throughput for the table was exceeded."
        elif draw < throttle + server_error:
            status, error = 500, "InternalServerError"
            message = "Internal server error"
        else:
            return None
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{error}", "message": message})
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.0"
        headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return AWSResponse(request.url, status, headers, _InjectedBody(body.encode()))

    return before_send


LOCAL_SIGNER = "devstack-credential-scope"


def _credential_scope_signer() -> type:
    from botocore.auth import BaseSigner

    class CredentialScopeAuth(BaseSigner):
        """SigV4's Authorization header without its HMACs: the credential scope (access
        key, date, region, service) that the local emulators read, and no signature,
        which nothing local checks. Signing was a fifth of the functions' SDK time."""

        REQUIRES_REGION = True

        def __init__(self, credentials: Any, service_name: str, region_name: str) -> None:
            self._credentials = credentials
            self._scope = f"{region_name}/{service_name}/aws4_request"

        def add_auth(self, request: Any) -> None:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            access_key = self._credentials.access_key if self._credentials else "local"
            for header in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
                if header in request.headers:  # a retry is signed again
                    del request.headers[header]
            request.headers["X-Amz-Date"] = stamp
            if self._credentials is not None and self._credentials.token:
                request.headers["X-Amz-Security-Token"] = self._credentials.token
            request.headers["Authorization"] = (
                f"AWS4-HMAC-SHA256 Credential={access_key}/{stamp[:8]}/{self._scope}, "
                "SignedHeaders=host;x-amz-date, Signature=0"
            )

    return CredentialScopeAuth


def install_runtime_hooks(rates: Sequence[float]) -> None:
    """Register the local runtime's hooks on boto3's default session, which every client
    the function creates with ``boto3.client(...)`` inherits its event handlers from:
    the fault injection, and the cheap signer in place of SigV4."""
    import boto3
    import botocore.auth

    botocore.auth.AUTH_TYPE_MAPS[LOCAL_SIGNER] = _credential_scope_signer()

    def choose_signer(signature_version: Any = None, **_: Any) -> Any:
        if isinstance(signature_version, str) and signature_version.endswith("v4"):
            return LOCAL_SIGNER
        return None

    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-send.dynamodb", dynamodb_fault_hook(rates))
    boto3.DEFAULT_SESSION.events.register("choose-signer", choose_signer)


def _error_document(error: BaseException) -> dict[str, Any]:
    """The error as Lambda reports it to the invoker."""
    return {
        "errorType": type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_exception(error),
    }


def serve(spec: EnvironmentSpec, connection: Connection, fault_rates: Sequence[float]) -> None:
    """Entry point of the environment's process."""
    die_with_parent()
    name_process(f"fn:{spec.function_name.removeprefix('sensor-stream-')}")
    if spec.nice:
        os.nice(spec.nice)
    os.environ.clear()
    os.environ.update(spec.environment)
    log_stream = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
    os.environ.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "_HANDLER": spec.handler,
        }
    )
    current: list[LambdaContext] = []

    def end_current_invocation(signum: int, frame: Any) -> None:
        for context in current:
            context.end_early()

    signal.signal(signal.SIGUSR1, end_current_invocation)
    install_runtime_hooks(fault_rates)

    try:
        module_name, _, attribute = spec.handler.rpartition(".")
        handler = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:
        # Lambda answers every invocation of a function that cannot initialise with the error.
        log.exception("%s: INIT failed", spec.function_name)
        connection.send_bytes(json.dumps({"initError": _error_document(error)}).encode())
        return
    connection.send_bytes(b'{"ready": true}')

    while True:
        try:
            request = json.loads(connection.recv_bytes())
        except EOFError:
            return  # the stack went away
        context = LambdaContext(
            spec.function_name,
            spec.memory_mb,
            request["deadlineEpochMs"],
            request_id=request["requestId"],
            log_stream_name=log_stream,
        )
        current[:] = [context]
        try:
            answer = {"result": handler(request["event"], context)}
            payload = json.dumps(answer)
        except Exception as error:
            print(
                f"[ERROR] {type(error).__name__}: {error} (RequestId: {context.aws_request_id})\n"
                + "".join(traceback.format_exception(error)),
                file=sys.stderr,
                flush=True,
            )
            payload = json.dumps({"error": _error_document(error)})
        finally:
            current.clear()
        connection.send_bytes(payload.encode())
