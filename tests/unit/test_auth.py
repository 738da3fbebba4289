"""Token verification: HS256 with the local secret, RS256/ES256 through an issuer's JWKS
(served by monkeypatching PyJWKClient.fetch_data: no network), and the subprotocol."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sensor_stream.auth import Principal, TokenVerifier, principal_from_claims, token_from_subprotocols
from sensor_stream.errors import Unauthorized
from sensor_stream.settings import Settings
from tests.support.tokens import claims, hs256_token, signed_token

SECRET = "unit-test-hs256-secret-of-at-least-32-bytes"
JWKS_URL = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_example/.well-known/jwks.json"
ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_example"
AUDIENCE = "sensor-stream-dashboard"


def settings(**env: str) -> Settings:
    # model_validate skips the environment: only what the test gives counts.
    return Settings.model_validate(env)


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(token)
    assert caught.value.status == 401
    assert caught.value.code == "unauthorized"
    return caught.value.message


# --- HS256 (local stack) ---------------------------------------------------------------


@pytest.fixture
def hs256() -> TokenVerifier:
    return TokenVerifier(settings(JWT_SECRET=SECRET))


def test_hs256_token_yields_the_principal(hs256: TokenVerifier):
    token = hs256_token(SECRET, org="acme", sub="alice")
    expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]

    assert hs256.verify(token) == Principal(user_id="alice", org_id="acme", units=None, expires_at=expires_at)


def test_units_claim_limits_the_principal(hs256: TokenVerifier):
    principal = hs256.verify(hs256_token(SECRET, org="acme", units=["fridge-1", "fridge-2"]))

    assert principal.units == ["fridge-1", "fridge-2"]


def test_expired_token_is_refused(hs256: TokenVerifier):
    assert refused(hs256, hs256_token(SECRET, expires_in=-5)) == "token has expired"


def test_token_signed_with_another_secret_is_refused(hs256: TokenVerifier):
    token = hs256_token("another-secret-that-is-also-32-bytes-long")

    assert refused(hs256, token) == "invalid token: Signature verification failed"


def test_unsigned_token_is_refused(hs256: TokenVerifier):
    token = jwt.encode(claims(), key="", algorithm="none")

    assert refused(hs256, token) == "invalid token: The specified alg value is not allowed"


def test_garbage_is_refused(hs256: TokenVerifier):
    assert refused(hs256, "not-a-jwt").startswith("invalid token: ")


@pytest.mark.parametrize("missing", ["exp", "sub"])
def test_token_without_required_claim_is_refused(hs256: TokenVerifier, missing: str):
    payload = claims()
    del payload[missing]

    message = refused(hs256, jwt.encode(payload, SECRET, algorithm="HS256"))

    assert message == f'invalid token: Token is missing the "{missing}" claim'


@pytest.mark.parametrize("org", [None, "", "ac me", "a" * 65])
def test_token_without_a_valid_org_is_refused(hs256: TokenVerifier, org: str | None):
    message = refused(hs256, hs256_token(SECRET, org=org))

    assert message == "token lacks a valid 'org' or 'sub' claim"


def test_org_claim_name_is_configurable():
    verifier = TokenVerifier(settings(JWT_SECRET=SECRET, JWT_ORG_CLAIM="custom:org"))
    token = hs256_token(SECRET, org=None, **{"custom:org": "acme"})

    assert verifier.verify(token).org_id == "acme"
    assert refused(verifier, hs256_token(SECRET, org="acme")) == (
        "token lacks a valid 'custom:org' or 'sub' claim"
    )


def test_verifier_needs_a_secret_or_a_jwks_url():
    with pytest.raises(RuntimeError, match="JWT_JWKS_URL"):
        TokenVerifier(settings())


# --- claims of API Gateway's JWT authorizer --------------------------------------------


def test_authorizer_claims_with_flattened_units_array():
    principal = principal_from_claims(
        {"sub": "gw", "org": "acme", "units": "[fridge-1 fridge-2]"}, settings(JWT_SECRET=SECRET)
    )

    assert principal == Principal(user_id="gw", org_id="acme", units=["fridge-1", "fridge-2"])


def test_authorizer_claims_without_org_are_unauthorized():
    with pytest.raises(Unauthorized, match="token lacks a valid 'org' or 'sub' claim"):
        principal_from_claims({"sub": "gw"}, settings(JWT_SECRET=SECRET))


# --- RS256 / ES256 through the issuer's JWKS ---------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwks(
    monkeypatch: pytest.MonkeyPatch, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> list[str]:
    """The issuer publishes the RSA key as ``rsa-1`` and the EC key as ``ec-1``; returns
    the URLs fetched."""
    keys = [
        {
            **jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True),
            "kid": "rsa-1",
            "use": "sig",
        },
        {**jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "ec-1", "use": "sig"},
    ]
    fetched: list[str] = []

    def fetch_data(self: jwt.PyJWKClient) -> Any:
        fetched.append(self.uri)
        return {"keys": keys}

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", fetch_data)
    return fetched


@pytest.fixture
def oidc() -> TokenVerifier:
    return TokenVerifier(settings(JWT_JWKS_URL=JWKS_URL, JWT_ISSUER=ISSUER, JWT_AUDIENCE=AUDIENCE))


def oidc_claims(**extra: Any) -> dict[str, Any]:
    return {"iss": ISSUER, "aud": AUDIENCE, **extra}


def test_rs256_token_from_the_issuer_is_accepted(
    oidc: TokenVerifier, jwks: list[str], rsa_key: rsa.RSAPrivateKey
):
    token = signed_token(rsa_key, "RS256", "rsa-1", org="acme", sub="bob", **oidc_claims())

    expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert oidc.verify(token) == Principal(user_id="bob", org_id="acme", expires_at=expires_at)
    assert jwks == [JWKS_URL]


def test_es256_token_from_the_issuer_is_accepted(
    oidc: TokenVerifier, jwks: list[str], ec_key: ec.EllipticCurvePrivateKey
):
    token = signed_token(ec_key, "ES256", "ec-1", org="acme", **oidc_claims())

    assert oidc.verify(token).org_id == "acme"


def test_token_signed_by_another_key_with_a_known_kid_is_refused(oidc: TokenVerifier, jwks: list[str]):
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = signed_token(impostor, "RS256", "rsa-1", **oidc_claims())

    assert refused(oidc, token) == "invalid token: Signature verification failed"


def test_token_with_an_unknown_kid_is_refused(
    oidc: TokenVerifier, jwks: list[str], rsa_key: rsa.RSAPrivateKey
):
    token = signed_token(rsa_key, "RS256", "rotated-away", **oidc_claims())

    assert refused(oidc, token).startswith("invalid token: Unable to find a signing key")


def test_hs256_token_is_refused_when_an_issuer_is_configured(oidc: TokenVerifier, jwks: list[str]):
    # No algorithm confusion: a symmetric token never passes the JWKS path.
    token = jwt.encode(claims(**oidc_claims()), SECRET, algorithm="HS256", headers={"kid": "rsa-1"})

    assert refused(oidc, token).startswith("invalid token: ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"iss": "https://evil.example"}, "invalid token: Invalid issuer"),
        ({"aud": "someone-else"}, "invalid token: Audience doesn't match"),
    ],
)
def test_wrong_issuer_or_audience_is_refused(
    oidc: TokenVerifier, jwks: list[str], rsa_key: rsa.RSAPrivateKey, extra: dict[str, str], message: str
):
    token = signed_token(rsa_key, "RS256", "rsa-1", **oidc_claims(**extra))

    assert refused(oidc, token) == message


def test_expired_issuer_token_is_refused(oidc: TokenVerifier, jwks: list[str], rsa_key: rsa.RSAPrivateKey):
    token = signed_token(rsa_key, "RS256", "rsa-1", expires_in=-60, **oidc_claims())

    assert refused(oidc, token) == "token has expired"


def test_unreachable_jwks_refuses_the_token(
    oidc: TokenVerifier, monkeypatch: pytest.MonkeyPatch, rsa_key: rsa.RSAPrivateKey
):
    def unreachable(self: jwt.PyJWKClient) -> Any:
        raise jwt.PyJWKClientConnectionError("Fail to fetch data from the url")

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", unreachable)
    token = signed_token(rsa_key, "RS256", "rsa-1", **oidc_claims())

    assert refused(oidc, token) == "invalid token: Fail to fetch data from the url"


# --- the Sec-WebSocket-Protocol header ---------------------------------------------------


def test_token_is_taken_from_the_bearer_subprotocol():
    assert token_from_subprotocols("sensor-stream.v1, bearer.abc.def.ghi") == "abc.def.ghi"
    assert token_from_subprotocols("bearer.abc.def.ghi,sensor-stream.v1") == "abc.def.ghi"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "the 'sensor-stream.v1' subprotocol is required"),
        ("", "the 'sensor-stream.v1' subprotocol is required"),
        ("bearer.abc.def.ghi", "the 'sensor-stream.v1' subprotocol is required"),
        ("sensor-stream.v1", "offer exactly one 'bearer.<token>' subprotocol"),
        ("sensor-stream.v1, bearer.", "offer exactly one 'bearer.<token>' subprotocol"),
        ("sensor-stream.v1, bearer.a.b.c, bearer.d.e.f", "offer exactly one 'bearer.<token>' subprotocol"),
    ],
)
def test_bad_subprotocol_header_is_unauthorized(header: str | None, message: str):
    with pytest.raises(Unauthorized) as caught:
        token_from_subprotocols(header)

    assert caught.value.message == message
