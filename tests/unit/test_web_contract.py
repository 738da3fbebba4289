"""The browser client's JSDoc typedefs mirror the pydantic models (the single source of truth).

When a message, field or literal value is added to ``sensor_stream/models.py``, these tests
name what ``web/sensor-stream-types.js`` (the typedefs) or ``web/sensor-stream-client.js``
(what it sends and handles) lacks.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic.fields import FieldInfo

from sensor_stream import errors, models
from sensor_stream.models import WireModel

WEB = Path(__file__).resolve().parents[2] / "web"
TYPES_SOURCE = (WEB / "sensor-stream-types.js").read_text()
CLIENT_SOURCE = (WEB / "sensor-stream-client.js").read_text()

TYPEDEF_BLOCK = re.compile(r"/\*\*((?:(?!\*/).)*?@typedef \{object\} (\w+)(?:(?!\*/).)*)\*/", re.DOTALL)
PROPERTY = re.compile(r"@property \{([^}]*)\} (\[?)(\w+)\]?")


@dataclass(frozen=True)
class JsProperty:
    type: str
    optional: bool


def js_typedefs() -> dict[str, dict[str, JsProperty]]:
    typedefs: dict[str, dict[str, JsProperty]] = {}
    for block, name in TYPEDEF_BLOCK.findall(TYPES_SOURCE):
        typedefs[name] = {
            prop: JsProperty(type=js_type, optional=bool(bracket))
            for js_type, bracket, prop in PROPERTY.findall(block)
        }
    return typedefs


def union_members(name: str) -> set[str]:
    """The members of ``@typedef {A | B} name`` (which may span lines)."""
    match = re.search(rf"@typedef \{{([^}}]*)\}} {name}\b", TYPES_SOURCE)
    assert match, f"web/sensor-stream-types.js lacks the {name} union typedef"
    return {member.strip(" *\n") for member in match.group(1).split("|")}


def wire_models() -> list[type[WireModel]]:
    return [
        value
        for value in vars(models).values()
        if isinstance(value, type) and issubclass(value, WireModel) and value is not WireModel
    ]


def server_messages() -> list[type[WireModel]]:
    return [model for model in wire_models() if "type" in model.model_fields]


def client_requests() -> list[type[WireModel]]:
    return [model for model in wire_models() if "action" in model.model_fields]


def nested_models(annotation: Any) -> set[type[WireModel]]:
    if isinstance(annotation, type) and issubclass(annotation, WireModel):
        return {
            annotation,
            *(m for f in annotation.model_fields.values() for m in nested_models(f.annotation)),
        }
    return {model for arg in get_args(annotation) for model in nested_models(arg)}


def browser_models() -> list[type[WireModel]]:
    """Every model a browser sends or receives, with the records nested in them."""
    found: set[type[WireModel]] = set()
    for model in [*server_messages(), *client_requests()]:
        found |= nested_models(model)
    return sorted(found, key=lambda model: model.__name__)


def literal_values(annotation: Any) -> list[str]:
    if get_origin(annotation) is Literal:
        return [str(value) for value in get_args(annotation)]
    return [value for arg in get_args(annotation) for value in literal_values(arg)]


def allows_none(annotation: Any) -> bool:
    if annotation is type(None):
        return True
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return any(allows_none(arg) for arg in get_args(annotation))
    if get_origin(annotation) is typing.Annotated:
        return allows_none(get_args(annotation)[0])
    return False


# What the client sends and receives over the HTTP API (AlertRulesClient): a request body,
# and an answer.
HTTP_REQUEST_BODIES = (models.AlertRuleBody,)
HTTP_ANSWERS = (models.AlertRule,)


def optional_on_wire(model: type[WireModel], alias: str, field: FieldInfo) -> bool:
    """Requests may leave out what has a default; the server leaves out only the fields
    its serializer drops when empty."""
    if "action" in model.model_fields or model in HTTP_REQUEST_BODIES:
        return not field.is_required()
    return alias in model.omit_when_none or getattr(field, "exclude_if", None) is not None


def wire_fields(model: type[WireModel]) -> dict[str, FieldInfo]:
    return {field.alias or name: field for name, field in model.model_fields.items()}


def test_the_browser_sees_every_message_and_request() -> None:
    assert {model.__name__ for model in server_messages()} >= {"ConnectionMessage", "ErrorMessage"}
    assert {model.__name__ for model in client_requests()} >= {"HelloRequest", "SendCommandRequest"}


@pytest.mark.parametrize(
    "model", [*browser_models(), *HTTP_REQUEST_BODIES, *HTTP_ANSWERS], ids=lambda model: model.__name__
)
def test_typedef_mirrors_model(model: type[WireModel]) -> None:
    typedef = js_typedefs().get(model.__name__)
    assert typedef is not None, f"web/sensor-stream-types.js lacks '@typedef {{object}} {model.__name__}'"
    fields = wire_fields(model)
    assert sorted(typedef) == sorted(fields), f"{model.__name__}: properties differ from the model's fields"
    for alias, field in fields.items():
        prop = typedef[alias]
        optional = optional_on_wire(model, alias, field)
        assert prop.optional == optional, (
            f"{model.__name__}.{alias} should be {'[optional]' if optional else 'required'}"
        )
        nullable = allows_none(field.annotation) and not optional
        assert ("null" in prop.type) == nullable, f"{model.__name__}.{alias}: null allowed is {nullable}"
        for value in literal_values(field.annotation):
            assert f'"{value}"' in prop.type, f"{model.__name__}.{alias} lacks the literal {value!r}"


@pytest.mark.parametrize("model", server_messages(), ids=lambda model: model.__name__)
def test_client_handles_every_server_message(model: type[WireModel]) -> None:
    message_type = model.model_fields["type"].default
    assert f'case "{message_type}":' in CLIENT_SOURCE
    assert model.__name__ in union_members("ServerMessage")


@pytest.mark.parametrize("model", client_requests(), ids=lambda model: model.__name__)
def test_client_sends_every_action(model: type[WireModel]) -> None:
    (action,) = literal_values(model.model_fields["action"].annotation)
    assert f'action: "{action}"' in CLIENT_SOURCE
    assert model.__name__ in union_members("ClientRequest")


def error_codes_raised_by_the_server() -> set[str]:
    codes = {"token_expired"}  # sent by the flush before it closes a session
    pending = list(errors.AppError.__subclasses__())
    codes.add(errors.AppError.code)
    while pending:
        error_class = pending.pop()
        codes.add(error_class.code)
        pending.extend(error_class.__subclasses__())
    return codes


def test_the_error_code_union_names_every_code_the_server_sends() -> None:
    union = {member.strip('"') for member in union_members("ServerErrorCode")}
    assert union == error_codes_raised_by_the_server()
