"""The flush's signed Management API client (sensor_stream/management_api.py) against real
HTTP servers on loopback (a recording one, and the local stack's API Gateway emulator),
next to boto3's client where both should behave alike."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import boto3
import botocore
import botocore.auth
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.hooks import HierarchicalEmitter

from devstack.faults import GatewayFaults, GatewayFaultSettings
from devstack.http_server import AsyncHttpServer
from devstack.lambda_runtime import InProcessFunction
from devstack.websocket_gateway import Routes, WebSocketGateway
from sensor_stream import clients
from sensor_stream.fanout import _THROTTLED, _error_code
from sensor_stream.gateway import ConnectionGateway
from sensor_stream.management_api import SignedManagementApi

REGION = "eu-west-1"
STAGE = "live"
# Like API Gateway's ids, with '/' and '=' that must be percent-encoded in the path.
CONNECTION_ID = "L0SM9cOFv/HcCIhw="
ENCODED_PATH = f"/{STAGE}/@connections/L0SM9cOFv%2FHcCIhw%3D"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


class FakeManagementApi:
    """Records every request and answers with ``answer`` (200 unless told)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answer = Answer(200)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.received.append(
                    Received(
                        self.command, self.path, dict(self.headers.items()), body, self.client_address[1]
                    )
                )
                answer = recorder.answer
                time.sleep(answer.delay_seconds)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                try:
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up waiting (a timeout test)

            do_POST = do_DELETE = _handle

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/{STAGE}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def server() -> Iterator[FakeManagementApi]:
    fake = FakeManagementApi()
    yield fake
    fake.stop()


def signed_client(
    url: str,
    credentials: Credentials | None = None,
    *,
    timeout: float = 2.0,
    connections: int = 4,
    events: HierarchicalEmitter | None = None,
) -> SignedManagementApi:
    return SignedManagementApi(
        url,
        region=REGION,
        credentials=credentials or Credentials("AKIDEXAMPLE", "secret", "session-token"),
        timeout_seconds=timeout,
        max_connections=connections,
        events=events,
    )


def boto3_client(url: str) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token="session-token",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


def signature_is_valid(received: Received, credentials: ReadOnlyCredentials) -> bool:
    """Verify as API Gateway would: sign the received request again at its x-amz-date,
    over the headers it says it signed."""
    authorization = received.headers["Authorization"]
    signed_names = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {name: value for name, value in received.headers.items() if name.lower() in signed_names}
    request = AWSRequest(
        method=received.method,
        url=f"http://{received.headers['Host']}{received.path}",
        data=received.body,
        headers=headers,
    )
    request.context["timestamp"] = received.headers["X-Amz-Date"]
    signer = SigV4Auth(credentials, "execute-api", REGION)
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    return authorization.endswith(f"Signature={signer.signature(string_to_sign, request)}")


# --- the signed request ---------------------------------------------------------------------


def test_a_post_is_signed_for_execute_api_with_the_session_token_like_boto3s(server):
    signed_client(server.url).post_to_connection(ConnectionId=CONNECTION_ID, Data=b'{"type": "x"}')
    boto3_client(server.url).post_to_connection(ConnectionId=CONNECTION_ID, Data=b'{"type": "x"}')
    ours, theirs = server.received

    today = datetime.now(UTC).strftime("%Y%m%d")
    assert (ours.method, ours.path, ours.body) == ("POST", ENCODED_PATH, b'{"type": "x"}')
    assert ours.path == theirs.path
    assert ours.headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{today}/{REGION}/execute-api/aws4_request, "
        "SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="
    )
    assert ours.headers["Authorization"].split("Signature=")[0] == theirs.headers["Authorization"].split(
        "Signature="
    )[0].replace(theirs.headers["X-Amz-Date"][:8], today)
    assert datetime.strptime(ours.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    assert ours.headers["X-Amz-Security-Token"] == "session-token"
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret", "session-token")
    assert signature_is_valid(ours, credentials)
    assert signature_is_valid(theirs, credentials)  # the verifier itself agrees with boto3


def test_without_a_session_token_none_is_sent_or_signed(server):
    signed_client(server.url, Credentials("AKIDEXAMPLE", "secret")).delete_connection(ConnectionId="abc=")
    [request] = server.received

    assert (request.method, request.path) == ("DELETE", f"/{STAGE}/@connections/abc%3D")
    assert "X-Amz-Security-Token" not in request.headers
    assert "SignedHeaders=host;x-amz-date," in request.headers["Authorization"]
    assert signature_is_valid(request, ReadOnlyCredentials("AKIDEXAMPLE", "secret", None))


def test_expiring_credentials_from_the_environment_are_refreshed_before_a_post(server, monkeypatch):
    # Lambda's credentials come from the environment; with an expiry, botocore re-reads it.
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    monkeypatch.setenv("WEBSOCKET_CALLBACK_URL", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFIRST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "first-token")
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)  # botocore would prefer it
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", soon)
    clients.reset()
    try:
        gateway = clients.fanout_gateway()
        # Rotated while the client lives; the first set expires within botocore's window.
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSECOND")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "second-secret")
        monkeypatch.setenv("AWS_SESSION_TOKEN", "second-token")
        monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", later)
        assert gateway.send("abc=", b"{}")
    finally:
        clients.reset()
    [request] = server.received

    assert "Credential=AKIDSECOND/" in request.headers["Authorization"]
    assert request.headers["X-Amz-Security-Token"] == "second-token"
    assert signature_is_valid(request, ReadOnlyCredentials("AKIDSECOND", "second-secret", "second-token"))


def test_the_factory_refuses_to_start_without_credentials(server, monkeypatch):
    monkeypatch.setenv("WEBSOCKET_CALLBACK_URL", server.url)
    monkeypatch.setattr(botocore.session.Session, "get_credentials", lambda self: None)
    clients.reset()
    try:
        with pytest.raises(RuntimeError, match="no AWS credentials"):
            clients.fanout_gateway()
    finally:
        clients.reset()


# --- answers and failures ---------------------------------------------------------------------


def error_answer(status: int, error_type: str | None, message: str | None = "the message") -> Answer:
    headers = {"x-amzn-ErrorType": error_type} if error_type else {}
    return Answer(
        status, json.dumps({"message": message}).encode(), {"Content-Type": "application/json", **headers}
    )


# API Gateway's answer, and the error code botocore reads from it.
ERROR_ANSWERS = {
    "gone": (error_answer(410, "GoneException", None), "GoneException"),
    "gone without a header": (Answer(410), "410"),
    "too large": (error_answer(413, "PayloadTooLargeException"), "PayloadTooLargeException"),
    "throttled": (error_answer(429, "LimitExceededException"), "LimitExceededException"),
    "forbidden": (
        error_answer(403, "ForbiddenException:http://internal.amazon.com/coral/"),
        "ForbiddenException",
    ),
    "server error": (error_answer(500, "InternalServerErrorException"), "InternalServerErrorException"),
    "bad gateway, not JSON": (Answer(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"}), "502"),
    "code in the body": (
        Answer(400, b'{"__type": "BadRequestException", "message": "no"}'),
        "BadRequestException",
    ),
}


@pytest.mark.parametrize(("answer", "code"), ERROR_ANSWERS.values(), ids=ERROR_ANSWERS.keys())
def test_errors_are_the_client_errors_boto3_raises_for_the_same_answer(server, answer, code):
    server.answer = answer
    with pytest.raises(ClientError) as ours:
        signed_client(server.url).post_to_connection(ConnectionId=CONNECTION_ID, Data=b"{}")
    with pytest.raises(ClientError) as theirs:
        boto3_client(server.url).post_to_connection(ConnectionId=CONNECTION_ID, Data=b"{}")

    assert ours.value.response["Error"]["Code"] == code
    assert ours.value.response["ResponseMetadata"]["HTTPStatusCode"] == answer.status
    assert ours.value.response["Error"] == theirs.value.response["Error"]
    assert ours.value.operation_name == "PostToConnection"


@pytest.mark.parametrize("refusal", ["throttled", "server error"])
def test_a_refused_post_is_tried_once(server, refusal):
    # A post that fails is retried on the next tick with what arrived meanwhile; a throttled
    # or failing post must not hold a posting thread through a back-off inside the call.
    server.answer = ERROR_ANSWERS[refusal][0]
    with pytest.raises(ClientError):
        signed_client(server.url).post_to_connection(ConnectionId=CONNECTION_ID, Data=b"{}")

    assert len(server.received) == 1


def test_the_gateway_reports_gone_and_raises_the_rest_as_the_fanout_expects(server):
    gateway = ConnectionGateway(signed_client(server.url))
    outcomes: dict[str, object] = {}
    for name, (answer, _) in ERROR_ANSWERS.items():
        server.answer = answer
        try:
            outcomes[name] = gateway.send(CONNECTION_ID, b"{}")
        except ClientError as error:
            outcomes[name] = "throttled" if _error_code(error) in _THROTTLED else "failed"
    server.answer = Answer(200)
    delivered = gateway.send(CONNECTION_ID, b"{}")
    server.answer = Answer(410)
    gateway.disconnect(CONNECTION_ID)  # already gone: not an error

    assert delivered is True
    assert outcomes == {
        "gone": False,
        "gone without a header": False,
        "too large": "failed",
        "throttled": "throttled",
        "forbidden": "failed",
        "server error": "failed",
        "bad gateway, not JSON": "failed",
        "code in the body": "failed",
    }


def test_a_slow_answer_times_out_as_botocores_read_timeout(server):
    server.answer = Answer(200, delay_seconds=1.0)

    with pytest.raises(ReadTimeoutError) as raised:
        signed_client(server.url, timeout=0.2).post_to_connection(ConnectionId="abc=", Data=b"{}")

    # The fanout catches HTTPClientError (and ClientError, ConnectionError) as a failed post.
    assert isinstance(raised.value, HTTPClientError)


def test_a_connection_that_is_not_accepted_times_out_as_botocores_connect_timeout():
    # A listener whose backlog is full: the kernel drops further SYNs, so connect() hangs.
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    fillers = []
    try:
        port = listener.getsockname()[1]
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
        client = signed_client(f"http://127.0.0.1:{port}/{STAGE}", timeout=0.3)

        with pytest.raises(ConnectTimeoutError):
            client.post_to_connection(ConnectionId="abc=", Data=b"{}")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_refused_connection_is_botocores_endpoint_connection_error():
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    client = signed_client(f"http://127.0.0.1:{port}/{STAGE}")

    with pytest.raises(EndpointConnectionError):
        client.post_to_connection(ConnectionId="abc=", Data=b"{}")


# --- against the local stack's Management API --------------------------------------------------


@pytest.fixture
def local_gateway() -> Iterator[tuple[str, GatewayFaults]]:
    """devstack's API Gateway emulator answering on loopback (no WebSocket client is
    connected: every connection is gone), and its faults."""
    faults = GatewayFaults()
    function = InProcessFunction("connect", lambda event, context: {"statusCode": 200}, timeout_seconds=5)
    gateway = WebSocketGateway(Routes(function, function, function, {}), stage=STAGE, faults=faults)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    management = AsyncHttpServer("management-api", gateway.management_api)
    asyncio.run_coroutine_threadsafe(management.start(0), loop).result(10)
    yield f"{management.url}/{STAGE}", faults
    asyncio.run_coroutine_threadsafe(management.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()


def test_the_local_gateways_answers_reach_the_flush_as_api_gateways_do(local_gateway):
    url, faults = local_gateway
    gateway = ConnectionGateway(signed_client(url, timeout=0.2))

    delivered = gateway.send(CONNECTION_ID, b"{}")
    with pytest.raises(ClientError) as too_large:
        gateway.send(CONNECTION_ID, b"x" * (128 * 1024 + 1))
    faults.settings = GatewayFaultSettings.model_validate({"postLatencyMs": {"median": 500, "p99": 500}})
    with pytest.raises(ReadTimeoutError):
        gateway.send(CONNECTION_ID, b"{}")

    assert delivered is False  # gone
    assert too_large.value.response["Error"]["Code"] == "PayloadTooLargeException"
    assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


# --- connections ------------------------------------------------------------------------------


def test_posts_reuse_kept_alive_connections(server):
    client = signed_client(server.url, connections=4)
    for _ in range(20):
        client.post_to_connection(ConnectionId="abc=", Data=b"{}")
    sequential = {request.client_port for request in server.received}
    server.received.clear()

    def post(_: int) -> None:
        client.post_to_connection(ConnectionId="abc=", Data=b"{}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post, range(200)))
    concurrent = {request.client_port for request in server.received}

    assert len(sequential) == 1
    assert len(server.received) == 200
    # At most one connection per thread (the first is among them).
    assert len(concurrent) <= 4


def test_an_endpoint_that_is_not_http_is_refused():
    with pytest.raises(ValueError, match="not an http"):
        signed_client("wss://abc.execute-api.eu-west-1.amazonaws.com/live")


# --- the signer the session's hooks choose ------------------------------------------------------


class NamedSigner:
    """A signer as botocore's AUTH_TYPE_MAPS holds them: built per request, adds its auth."""

    def __init__(self, credentials: Any, service_name: str, region_name: str) -> None:
        self.scope = f"{region_name}/{service_name}"

    def add_auth(self, request: AWSRequest) -> None:
        request.headers["Authorization"] = f"test-signer {self.scope}"


def test_a_signer_chosen_by_the_sessions_choose_signer_hook_signs_the_posts(server, monkeypatch):
    monkeypatch.setitem(botocore.auth.AUTH_TYPE_MAPS, "test-signer", NamedSigner)
    events = HierarchicalEmitter()
    asked: list[dict[str, Any]] = []

    def choose(**kwargs: Any) -> str:
        asked.append(kwargs)
        return "test-signer"

    events.register("choose-signer.execute-api", cast(Any, choose))  # it answers: the stubs say None
    client = signed_client(server.url, events=events)

    client.post_to_connection(ConnectionId=CONNECTION_ID, Data=b"{}")
    client.delete_connection(ConnectionId=CONNECTION_ID)

    assert [request.headers["Authorization"] for request in server.received] == [
        f"test-signer {REGION}/execute-api"
    ] * 2
    assert asked[0]["signature_version"] == "v4"
    assert asked[0]["signing_name"] == "execute-api"


def test_without_a_hook_that_answers_the_posts_are_signed_with_sigv4(server):
    events = HierarchicalEmitter()
    events.register("choose-signer.execute-api", lambda **kwargs: None)
    credentials = Credentials("AKIDEXAMPLE", "secret", "session-token")
    client = signed_client(server.url, credentials, events=events)

    client.post_to_connection(ConnectionId=CONNECTION_ID, Data=b'{"a": 1}')

    [request] = server.received
    assert signature_is_valid(request, credentials.get_frozen_credentials())


def test_a_hook_that_chooses_no_signature_leaves_the_posts_unsigned(server):
    events = HierarchicalEmitter()
    events.register("choose-signer.execute-api", cast(Any, lambda **kwargs: botocore.UNSIGNED))
    client = signed_client(server.url, events=events)

    client.post_to_connection(ConnectionId=CONNECTION_ID, Data=b"{}")

    [request] = server.received
    assert "Authorization" not in request.headers
