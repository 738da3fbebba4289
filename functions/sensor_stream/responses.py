"""Shaping Lambda proxy responses."""

from __future__ import annotations

import json
from typing import Any

from .errors import AppError

JSON_HEADERS = {"Content-Type": "application/json"}


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "headers": {**JSON_HEADERS, **(headers or {})}, "body": json.dumps(body)}


def error_response(error: AppError) -> dict[str, Any]:
    return json_response(error.status, error.to_body())


def header(headers: dict[str, str] | None, name: str) -> str | None:
    """Header lookup ignoring case (API Gateway keeps the client's spelling)."""
    wanted = name.lower()
    return next((value for key, value in (headers or {}).items() if key.lower() == wanted), None)
