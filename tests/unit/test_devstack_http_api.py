"""The HTTP API emulator: JWT authorizer, payload 2.0 event, response mapping, CORS."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model

from devstack.events import flatten_claim
from devstack.http_api import HttpApi, JwtAuthorizer
from devstack.http_server import LoopbackHttpServer
from devstack.lambda_runtime import InProcessFunction
from sensor_stream import catalog

SECRET = "unit-test-secret-of-at-least-32-bytes!"
OTHER_SECRET = "another-secret-of-32-bytes-or-more"
CLAIMS = {"sub": "u1", "org": "acme"}


class IngestDouble:
    """Stands in for the ingest function: records events, answers what it is told."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.answer: Any = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def api() -> Iterator[tuple[str, IngestDouble]]:
    ingest = IngestDouble()
    server = LoopbackHttpServer(
        "http-api",
        HttpApi(
            {"POST /readings": InProcessFunction("ingest", ingest, timeout_seconds=5)}, JwtAuthorizer(SECRET)
        ),
        0,
    )
    server.start()
    yield server.url, ingest
    server.stop()


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "u1", "org": "acme", "exp": int(time.time()) + 60, **claims}, SECRET)


def call(
    url: str, method: str = "POST", body: bytes | None = b"{}", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - loopback http
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback http
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_an_authorized_request_reaches_ingest_as_a_payload_v2_event(api):
    url, ingest = api
    ingest.answer = {"statusCode": 207, "headers": {"X-Answer": "yes"}, "body": '{"accepted": 1}'}

    status, headers, body = call(
        f"{url}/readings?dry=1",
        body=b'{"deviceId": "d1"}',
        Authorization=f"Bearer {token(units=['u1', 'u2'])}",
        **{"Content-Type": "application/json", "X-Custom": "Value"},
    )

    assert (status, headers["X-Answer"], body) == (207, "yes", b'{"accepted": 1}')
    event = ingest.events[0]
    parsed = parse(event=event, model=APIGatewayProxyEventV2Model)
    assert parsed.routeKey == "POST /readings"
    assert (parsed.rawPath, parsed.rawQueryString, parsed.queryStringParameters) == (
        "/readings",
        "dry=1",
        {"dry": "1"},
    )
    assert event["headers"]["x-custom"] == "Value"
    assert (event["body"], event["isBase64Encoded"]) == ('{"deviceId": "d1"}', False)
    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    # API Gateway hands every claim over as a string.
    assert claims["org"] == "acme"
    assert claims["units"] == "[u1 u2]"
    assert claims["exp"].isdigit()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer garbage",
        f"Bearer {jwt.encode({**CLAIMS, 'exp': int(time.time()) + 60}, OTHER_SECRET)}",
        f"Bearer {jwt.encode({**CLAIMS, 'exp': int(time.time()) - 5}, SECRET)}",
        f"Bearer {jwt.encode(CLAIMS, SECRET)}",
    ],
    ids=["missing", "garbage", "other-key", "expired", "no-exp"],
)
def test_a_request_without_a_valid_token_gets_api_gateways_401(api, authorization):
    url, ingest = api
    headers = {"Authorization": authorization} if authorization else {}

    status, _, body = call(f"{url}/readings", **headers)

    assert (status, json.loads(body)) == (401, {"message": "Unauthorized"})
    assert ingest.events == []


def test_the_bearer_scheme_is_optional_as_with_api_gateway(api):
    url, ingest = api

    status, _, _ = call(f"{url}/readings", Authorization=token())

    assert status == 200
    assert len(ingest.events) == 1


def test_binary_bodies_arrive_base64_encoded(api):
    url, ingest = api

    call(
        f"{url}/readings",
        body=b"\x00\x01",
        Authorization=f"Bearer {token()}",
        **{"Content-Type": "application/octet-stream"},
    )

    assert (ingest.events[0]["body"], ingest.events[0]["isBase64Encoded"]) == ("AAE=", True)


def test_a_failing_function_is_a_500_and_a_plain_return_value_is_json(api):
    url, ingest = api
    ingest.answer = RuntimeError("boom")
    failed = call(f"{url}/readings", Authorization=f"Bearer {token()}")
    ingest.answer = {"accepted": 3}
    inferred = call(f"{url}/readings", Authorization=f"Bearer {token()}")

    assert (failed[0], json.loads(failed[2])) == (500, {"message": "Internal Server Error"})
    assert (inferred[0], json.loads(inferred[2])) == (200, {"accepted": 3})


def test_other_routes_are_not_found_and_preflights_are_answered_for_browsers(api):
    url, ingest = api
    missing = call(f"{url}/other", Authorization=f"Bearer {token()}")
    preflight = call(
        f"{url}/readings",
        method="OPTIONS",
        body=None,
        Origin="http://127.0.0.1:8080",
        **{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
    )

    assert missing[0] == 404
    assert preflight[0] == 204
    assert preflight[1]["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
    assert "authorization" in preflight[1]["Access-Control-Allow-Headers"]
    assert ingest.events == []


@pytest.mark.parametrize(
    ("value", "flattened"),
    [("acme", "acme"), (17, "17"), (True, "true"), (["a", "b"], "[a b]"), ({"k": 1}, '{"k":1}')],
)
def test_claims_are_flattened_to_strings(value, flattened):
    assert flatten_claim(value) == flattened


def test_requests_beyond_the_stages_token_bucket_get_429_without_reaching_ingest():
    ingest = IngestDouble()
    api = HttpApi(
        {"POST /readings": InProcessFunction("ingest", ingest)},
        JwtAuthorizer(SECRET),
        throttle_rate=0.001,
        throttle_burst=2,
    )
    server = LoopbackHttpServer("http-api", api, 0)
    server.start()
    try:
        statuses = [call(f"{server.url}/readings", Authorization=f"Bearer {token()}")[0] for _ in range(3)]
    finally:
        server.stop()

    assert statuses[:2] == [200, 200]
    assert statuses[2] == 429
    assert len(ingest.events) == 2


def test_each_catalog_route_reaches_its_function_with_its_path_parameters():
    ingest, rules = IngestDouble(), IngestDouble()
    routes = {
        route: InProcessFunction(spec.name, ingest if spec is catalog.INGEST else rules, timeout_seconds=5)
        for route, spec in catalog.http_routes().items()
    }
    server = LoopbackHttpServer("http-api", HttpApi(routes, JwtAuthorizer(SECRET)), 0)
    server.start()
    authorization = f"Bearer {token()}"
    try:
        put = call(f"{server.url}/alert-rules/warm-freezer", method="PUT", Authorization=authorization)
        listed = call(f"{server.url}/alert-rules", method="GET", body=None, Authorization=authorization)
        posted = call(f"{server.url}/readings", Authorization=authorization)
        # A route key matches one method and one path segment per variable, as in API Gateway.
        wrong_method = call(
            f"{server.url}/alert-rules/warm-freezer", method="POST", Authorization=authorization
        )
        too_deep = call(f"{server.url}/alert-rules/a/b", method="PUT", Authorization=authorization)
    finally:
        server.stop()

    assert [status for status, _, _ in (put, listed, posted)] == [200, 200, 200]
    assert [(e["routeKey"], e.get("pathParameters")) for e in rules.events] == [
        ("PUT /alert-rules/{ruleId}", {"ruleId": "warm-freezer"}),
        ("GET /alert-rules", None),
    ]
    assert [e["routeKey"] for e in ingest.events] == ["POST /readings"]
    assert (wrong_method[0], json.loads(wrong_method[2])) == (404, {"message": "Not Found"})
    assert too_deep[0] == 404
