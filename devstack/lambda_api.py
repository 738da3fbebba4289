"""Lambda's Invoke API for the functions of the local stack: what boto3's ``lambda`` client
reaches through ``AWS_ENDPOINT_URL_LAMBDA``, as the flush's shard 0 uses it to start the
other fan-out shards (sensor_stream.coordination.LambdaWorkerStarter).

``POST /2015-03-31/functions/{FunctionName}/invocations`` with ``X-Amz-Invocation-Type``
``Event`` queues the event (202, retried on error like every asynchronous invocation
here) and ``RequestResponse`` (the default) answers the function's result (200). An
unknown function is Lambda's 404 ``ResourceNotFoundException``.
https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from .http_server import HttpRequest, HttpResponse
from .lambda_runtime import AsyncInvoker, Function, FunctionError

API_VERSION = "2015-03-31"


def _error(status: int, error_type: str, message: str) -> HttpResponse:
    return HttpResponse.json(status, {"Type": "User", "message": message}, {"x-amzn-ErrorType": error_type})


class LambdaInvokeApi:
    """An ``HttpRequest -> HttpResponse`` endpoint; ``functions`` by their function name
    (``sensor-stream-flush``), filled once they exist (the endpoint starts before them,
    since their environment holds its URL)."""

    def __init__(self, invoker: AsyncInvoker) -> None:
        self.functions: dict[str, Function] = {}
        self._invoker = invoker

    def serve(self, functions: Mapping[str, Function]) -> None:
        self.functions.update(functions)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        segments = [unquote(segment) for segment in request.raw_path.split("/") if segment]
        match request.method, segments:
            case "POST", [version, "functions", name, "invocations"] if version == API_VERSION:
                return self._invoke(name.rsplit(":", 1)[-1], request)
        return _error(
            404, "UnknownOperationException", f"no such operation: {request.method} {request.raw_path}"
        )

    def _invoke(self, name: str, request: HttpRequest) -> HttpResponse:
        function = self.functions.get(name)
        if function is None:
            return _error(404, "ResourceNotFoundException", f"Function not found: {name}")
        try:
            event: Any = json.loads(request.body or b"{}")
        except ValueError:
            return _error(400, "InvalidRequestContentException", "Could not parse request body into json")
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type == "Event":
            self._invoker.invoke(function, event, "lambda:Invoke")
            return HttpResponse(202)
        if invocation_type != "RequestResponse":
            return _error(
                400, "InvalidParameterValueException", f"unsupported invocation type {invocation_type}"
            )
        try:
            result = function.invoke(event)
        except FunctionError as error:
            # Lambda answers 200 and names the function's failure in a header.
            body = {"errorType": error.error_type, "errorMessage": str(error)}
            return HttpResponse.json(200, body, {"X-Amz-Function-Error": "Unhandled"})
        return HttpResponse.json(200, result)
