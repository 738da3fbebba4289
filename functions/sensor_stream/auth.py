"""Bearer tokens: HS256 with a shared secret (local stack) or RS256/ES256 signed by an
OIDC issuer whose keys are published as JWKS (Cognito in AWS)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, ValidationError

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
    # The token's ``exp`` (epoch seconds): a WebSocket session ends then.
    expires_at: int | None = None


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        if not settings.jwt_secret and not settings.jwt_jwks_url:
            raise RuntimeError("set JWT_JWKS_URL (OIDC issuer) or JWT_SECRET (local only)")

    @cached_property
    def _jwks(self) -> jwt.PyJWKClient:
        # Caches keys across invocations of a warm Lambda.
        return jwt.PyJWKClient(self._settings.jwt_jwks_url, cache_keys=True, lifespan=3600)

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
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token has expired") from exc
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        return principal_from_claims(claims, settings)


def principal_from_claims(claims: dict[str, Any], settings: Settings) -> Principal:
    """Claims of a verified token (ours, or API Gateway's JWT authorizer) to a Principal."""
    units = claims.get(settings.jwt_units_claim)
    if isinstance(units, str):
        # API Gateway's authorizer flattens arrays to "[a b]"; Cognito attributes are strings.
        units = [u for u in units.strip("[]").replace(",", " ").split() if u]
    try:
        return Principal(
            user_id=claims.get("sub"),
            org_id=claims.get(settings.jwt_org_claim),
            units=units,
            expires_at=claims.get("exp"),
        )
    except ValidationError as exc:
        raise Unauthorized(f"token lacks a valid '{settings.jwt_org_claim}' or 'sub' claim") from exc


def token_from_subprotocols(header: str | None) -> str:
    """The JWT from ``Sec-WebSocket-Protocol: sensor-stream.v1, bearer.<jwt>``."""
    offered = [p.strip() for p in (header or "").split(",") if p.strip()]
    if SUBPROTOCOL not in offered:
        raise Unauthorized(f"the '{SUBPROTOCOL}' subprotocol is required")
    tokens = [p[len(BEARER_PREFIX) :] for p in offered if p.startswith(BEARER_PREFIX)]
    if len(tokens) != 1 or not tokens[0]:
        raise Unauthorized("offer exactly one 'bearer.<token>' subprotocol")
    return tokens[0]
