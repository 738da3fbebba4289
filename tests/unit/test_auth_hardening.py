"""Token checks beyond the signature: Cognito's token_use (only ID tokens carry the org),
a small clock leeway, and a JWKS fetch that gives up long before the function would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from devstack.events import flatten_claim
from sensor_stream.auth import TokenVerifier, principal_from_authorizer
from sensor_stream.errors import Unauthorized
from sensor_stream.settings import Settings
from tests.support.tokens import claims

SECRET = "unit-test-hs256-secret-of-at-least-32-bytes"
COGNITO = {"JWT_SECRET": SECRET, "JWT_ORG_CLAIM": "custom:org", "JWT_TOKEN_USE": "id"}
ACCESS_TOKEN_MESSAGE = "token_use must be 'id': send the ID token, which carries the org claim"


def settings(**env: Any) -> Settings:
    return Settings.model_validate(env)


def token(**claim_args: Any) -> str:
    return jwt.encode(claims(**{"org": None, **claim_args}), SECRET, algorithm="HS256")


def refusal(verifier: TokenVerifier, signed: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(signed)
    return caught.value.message


# --- token_use --------------------------------------------------------------------------


def test_cognito_id_token_is_accepted() -> None:
    verifier = TokenVerifier(settings(**COGNITO))

    principal = verifier.verify(token(token_use="id", **{"custom:org": "acme"}))

    assert principal.org_id == "acme"


@pytest.mark.parametrize("token_use", ["access", None])
def test_a_token_that_is_not_an_id_token_is_refused_saying_which_to_send(token_use: str | None) -> None:
    # A Cognito access token: valid, signed by the pool, but without custom:org.
    extra = {"token_use": token_use} if token_use else {}
    verifier = TokenVerifier(settings(**COGNITO))

    assert refusal(verifier, token(client_id="abc", **extra)) == ACCESS_TOKEN_MESSAGE


def test_access_token_through_the_http_authorizer_is_refused_too() -> None:
    # API Gateway's JWT authorizer accepts access tokens by client_id.
    signed = token(token_use="access", client_id="abc", scope="openid")
    verified = {
        name: flatten_claim(value) for name, value in jwt.decode(signed, SECRET, algorithms=["HS256"]).items()
    }

    with pytest.raises(Unauthorized) as caught:
        principal_from_authorizer(verified, f"Bearer {signed}", settings(**COGNITO))
    assert caught.value.message == ACCESS_TOKEN_MESSAGE


def test_token_use_is_not_checked_for_issuers_without_it() -> None:
    verifier = TokenVerifier(settings(JWT_SECRET=SECRET))

    assert verifier.verify(token(org="acme")).org_id == "acme"


# --- clock leeway -----------------------------------------------------------------------


def test_token_issued_by_a_clock_slightly_ahead_is_accepted() -> None:
    # Without a leeway PyJWT refuses an iat or nbf a second in the future.
    verifier = TokenVerifier(settings(JWT_SECRET=SECRET))
    ahead = int(time.time()) + 5

    assert verifier.verify(token(org="acme", iat=ahead, nbf=ahead)).org_id == "acme"


def test_token_not_valid_for_longer_than_the_leeway_is_refused() -> None:
    verifier = TokenVerifier(settings(JWT_SECRET=SECRET, JWT_LEEWAY_SECONDS="2"))

    assert refusal(verifier, token(org="acme", nbf=int(time.time()) + 30)).startswith("invalid token: ")


def test_expiry_allows_no_leeway() -> None:
    # A session ends at its token's exp (its expiry timer): a token past it opens none.
    verifier = TokenVerifier(settings(JWT_SECRET=SECRET, JWT_LEEWAY_SECONDS="60"))

    assert refusal(verifier, token(org="acme", expires_in=-3)) == "token has expired"


# --- the JWKS fetch -------------------------------------------------------------------------


class _SlowJwks(BaseHTTPRequestHandler):
    delay = 5.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        body = b'{"keys": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client gave up (that is the point): writing the late answer fails


@pytest.fixture
def slow_jwks_url() -> Iterator[str]:
    """A JWKS endpoint on loopback that takes 5 s to answer."""
    server = _QuietServer(("127.0.0.1", 0), _SlowJwks)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_jwks_endpoint_refuses_the_token_within_the_fetch_timeout(slow_jwks_url: str) -> None:
    verifier = TokenVerifier(settings(JWT_JWKS_URL=slow_jwks_url, JWT_JWKS_TIMEOUT_SECONDS="0.5"))
    signed = jwt.encode(claims(org="acme"), SECRET, algorithm="HS256", headers={"kid": "k1"})

    started = time.monotonic()
    message = refusal(verifier, signed)

    assert time.monotonic() - started < 3
    assert message.startswith("invalid token: Fail to fetch data from the url")


def test_the_default_jwks_timeout_is_well_inside_the_connect_function() -> None:
    # connect times out after 15 s (sensor_stream.catalog); PyJWT's own default is 30 s.
    assert Settings.model_validate({}).jwt_jwks_timeout_seconds <= 5
