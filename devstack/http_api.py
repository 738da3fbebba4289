"""An API Gateway HTTP API on loopback: the routes of ``sensor_stream.catalog`` (``POST
/readings``, the alert rules) behind a JWT authorizer, each invoking its function with a
payload format 2.0 event.

Locally the authorizer verifies HS256 with ``JWT_SECRET``; in AWS it verifies the
issuer's RS256 keys. Either way the function receives the verified claims the way API
Gateway passes them: every value a string, arrays flattened to ``"[a b]"``.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import threading
from collections.abc import Mapping
from typing import Any

import jwt
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from devstack.events import http_api_event
from devstack.http_server import HttpRequest, HttpResponse
from devstack.lambda_runtime import Function, StackStopping
from devstack.websocket_gateway import TokenBucket
from sensor_stream.api_limits import (
    HTTP_THROTTLE_BURST_LIMIT,
    HTTP_THROTTLE_RATE_LIMIT,
)

log = logging.getLogger("devstack.http_api")

UNAUTHORIZED = {"message": "Unauthorized"}
_TEXT_TYPES = ("text/", "application/json", "+json", "application/xml", "+xml", "application/javascript")
_FORM_TYPE = "application/x-www-form-urlencoded"


class JwtAuthorizer:
    """What the HTTP API's JWT authorizer checks: signature, ``exp``/``nbf``/``iat``, and
    issuer and audience when configured."""

    def __init__(self, secret: str, *, issuer: str = "", audience: str = "") -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience

    def claims(self, authorization: str | None) -> dict[str, Any] | None:
        """The verified claims, or None (API Gateway then answers 401 itself)."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        # The authorizer takes the header with or without the "Bearer" scheme.
        token = token.strip() if scheme.lower() == "bearer" else authorization.strip()
        try:
            return jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=self._issuer or None,
                audience=self._audience or None,
                options={"require": ["exp"], "verify_aud": bool(self._audience)},
            )
        except jwt.PyJWTError as error:
            log.info("token refused: %s", error)
            return None


def _is_text(content_type: str) -> bool:
    content_type = content_type.lower()
    return content_type.startswith(_FORM_TYPE) or any(kind in content_type for kind in _TEXT_TYPES)


def _url_rule(route_key: str) -> Rule:
    """An API Gateway route key (``PUT /alert-rules/{ruleId}``) as a werkzeug rule: a
    ``{name}`` path variable matches one path segment, as in API Gateway."""
    method, path = route_key.split(" ", 1)
    return Rule(re.sub(r"\{(\w+)\}", r"<\1>", path), methods=[method], endpoint=route_key)


class HttpApi:
    def __init__(
        self,
        routes: Mapping[str, Function],
        authorizer: JwtAuthorizer,
        *,
        throttle_rate: float = HTTP_THROTTLE_RATE_LIMIT,
        throttle_burst: int = HTTP_THROTTLE_BURST_LIMIT,
    ) -> None:
        """``routes``: each route key (``METHOD /path/{var}``) and the function behind it."""
        self._functions = dict(routes)
        self._url_map = Map([_url_rule(route_key) for route_key in routes], strict_slashes=False)
        self._methods = sorted({route_key.split(" ", 1)[0] for route_key in routes} | {"OPTIONS"})
        self._authorizer = authorizer
        # The stage's token bucket; HttpApi is called from many server threads.
        self._throttle = TokenBucket(throttle_rate, throttle_burst)
        self._throttle_lock = threading.Lock()
        self.api_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self._route(request)
        origin = request.headers.get("Origin")
        if origin:
            # The HTTP API's CORS configuration, open to any origin locally.
            response.headers.update(
                {"Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Max-Age": "600"}
            )
        return response

    def _route(self, request: HttpRequest) -> HttpResponse:
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            return HttpResponse(
                204,
                headers={
                    "Access-Control-Allow-Methods": ", ".join(self._methods),
                    "Access-Control-Allow-Headers": "authorization, content-type",
                },
            )
        try:
            route_key, path_parameters = self._url_map.bind("localhost").match(
                request.raw_path, method=request.method
            )
        except HTTPException:
            # API Gateway answers an unmatched method or path alike.
            return HttpResponse.json(404, {"message": "Not Found"})
        with self._throttle_lock:
            admitted = self._throttle.take()
        if not admitted:
            # What the HTTP API answers once the stage's bucket is empty.
            return HttpResponse.json(429, {"message": "Too Many Requests"})
        claims = self._authorizer.claims(request.headers.get("Authorization"))
        if claims is None:
            return HttpResponse.json(
                401, UNAUTHORIZED, {"www-authenticate": 'Bearer scope="" error="invalid_token"'}
            )
        function = self._functions[route_key]
        try:
            result = function.invoke(self._event(request, claims, route_key, path_parameters))
        except StackStopping:
            return HttpResponse.json(503, {"message": "Service Unavailable"})
        except Exception:
            log.exception("%s failed on %s", function.name, route_key)
            return HttpResponse.json(500, {"message": "Internal Server Error"})
        return self._response(result)

    def _event(
        self,
        request: HttpRequest,
        claims: dict[str, Any],
        route_key: str,
        path_parameters: Mapping[str, str],
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
        # A body that is not text reaches the function base64-encoded.
        binary = bool(request.body) and not _is_text(headers.get("content-type", ""))
        body: str | None = None
        if binary:
            body = base64.b64encode(request.body).decode()
        elif request.body:
            body = request.body.decode("utf-8", errors="replace")
        return http_api_event(
            route_key,
            api_id=self.api_id,
            raw_path=request.raw_path,
            headers=headers,
            claims=claims,
            source_ip=request.client_ip,
            method=request.method,
            protocol=request.protocol,
            raw_query=request.raw_query,
            query={k: ",".join(v) for k, v in request.query.items()} if request.raw_query else None,
            path_parameters=path_parameters,
            cookies=cookies,
            body=body,
            base64_encoded=binary,
        )

    @staticmethod
    def _response(result: Any) -> HttpResponse:
        """Payload 2.0 response mapping, including the inferred form for a plain return value."""
        if not (isinstance(result, dict) and "statusCode" in result):
            return HttpResponse.json(200, result)
        body = result.get("body") or ""
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        for cookie in result.get("cookies") or []:
            # One Set-Cookie line per cookie is not expressible in a dict; the API uses none.
            headers["Set-Cookie"] = cookie
        return HttpResponse(int(result["statusCode"]), raw, headers)
