"""Token verification: HS256 with the local secret, RS256/ES256 through an issuer's JWKS
(served by monkeypatching PyJWKClient.fetch_data: no network), and the subprotocol."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devstack.events import flatten_claim
from sensor_stream.auth import Principal, TokenVerifier, principal_from_authorizer, token_from_subprotocols
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
    payload = claims(org="acme", sub="alice")

    assert hs256.verify(jwt.encode(payload, SECRET, algorithm="HS256")) == Principal(
        user_id="alice", org_id="acme", units=None, expires_at=payload["exp"]
    )


def test_fractional_exp_becomes_whole_seconds(hs256: TokenVerifier):
    payload = claims() | {"exp": 4_102_444_800.75}

    assert hs256.verify(jwt.encode(payload, SECRET, algorithm="HS256")).expires_at == 4_102_444_800


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


ORG_RULE = "token claim 'org' must be a string of 1-64 characters of [A-Za-z0-9_.:-]"
UNITS_RULE = (
    "token claim 'units' must be a list of unit ids (or one string of comma-separated ones), "
    "each 1-64 characters of [A-Za-z0-9_.:-]"
)


def test_token_without_org_is_refused(hs256: TokenVerifier):
    assert refused(hs256, hs256_token(SECRET, org=None)) == "token lacks the 'org' claim"


@pytest.mark.parametrize(
    ("claim", "value", "message"),
    [
        ("org", "", ORG_RULE),
        ("org", "ac me", ORG_RULE),
        ("org", "a" * 65, ORG_RULE),
        ("org", "acme#1", ORG_RULE),
        # JSON types: a number or boolean is not an org id, nor a list or object.
        ("org", 123, ORG_RULE),
        ("org", True, ORG_RULE),
        ("org", ["acme"], ORG_RULE),
        ("org", {"id": "acme"}, ORG_RULE),
        ("org", None, ORG_RULE),
        ("sub", "", "token claim 'sub' must be a string of 1-256 characters"),
        ("sub", "u" * 257, "token claim 'sub' must be a string of 1-256 characters"),
        ("units", [1, 2], UNITS_RULE),
        ("units", ["ok", "not ok"], UNITS_RULE),
        ("units", ["ok", ""], UNITS_RULE),
        ("units", "ok,not ok", UNITS_RULE),
        ("units", None, UNITS_RULE),
        ("units", {"u1": True}, UNITS_RULE),
        ("units", False, UNITS_RULE),
    ],
)
def test_claim_of_the_wrong_type_charset_or_length_is_refused_by_name(
    hs256: TokenVerifier, claim: str, value: Any, message: str
):
    assert refused(hs256, jwt.encode(claims() | {claim: value}, SECRET, algorithm="HS256")) == message


def test_each_bad_claim_is_named_once(hs256: TokenVerifier):
    token = jwt.encode(claims(org=None) | {"units": ["a b", "c d"]}, SECRET, algorithm="HS256")

    assert refused(hs256, token) == f"token lacks the 'org' claim; {UNITS_RULE}"


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        # Cognito custom attributes are strings: custom:units holds comma-separated ids.
        ("freezer-1,freezer-2", ["freezer-1", "freezer-2"]),
        (" freezer-1 , freezer-2 ", ["freezer-1", "freezer-2"]),
        ("", []),
        ([], []),
    ],
)
def test_units_claim_may_be_a_comma_separated_string(hs256: TokenVerifier, units: Any, expected: list[str]):
    assert hs256.verify(hs256_token(SECRET, units=units)).units == expected


def test_org_claim_name_is_configurable():
    verifier = TokenVerifier(settings(JWT_SECRET=SECRET, JWT_ORG_CLAIM="custom:org"))
    token = hs256_token(SECRET, org=None, **{"custom:org": "acme"})

    assert verifier.verify(token).org_id == "acme"
    assert refused(verifier, hs256_token(SECRET, org="acme")) == "token lacks the 'custom:org' claim"
    assert refused(verifier, hs256_token(SECRET, org=None, **{"custom:org": 7})) == (
        "token claim 'custom:org' must be a string of 1-64 characters of [A-Za-z0-9_.:-]"
    )


def test_verifier_needs_a_secret_or_a_jwks_url():
    with pytest.raises(RuntimeError, match="JWT_JWKS_URL"):
        TokenVerifier(settings())


# --- claims of API Gateway's JWT authorizer --------------------------------------------


def bearer(payload: dict[str, Any]) -> str:
    """The Authorization header the authorizer verified (the issuer's signature is not ingest's to check)."""
    return "Bearer " + jwt.encode(payload, "the-issuers-key-which-ingest-never-sees", algorithm="HS256")


def from_authorizer(signed: dict[str, Any], verified: dict[str, Any], **env: str) -> Principal:
    return principal_from_authorizer(verified, bearer(signed), settings(JWT_SECRET=SECRET, **env))


def test_authorizer_claims_take_their_types_from_the_verified_token():
    signed = {"sub": "gw", "org": "acme", "units": ["fridge-1", "fridge-2"], "exp": 4_102_444_800}
    verified = {"sub": "gw", "org": "acme", "units": "[fridge-1 fridge-2]", "exp": "4102444800"}

    assert from_authorizer(signed, verified) == Principal(
        user_id="gw", org_id="acme", units=["fridge-1", "fridge-2"], expires_at=4_102_444_800
    )


def test_authorizer_claims_with_cognito_units_and_claim_names():
    signed = {"sub": "gw", "custom:org": "acme", "custom:units": "u1,u2", "exp": 4_102_444_800}
    verified = {"sub": "gw", "custom:org": "acme", "custom:units": "u1,u2", "exp": "4102444800"}

    principal = from_authorizer(signed, verified, JWT_ORG_CLAIM="custom:org", JWT_UNITS_CLAIM="custom:units")

    assert (principal.org_id, principal.units) == ("acme", ["u1", "u2"])


@pytest.mark.parametrize(
    ("org", "message"),
    [
        (None, "token lacks the 'org' claim"),
        # API Gateway passes both as "123" / "true": only the token tells them apart.
        (123, ORG_RULE),
        (True, ORG_RULE),
    ],
)
def test_authorizer_claims_without_a_string_org_are_unauthorized(org: Any, message: str):
    signed = {"sub": "gw", "exp": 4_102_444_800} | ({} if org is None else {"org": org})
    verified = {name: flatten_claim(value) for name, value in signed.items()}

    with pytest.raises(Unauthorized) as caught:
        from_authorizer(signed, verified)

    assert caught.value.message == message


@pytest.mark.parametrize(
    ("verified", "claim"),
    [
        ({"sub": "gw", "org": "globex", "exp": "4102444800"}, "org"),
        ({"sub": "gw-2", "org": "acme", "exp": "4102444800"}, "sub"),
        ({"sub": "gw", "org": "acme", "units": "[u1]", "exp": "4102444800"}, "units"),
    ],
)
def test_a_token_other_than_the_verified_one_is_unauthorized(verified: dict[str, str], claim: str):
    signed = {"sub": "gw", "org": "acme", "exp": 4_102_444_800}

    with pytest.raises(Unauthorized) as caught:
        from_authorizer(signed, verified)

    assert caught.value.message == f"the token's '{claim}' claim is not the one API Gateway verified"


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer not-a-jwt"])
def test_authorizer_claims_without_a_readable_token_are_unauthorized(authorization: str | None):
    with pytest.raises(Unauthorized) as caught:
        principal_from_authorizer({"sub": "gw", "org": "acme"}, authorization, settings(JWT_SECRET=SECRET))

    assert caught.value.message.startswith("invalid token: ")


def test_authorizer_token_may_come_without_the_bearer_scheme():
    signed = {"sub": "gw", "org": "acme", "exp": 4_102_444_800}
    token = bearer(signed).removeprefix("Bearer ")

    principal = principal_from_authorizer(
        {"sub": "gw", "org": "acme", "exp": "4102444800"}, token, settings(JWT_SECRET=SECRET)
    )

    assert principal.org_id == "acme"


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

    principal = oidc.verify(token)

    assert (principal.user_id, principal.org_id, principal.units) == ("bob", "acme", None)
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
