"""Answering a boto3 client's calls in-process, the way botocore's Stubber does: the
request is still validated and serialized, and an error answer raises the client's real
exception class (e.g. ``client.exceptions.GoneException``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

Answer = tuple[AWSResponse, dict[str, Any]]
# Where the answered request would have gone; nothing is sent.
IN_PROCESS_URL = "https://in-process.invalid/"


def success(parsed: dict[str, Any] | None = None) -> Answer:
    response = AWSResponse(IN_PROCESS_URL, 200, HTTPHeaders(), None)
    return response, {"ResponseMetadata": {"HTTPStatusCode": 200}, **(parsed or {})}


def failure(code: str, status: int, message: str = "") -> Answer:
    # API Gateway and IoT name the error in this header; botocore maps it to the exception.
    headers = HTTPHeaders()
    headers["x-amzn-ErrorType"] = code
    return AWSResponse(IN_PROCESS_URL, status, headers, None), {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }


def before_call_event(client: Any, operation: str) -> str:
    return f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"


def fail_operation(
    client: Any,
    operation: str,
    code: str,
    status: int,
    *,
    when: Callable[[dict[str, Any]], bool] | None = None,
    times: int | None = None,
) -> list[dict[str, Any]]:
    """Later calls of ``operation`` on ``client`` whose parameters match ``when`` fail with
    ``code``/``status`` (the first ``times`` of them, or all). Returns the failed calls'
    parameters as they come."""
    failed: list[dict[str, Any]] = []
    service = client.meta.service_model.service_id.hyphenize()

    def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fault_params"] = dict(params)

    def answer(context: dict[str, Any], **_: Any) -> Answer | None:
        params = context.get("fault_params", {})
        if (times is not None and len(failed) >= times) or (when is not None and not when(params)):
            return None  # the call goes on as usual
        failed.append(params)
        return failure(code, status, f"injected by the test: {code}")

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", remember)
    client.meta.events.register(before_call_event(client, operation), answer)
    return failed


def count_calls(client: Any) -> Counter[str]:
    """Operation names of the client's later calls, counted as they are made."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call", count)
    return calls


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def http_answer(url: str, status: int, code: str | None = None) -> AWSResponse:
    """An HTTP answer as the network would give it (for ``before-send``, where botocore
    still parses the answer and applies its retries): empty, or the error ``code``."""
    headers = HTTPHeaders()
    body = b""
    if code is not None:
        headers["x-amzn-ErrorType"] = code
        headers["Content-Type"] = "application/json"
        body = b'{"message": "%s"}' % code.encode()
    return AWSResponse(url, status, headers, _Body(body))


def answer_sent(client: Any, status: int, code: str | None = None) -> list[str]:
    """Every request the client sends is answered ``status`` (``code``) instead of going out,
    after serialising and signing; returns the URLs sent, one per attempt."""
    sent: list[str] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.url)
        return http_answer(request.url, status, code)

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(f"before-send.{service}", answer)
    return sent
