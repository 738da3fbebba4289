"""Errors that reach a client as ``{"error": {"code", "message", "details"?}}``."""

from typing import Any

from pydantic import ValidationError


def describe_errors(error: ValidationError) -> list[dict[str, str]]:
    """pydantic errors as ``[{"field": "temperature", "message": ...}]`` on wire names."""
    return [
        {"field": ".".join(str(p) for p in item["loc"]) or "(body)", "message": item["msg"]}
        for item in error.errors(include_url=False)
    ]


class AppError(Exception):
    """A failure the caller can act on; ``status`` is the HTTP status where there is one."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class ValidationFailed(AppError):
    code = "validation_error"


class MalformedJson(AppError):
    code = "malformed_json"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class UnknownAction(AppError):
    code = "unknown_action"


class Conflict(AppError):
    status = 409
    code = "conflict"


class Unavailable(AppError):
    status = 503
    code = "unavailable"


class LimitExceeded(AppError):
    # Over HTTP: the request is well formed, but the org is at a limit.
    status = 409
    code = "limit_exceeded"


class Throttled(AppError):
    status = 429
    code = "throttled"
