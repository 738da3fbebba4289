"""What the HTTP API's Lambda functions read from a payload-2.0 event: the caller (the
JWT authorizer's verified claims) and the body."""

from __future__ import annotations

import base64

from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model

from .auth import Principal, principal_from_authorizer
from .errors import Unauthorized
from .responses import header
from .settings import Settings


def caller(event: APIGatewayProxyEventV2Model, settings: Settings) -> Principal:
    authorizer = event.requestContext.authorizer
    claims = authorizer.jwt.claims if authorizer and authorizer.jwt else None
    if not claims:
        raise Unauthorized("no verified token claims; send Authorization: Bearer <JWT>")
    return principal_from_authorizer(claims, header(event.headers, "Authorization"), settings)


def body(event: APIGatewayProxyEventV2Model) -> str | bytes | None:
    """The request body; bytes when API Gateway base64-encoded it."""
    text = event.body if isinstance(event.body, str) else None
    if text is not None and event.isBase64Encoded:
        return base64.b64decode(text)
    return text
