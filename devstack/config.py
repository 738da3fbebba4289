"""Settings of the local stack, from environment variables (contract section 4)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPOSITORY_ROOT / "functions"
WEB_DIR = REPOSITORY_ROOT / "web"

LOOPBACK = "127.0.0.1"
# Published in the contract: it signs tokens for the local stack only.
DEFAULT_JWT_SECRET = "sensor-stream-local-development-secret"  # noqa: S105
DEFAULT_ORGS = ("acme", "globex")
# Any syntactically valid account and region: nothing leaves the machine.
ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
STAGE = "local"


def ensure_functions_importable() -> None:
    """Put ``functions/`` (the Lambda asset root) on the import path, as Lambda does."""
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from exc


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name} must be true or false, got {raw!r}")


def jwt_secret() -> str:
    return os.environ.get("JWT_SECRET") or DEFAULT_JWT_SECRET


@dataclass(frozen=True)
class StackConfig:
    """Ports (0 = any free port) and the knobs tests turn to make loops shorter."""

    websocket_port: int
    http_port: int
    mqtt_port: int
    dashboard_port: int
    # Where moto serves the AWS APIs; not in the contract, 0 = any free port.
    aws_port: int
    jwt_secret: str
    simulated_devices: int
    simulated_orgs: tuple[str, ...]
    # EventBridge schedule of the flush function and the function's timeout.
    flush_schedule_seconds: float
    flush_timeout_seconds: float
    # API Gateway WebSocket limits.
    websocket_idle_seconds: float
    websocket_max_seconds: float
    # API Gateway does not guarantee $disconnect; false = never for clients that vanish.
    websocket_disconnect_on_drop: bool
    # Lambda retries a failed asynchronous invocation twice; AWS waits 1 then 2 minutes.
    async_retry_base_seconds: float

    @classmethod
    def from_environment(cls) -> StackConfig:
        orgs = tuple(o.strip() for o in os.environ.get("SIMULATED_ORGS", "").split(",") if o.strip())
        return cls(
            websocket_port=_int("LOCAL_WS_PORT", 3001),
            http_port=_int("LOCAL_HTTP_PORT", 3000),
            mqtt_port=_int("LOCAL_MQTT_PORT", 1883),
            dashboard_port=_int("LOCAL_DASHBOARD_PORT", 8080),
            aws_port=_int("LOCAL_AWS_PORT", 0),
            jwt_secret=jwt_secret(),
            simulated_devices=_int("SIMULATED_DEVICES", 5),
            simulated_orgs=orgs or DEFAULT_ORGS,
            flush_schedule_seconds=_float("LOCAL_FLUSH_SCHEDULE_SECONDS", 60.0),
            flush_timeout_seconds=_float("LOCAL_FLUSH_TIMEOUT_SECONDS", 70.0),
            websocket_idle_seconds=_float("LOCAL_WS_IDLE_TIMEOUT_SECONDS", 600.0),
            websocket_max_seconds=_float("LOCAL_WS_MAX_CONNECTION_SECONDS", 7200.0),
            websocket_disconnect_on_drop=_bool("LOCAL_WS_DISCONNECT_ON_DROP", True),
            async_retry_base_seconds=_float("LOCAL_ASYNC_RETRY_SECONDS", 1.0),
        )
