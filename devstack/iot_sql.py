"""A small evaluator for the subset of AWS IoT SQL (version 2016-03-23) the topic rules use.

Supported: ``SELECT <item>, ... FROM '<topic filter>'`` where an item is ``*`` (the JSON
payload's fields) or ``<expression> AS <name>``, and an expression is one of the functions
``encode(*, 'base64')``, ``topic()``, ``topic(n)``, ``timestamp()``. Anything else (WHERE,
other functions, literals, operators) raises :class:`UnsupportedIotSql` when the rule is
compiled, so a rule that the local stack cannot evaluate faithfully fails loudly at start.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class UnsupportedIotSql(ValueError):
    """The statement uses IoT SQL beyond what this evaluator implements."""


class IotSqlEvaluationError(ValueError):
    """The statement cannot be evaluated for this message (e.g. ``*`` on a non-JSON payload)."""


@dataclass(frozen=True)
class Message:
    """What the rules engine knows about an incoming MQTT message."""

    topic: str
    payload: bytes
    timestamp_ms: int


SUPPORTED_FUNCTIONS = "encode(*, 'base64'), topic(), topic(n), timestamp()"

# An expression evaluates to a value, or to None for IoT SQL's "Undefined" (key omitted).
Expression = Callable[[Message], Any]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>\d+)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<symbol>[*,();])
      | (?P<other>\S+?)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int

    @property
    def keyword(self) -> str:
        return self.text.upper() if self.kind == "name" else ""


def _tokenize(sql: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(sql):
        if not sql[position:].strip():
            break
        match = _TOKEN.match(sql, position)
        # The last alternative takes any character, so a match always exists here.
        assert match is not None
        assert match.lastgroup is not None
        tokens.append(_Token(match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, sql: str) -> None:
        self._tokens = _tokenize(sql)
        self._index = 0

    def _peek(self) -> _Token | None:
        return self._tokens[self._index] if self._index < len(self._tokens) else None

    def _next(self, what: str) -> _Token:
        token = self._peek()
        if token is None:
            raise UnsupportedIotSql(f"expected {what}, found the end of the statement")
        self._index += 1
        return token

    def _expect_keyword(self, keyword: str) -> None:
        token = self._next(keyword)
        if token.keyword != keyword:
            raise UnsupportedIotSql(f"expected {keyword} at position {token.position}, found {token.text!r}")

    def parse(self) -> CompiledRule:
        self._expect_keyword("SELECT")
        items = [self._select_item()]
        while (token := self._peek()) is not None and token.text == ",":
            self._index += 1
            items.append(self._select_item())
        self._expect_keyword("FROM")
        source = self._next("a quoted topic filter")
        if source.kind != "string":
            raise UnsupportedIotSql(f"FROM needs a quoted topic filter, found {source.text!r}")
        topic_filter = source.text[1:-1].replace("''", "'")
        if (token := self._peek()) is not None and token.text == ";":
            self._index += 1
        if (token := self._peek()) is not None:
            raise UnsupportedIotSql(
                f"{token.text!r} at position {token.position} is not supported by the local evaluator "
                "(it knows a select list and a quoted topic filter only)"
            )
        return CompiledRule(topic_filter=topic_filter, items=tuple(items))

    def _select_item(self) -> tuple[str | None, Expression]:
        token = self._peek()
        if token is not None and token.text == "*":
            self._index += 1
            if (following := self._peek()) is not None and following.keyword == "AS":
                raise UnsupportedIotSql("'* AS name' is not supported")
            return None, _whole_payload
        expression = self._function_call()
        following = self._peek()
        if following is None or following.keyword != "AS":
            raise UnsupportedIotSql("every selected expression other than * needs 'AS <name>'")
        self._index += 1
        alias = self._next("a name after AS")
        if alias.kind != "name":
            raise UnsupportedIotSql(f"expected a name after AS, found {alias.text!r}")
        return alias.text, expression

    def _function_call(self) -> Expression:
        name = self._next("a function call")
        if name.kind != "name":
            raise UnsupportedIotSql(
                f"expected a function call at position {name.position}, found {name.text!r}"
            )
        if (token := self._peek()) is None or token.text != "(":
            raise UnsupportedIotSql(
                f"{name.text!r}: only the functions {SUPPORTED_FUNCTIONS} can be selected"
            )
        self._index += 1
        arguments: list[_Token] = []
        if (token := self._peek()) is not None and token.text == ")":
            self._index += 1
            return _build_function(name.text.lower(), arguments)
        while True:
            argument = self._next(f"an argument of {name.text}()")
            if argument.kind not in ("string", "number") and argument.text != "*":
                raise UnsupportedIotSql(f"unsupported argument {argument.text!r} in {name.text}()")
            arguments.append(argument)
            separator = self._next("',' or ')'")
            if separator.text == ")":
                return _build_function(name.text.lower(), arguments)
            if separator.text != ",":
                raise UnsupportedIotSql(f"expected ',' or ')' at position {separator.position}")


def _build_function(name: str, arguments: list[_Token]) -> Expression:
    shape = tuple(a.kind if a.text != "*" else "*" for a in arguments)
    if name == "topic" and shape == ():
        return lambda message: message.topic
    if name == "topic" and shape == ("number",):
        level = int(arguments[0].text)
        if level < 1:
            raise UnsupportedIotSql("topic(n) counts levels from 1")
        return lambda message: _topic_level(message.topic, level)
    if name == "timestamp" and shape == ():
        return lambda message: message.timestamp_ms
    if name == "encode" and shape == ("*", "string"):
        encoding = arguments[1].text[1:-1].replace("''", "'")
        if encoding != "base64":
            raise UnsupportedIotSql(f"encode(*, {encoding!r}): only 'base64' is supported")
        return lambda message: base64.b64encode(message.payload).decode("ascii")
    raise UnsupportedIotSql(f"{name}({', '.join(a.text for a in arguments)}) is not supported")


def _topic_level(topic: str, level: int) -> str | None:
    levels = topic.split("/")
    return levels[level - 1] if level <= len(levels) else None


def _whole_payload(message: Message) -> Any:
    try:
        document = json.loads(message.payload)
    except ValueError as exc:
        raise IotSqlEvaluationError(f"SELECT * needs a JSON payload: {exc}") from exc
    if not isinstance(document, dict):
        raise IotSqlEvaluationError("SELECT * needs a JSON object payload")
    return document


@dataclass(frozen=True)
class CompiledRule:
    topic_filter: str
    # (alias, expression); alias None means ``*``: the payload's fields are merged in.
    items: tuple[tuple[str | None, Expression], ...]

    def evaluate(self, message: Message) -> dict[str, Any]:
        """The SELECT result the rule's actions receive; Undefined values are left out."""
        result: dict[str, Any] = {}
        for alias, expression in self.items:
            value = expression(message)
            if alias is None:
                result.update(value)
            elif value is not None:
                result[alias] = value
        return result


def compile_rule(sql: str) -> CompiledRule:
    return _Parser(sql).parse()
