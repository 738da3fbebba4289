"""JSON from outside (device payloads, HTTP bodies, WebSocket messages, command acks) is
decoded here only, so that every way it can fail is a ``MalformedJson`` with a clear
message rather than whatever exception ``json`` raised."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from .errors import MalformedJson

# Deeper documents are refused: no message of the contract nests more than a few levels,
# and pydantic and json.dumps meet their own recursion limits long before json.loads does.
MAX_JSON_DEPTH = 32
# json.loads makes an escaped lone surrogate ("\ud800") a str that cannot be encoded
# again: it would fail later, when the value is echoed, logged or stored.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def decode_json(data: str | bytes, subject: str) -> Any:
    """The JSON value in ``data`` (bytes must be UTF-8); ``subject`` names it in errors,
    e.g. "request body"."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as error:
        raise MalformedJson(f"{subject} is not UTF-8 text") from error
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedJson(f"{subject} is not valid JSON: {error}") from error
    except ValueError as error:
        # What json.loads raises besides JSONDecodeError: an integer over Python's limit.
        raise MalformedJson(
            f"{subject} has an integer of more than {sys.get_int_max_str_digits()} digits"
        ) from error
    except RecursionError as error:
        raise MalformedJson(_too_deep(subject)) from error
    _check_limits(document, subject)
    return document


def _too_deep(subject: str) -> str:
    return f"{subject} nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"


def _check_limits(document: Any, subject: str) -> None:
    """Depth and valid Unicode, walked without recursion."""
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise MalformedJson(f"{subject} has a string with an unpaired surrogate escape")
            continue
        if not isinstance(value, dict | list):
            continue
        if depth == MAX_JSON_DEPTH:
            raise MalformedJson(_too_deep(subject))
        children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        pending.extend((child, depth + 1) for child in children)
