"""Bearer tokens: HS256 with a shared secret (local stack) or RS256/ES256 signed by an
OIDC issuer whose keys are published as JWKS (Cognito in AWS)."""

from __future__ import annotations

import math
import time
from functools import cached_property
from typing import Annotated, Any

import jwt
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from .errors import Unauthorized
from .models import Identifier
from .settings import Settings

SUBPROTOCOL = "sensor-stream.v1"
BEARER_PREFIX = "bearer."
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]


class Principal(BaseModel):
    """Who is calling: user, org and the units the token lets them see (None = all)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    org_id: Identifier
    units: list[Identifier] | None = None
    expires_at: int  # epoch seconds: the token's exp


class TokenClaims(BaseModel):
    """The claims sensor-stream reads, strictly as the issuer signed them: a number or a
    boolean where a string belongs is refused rather than becoming org "123"."""

    model_config = ConfigDict(strict=True, frozen=True)

    sub: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    org: Identifier
    units: list[Identifier] | None = None
    # A NumericDate: seconds since the epoch, possibly fractional.
    exp: Annotated[float, Field(allow_inf_nan=False)]

    @field_validator("units", mode="before")
    @classmethod
    def _units_list(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("null is not a list")  # absent means every unit; null is a mistake
        if isinstance(value, str):
            # Cognito custom attributes are strings: custom:units holds "freezer-1,freezer-2".
            return [unit.strip() for unit in value.split(",")] if value.strip() else []
        return value


# What each claim must be, for the message that refuses the token.
CLAIM_RULES = {
    "sub": "a string of 1-256 characters",
    "org": "a string of 1-64 characters of [A-Za-z0-9_.:-]",
    "units": "a list of unit ids (or one string of comma-separated ones), each 1-64 characters "
    "of [A-Za-z0-9_.:-]",
    "exp": "a number of seconds since the epoch",
}


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        if not settings.jwt_secret and not settings.jwt_jwks_url:
            raise RuntimeError("set JWT_JWKS_URL (OIDC issuer) or JWT_SECRET (local only)")

    @cached_property
    def _jwks(self) -> jwt.PyJWKClient:
        # Caches keys across invocations of a warm Lambda; a slow issuer fails the connect
        # quickly (401) instead of holding it until the function times out.
        return jwt.PyJWKClient(
            self._settings.jwt_jwks_url,
            cache_keys=True,
            lifespan=3600,
            timeout=self._settings.jwt_jwks_timeout_seconds,
        )

    def verify(self, token: str) -> Principal:
        settings = self._settings
        options: Any = {"require": ["exp", "sub"], "verify_aud": bool(settings.jwt_audience)}
        try:
            if settings.jwt_jwks_url:
                key: Any = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = ASYMMETRIC_ALGORITHMS
            else:
                key, algorithms = settings.jwt_secret, ["HS256"]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=settings.jwt_audience or None,
                issuer=settings.jwt_issuer or None,
                options=options,
                leeway=settings.jwt_leeway_seconds,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token has expired") from exc
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        # The leeway is for iat/nbf only: a token past its exp would open a session that
        # its own expiry timer closes at once.
        if isinstance(claims.get("exp"), int | float) and claims["exp"] <= time.time():
            raise Unauthorized("token has expired")
        return principal_from_claims(claims, settings)


def _claim_names(settings: Settings) -> dict[str, str]:
    return {"sub": "sub", "org": settings.jwt_org_claim, "units": settings.jwt_units_claim, "exp": "exp"}


def principal_from_claims(claims: dict[str, Any], settings: Settings) -> Principal:
    """The Principal of a token's claims with their JSON types (a verified token's
    payload). The one place claims are checked: token_use, types, charset, lengths."""
    if settings.jwt_token_use and claims.get("token_use") != settings.jwt_token_use:
        # A Cognito access token passes API Gateway's authorizer (by client_id) but holds no
        # custom attributes: say which token to send instead of "lacks custom:org".
        raise Unauthorized(
            f"token_use must be '{settings.jwt_token_use}': send the {settings.jwt_token_use.upper()} "
            "token, which carries the org claim"
        )
    names = _claim_names(settings)
    present = {field: claims[name] for field, name in names.items() if name in claims}
    try:
        token = TokenClaims.model_validate(present)
    except ValidationError as error:
        raise Unauthorized(_describe_claim_errors(error, names)) from error
    return Principal(user_id=token.sub, org_id=token.org, units=token.units, expires_at=math.floor(token.exp))


def _describe_claim_errors(error: ValidationError, names: dict[str, str]) -> str:
    """One phrase per bad claim, named as the token names it (e.g. custom:org)."""
    problems: list[str] = []
    for item in error.errors():
        field = str(item["loc"][0])
        if item["type"] == "missing":
            problem = f"token lacks the '{names[field]}' claim"
        else:
            problem = f"token claim '{names[field]}' must be {CLAIM_RULES[field]}"
        if problem not in problems:  # each bad unit id is an error of its own
            problems.append(problem)
    return "; ".join(problems)


def principal_from_authorizer(
    verified: dict[str, Any], authorization: str | None, settings: Settings
) -> Principal:
    """``POST /readings``: API Gateway's JWT authorizer verified the bearer token, but it
    passes the claims as strings (arrays flattened to "[a b]"), so org 123 and org "123"
    look alike. The types come from that same token in the Authorization header (its
    payload, whose signature the authorizer checked), and its claims must be the verified
    ones."""
    scheme, _, rest = (authorization or "").strip().partition(" ")
    # Like the authorizer, take the header with or without the "Bearer" scheme.
    token = rest.strip() if scheme.lower() == "bearer" else (authorization or "").strip()
    try:
        signed = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise Unauthorized(f"invalid token: {error}") from error
    principal = principal_from_claims(signed, settings)
    # exp is left out: the authorizer enforced it, and how it prints a fractional one is its own.
    for name in ("sub", settings.jwt_org_claim, settings.jwt_units_claim):
        if _as_authorizer_passes_it(signed.get(name)) != verified.get(name):
            raise Unauthorized(f"the token's '{name}' claim is not the one API Gateway verified")
    return principal


def _as_authorizer_passes_it(value: Any) -> Any:
    if isinstance(value, list):
        return "[" + " ".join(str(item) for item in value) + "]"
    return value


def token_from_subprotocols(header: str | None) -> str:
    """The JWT from ``Sec-WebSocket-Protocol: sensor-stream.v1, bearer.<jwt>``."""
    offered = [p.strip() for p in (header or "").split(",") if p.strip()]
    if SUBPROTOCOL not in offered:
        raise Unauthorized(f"the '{SUBPROTOCOL}' subprotocol is required")
    tokens = [p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)]
    if len(tokens) != 1 or not tokens[0]:
        raise Unauthorized("offer exactly one 'bearer.<token>' subprotocol")
    return tokens[0]
