"""The alert-rules routes of the HTTP API for the browser tests that run against the scripted
contract peer: rules validated by the real model (so the page sees the real ``details``),
kept in memory, CORS open as the local stack's, and a switch to answer as API Gateway's
authorizer does to a token it refuses."""

from __future__ import annotations

import http.server
import json
from typing import Any

from devstack.http_server import BackgroundHttpServer
from sensor_stream.errors import AppError, NotFound
from sensor_stream.models import AlertRule, AlertRuleBody
from sensor_stream.protocol import validate

PREFIX = "/alert-rules"


class FakeRulesApi:
    def __init__(self) -> None:
        self.rules: dict[str, dict[str, Any]] = {}
        # (method, path, body) of every request but the preflights.
        self.requests: list[tuple[str, str, Any]] = []
        # A status to answer every request with, as API Gateway answers a refused token.
        self.refuse_with: int | None = None
        # How many of the next requests fail with 503, as a busy or failing backend would.
        self.fail_next = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_OPTIONS(self) -> None:
                outer._answer(self, 204, None)

            def do_GET(self) -> None:
                outer._handle(self)

            def do_PUT(self) -> None:
                outer._handle(self)

            def do_DELETE(self) -> None:
                outer._handle(self)

        self._server = BackgroundHttpServer("rules-api", Handler, 0)
        self._server.start()

    @property
    def url(self) -> str:
        return self._server.url

    def close(self) -> None:
        self._server.stop()

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        method, path = handler.command, handler.path
        self.requests.append((method, path, body))
        if self.refuse_with is not None:
            self._answer(handler, self.refuse_with, {"message": "Unauthorized"})
            return
        if self.fail_next > 0:
            self.fail_next -= 1
            self._answer(handler, 503, {"message": "Service Unavailable"})
            return
        rule_id = path.removeprefix(PREFIX).strip("/")
        try:
            if method == "GET":
                self._answer(handler, 200, {"rules": list(self.rules.values())})
            elif method == "PUT":
                fields = validate(AlertRuleBody, body, "alert rule")
                rule = AlertRule(rule_id=rule_id, **fields.model_dump()).to_wire()
                self.rules[rule_id] = rule
                self._answer(handler, 200, rule)
            elif rule_id in self.rules:
                del self.rules[rule_id]
                self._answer(handler, 204, None)
            else:
                raise NotFound(f"no alert rule {rule_id!r} in your organization")
        except AppError as error:
            self._answer(handler, error.status, error.to_body())

    @staticmethod
    def _answer(handler: http.server.BaseHTTPRequestHandler, status: int, document: Any) -> None:
        raw = json.dumps(document).encode() if document is not None else b""
        handler.send_response(status)
        handler.send_header("Access-Control-Allow-Origin", handler.headers.get("Origin") or "*")
        handler.send_header("Access-Control-Allow-Methods", "GET, PUT, DELETE, OPTIONS")
        handler.send_header("Access-Control-Allow-Headers", "authorization, content-type")
        if raw:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)
