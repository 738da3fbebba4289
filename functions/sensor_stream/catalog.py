"""The functions and their entry points, declared once: the CDK stack, the local stack and
the tests derive each function's handler, memory, timeout and WebSocket routes from here."""

from __future__ import annotations

from dataclasses import dataclass

from .models import SESSION_ACTIONS

# API Gateway's own route keys (no client action selects them).
CONNECT_ROUTE = "$connect"
DISCONNECT_ROUTE = "$disconnect"
DEFAULT_ROUTE = "$default"


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    description: str
    memory_mb: int
    timeout_seconds: int
    # WebSocket route keys this function answers (route selection `$request.body.action`).
    websocket_routes: tuple[str, ...] = ()
    # HTTP API route keys (behind the JWT authorizer).
    http_routes: tuple[str, ...] = ()
    # Asynchronous invocations (IoT rules, the schedule): Lambda's retries of a failed
    # event and how long an event may wait for an environment before it is dropped.
    async_retry_attempts: int = 2
    async_max_event_age_seconds: int = 6 * 3600

    @property
    def handler(self) -> str:
        return f"{self.name}.handler.lambda_handler"

    @property
    def client_actions(self) -> tuple[str, ...]:
        return tuple(route for route in self.websocket_routes if not route.startswith("$"))


INGEST = FunctionSpec(
    name="ingest",
    description="Validates and stores readings from IoT Core and POST /readings",
    memory_mb=512,
    timeout_seconds=30,
    http_routes=("POST /readings",),
)
RULES = FunctionSpec(
    name="rules",
    description="Alert rules: PUT, GET and DELETE /alert-rules",
    memory_mb=256,
    timeout_seconds=15,
    http_routes=("PUT /alert-rules/{ruleId}", "GET /alert-rules", "DELETE /alert-rules/{ruleId}"),
)
CONNECT = FunctionSpec(
    name="connect",
    description="WebSocket connect, disconnect and client requests",
    memory_mb=512,
    timeout_seconds=15,
    websocket_routes=(CONNECT_ROUTE, DISCONNECT_ROUTE, DEFAULT_ROUTE, *SESSION_ACTIONS),
)
# One invocation ticks until the next scheduled one takes over (about a minute later); the
# timeout leaves room for a late schedule before a second goes without a tick. A failed
# loop is not retried and a start that waited a minute is dropped: the next schedule
# starts a fresh one.
FLUSH_SCHEDULE_SECONDS = 60
FLUSH = FunctionSpec(
    name="flush",
    description="Delivers each second's new readings to the subscribed WebSocket connections",
    memory_mb=1024,
    timeout_seconds=120,
    async_retry_attempts=0,
    async_max_event_age_seconds=FLUSH_SCHEDULE_SECONDS,
)
PUBLISH = FunctionSpec(
    name="publish",
    description="Sends commands to devices and relays their acknowledgements",
    memory_mb=256,
    timeout_seconds=15,
    websocket_routes=("sendCommand",),
)
FUNCTIONS = (INGEST, CONNECT, FLUSH, PUBLISH, RULES)


def function(name: str) -> FunctionSpec:
    """The function declared under this name."""
    (spec,) = [spec for spec in FUNCTIONS if spec.name == name]
    return spec


def websocket_routes() -> dict[str, FunctionSpec]:
    """Every WebSocket route key and the function behind it."""
    return {route: spec for spec in FUNCTIONS for route in spec.websocket_routes}


CLIENT_ACTIONS = tuple(route for route in websocket_routes() if not route.startswith("$"))


def http_routes() -> dict[str, FunctionSpec]:
    """Every HTTP API route key and the function behind it."""
    return {route: spec for spec in FUNCTIONS for route in spec.http_routes}
