"""Print a bearer token for the local stack: ``python -m devstack.token --org acme [--units a,b]``.

The token is HS256-signed with ``JWT_SECRET`` (the local stack's default unless set),
carries the claims of contract section 3 (``sub``, ``org``, ``exp``, optional ``units``)
under the claim names the functions read, and the issuer/audience when configured.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import jwt

from devstack.config import jwt_secret

DEFAULT_SUBJECT = "local-developer"
DEFAULT_TTL_SECONDS = 12 * 3600


def mint_token(
    org_id: str,
    *,
    units: Sequence[str] | None = None,
    subject: str = DEFAULT_SUBJECT,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    secret: str | None = None,
    now: float | None = None,
) -> str:
    from sensor_stream.settings import Settings

    settings = Settings()
    issued_at = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "sub": subject,
        settings.jwt_org_claim: org_id,
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
    }
    if units is not None:
        claims[settings.jwt_units_claim] = list(units)
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, secret or jwt_secret(), algorithm="HS256")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.token", description=__doc__.splitlines()[0])
    parser.add_argument("--org", required=True, help="orgId the token grants")
    parser.add_argument("--units", help="comma-separated unitIds the token is limited to (default: all)")
    parser.add_argument("--sub", default=DEFAULT_SUBJECT, help="user id (sub claim)")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime in seconds")
    args = parser.parse_args(argv)
    units = [u.strip() for u in args.units.split(",") if u.strip()] if args.units else None
    print(mint_token(args.org, units=units, subject=args.sub, ttl_seconds=args.ttl))


if __name__ == "__main__":
    main()
