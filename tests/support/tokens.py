"""JWTs for tests: HS256 with the local secret, or signed with a given private key."""

from __future__ import annotations

import time
from typing import Any

import jwt


def claims(
    org: str | None = "acme",
    sub: str = "user-1",
    units: list[str] | None = None,
    expires_in: float = 3600,
    **extra: Any,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"sub": sub, "exp": int(time.time() + expires_in), **extra}
    if org is not None:
        payload["org"] = org
    if units is not None:
        payload["units"] = units
    return payload


def hs256_token(secret: str, **claim_args: Any) -> str:
    return jwt.encode(claims(**claim_args), secret, algorithm="HS256")


def signed_token(key: Any, algorithm: str, kid: str, **claim_args: Any) -> str:
    return jwt.encode(claims(**claim_args), key, algorithm=algorithm, headers={"kid": kid})


def subprotocol_header(token: str) -> str:
    """``Sec-WebSocket-Protocol`` as a browser sends it for ``["sensor-stream.v1", "bearer." + token]``."""
    return f"sensor-stream.v1, bearer.{token}"
