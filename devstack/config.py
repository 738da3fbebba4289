"""Settings of the local stack, from environment variables (contract section 4)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
WEB_DIR = REPOSITORY_ROOT / "web"

LOOPBACK = "127.0.0.1"
# Published in the contract: it signs tokens for the local stack only.
DEFAULT_JWT_SECRET = "sensor-stream-local-development-secret"  # noqa: S105
DEFAULT_ORGS = ("acme", "globex")
# Any syntactically valid account and region: nothing leaves the machine.
ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
STAGE = "local"


def jwt_secret() -> str:
    return os.environ.get("JWT_SECRET") or DEFAULT_JWT_SECRET


class StackConfig(BaseSettings):
    """Ports (0 = any free port) and the knobs tests turn to make loops shorter, read
    from the environment (names in devstack/README.md)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    websocket_port: int = Field(3001, ge=0, le=65535, alias="LOCAL_WS_PORT")
    http_port: int = Field(3000, ge=0, le=65535, alias="LOCAL_HTTP_PORT")
    mqtt_port: int = Field(1883, ge=0, le=65535, alias="LOCAL_MQTT_PORT")
    dashboard_port: int = Field(8080, ge=0, le=65535, alias="LOCAL_DASHBOARD_PORT")
    # Where moto serves the AWS APIs; not in the contract, 0 = any free port.
    aws_port: int = Field(0, ge=0, le=65535, alias="LOCAL_AWS_PORT")
    jwt_secret: str = Field(DEFAULT_JWT_SECRET, min_length=1, alias="JWT_SECRET")
    simulated_devices: int = Field(5, ge=0, alias="SIMULATED_DEVICES")
    # Alert rules for the simulated orgs set through the HTTP API at start-up
    # (devstack/example_rules.py), and a sure excursion for them to catch.
    example_rules: bool = Field(True, alias="LOCAL_EXAMPLE_RULES")
    # Comma-separated in the environment.
    simulated_orgs: Annotated[tuple[str, ...], NoDecode] = Field(DEFAULT_ORGS, alias="SIMULATED_ORGS")
    # EventBridge schedule of the flush function and the function's timeout.
    flush_schedule_seconds: float = Field(60.0, gt=0, alias="LOCAL_FLUSH_SCHEDULE_SECONDS")
    flush_timeout_seconds: float = Field(120.0, gt=0, alias="LOCAL_FLUSH_TIMEOUT_SECONDS")
    # API Gateway WebSocket limits.
    websocket_idle_seconds: float = Field(600.0, gt=0, alias="LOCAL_WS_IDLE_TIMEOUT_SECONDS")
    websocket_max_seconds: float = Field(7200.0, gt=0, alias="LOCAL_WS_MAX_CONNECTION_SECONDS")
    # API Gateway does not guarantee $disconnect; false = never for clients that vanish.
    websocket_disconnect_on_drop: bool = Field(True, alias="LOCAL_WS_DISCONNECT_ON_DROP")
    # Lambda retries a failed asynchronous invocation twice; AWS waits 1 then 2 minutes.
    async_retry_base_seconds: float = Field(1.0, gt=0, alias="LOCAL_ASYNC_RETRY_SECONDS")
    # Most execution environments (worker processes) per function; the flush needs two
    # (the running loop and its successor, which waits on the lease).
    # The flush's fan-out shards here (each a flusher with its own environment, two at a
    # hand-over): FLUSH_MAX_SHARDS of the functions, kept small for two cores.
    flush_max_shards: int = Field(4, ge=1, le=32, alias="FLUSH_MAX_SHARDS")
    # A shard's load (connections, or posts a second where more) before one more shard
    # (AWS: 400, a third of a vCPU at 512 MB). Here every shard shares the same two cores
    # and reads every reading again: at 1,000 readings/s to 200 browsers four shards fell
    # behind within seconds where one kept up, and at 1,800 readings/s two shards lost
    # readings where one only fell behind. So one shard until 10,000 (set it lower to see
    # the sharding work, as tests/e2e/test_fanout_shards.py does).
    flush_connections_per_shard: int = Field(10_000, ge=1, alias="FLUSH_CONNECTIONS_PER_SHARD")
    # Ingest: three on two cores, all started with the stack. An invocation waits ~8-10 ms
    # on moto and the busy cores for ~2 ms of CPU, so environments bound it more than CPU:
    # four kept up at 300 messages/s to 200 browsers in 10 of 11 runs where three did in 7
    # of 11, but past capacity (1,800 readings/s) four took the flush's CPU until hand-overs
    # closed connections and readings were lost, where three only fell behind; six fell
    # behind at 300/s (devstack/README.md, "What bounds throughput").
    ingest_concurrency: int = Field(3, ge=1, le=64, alias="LOCAL_INGEST_CONCURRENCY")
    connect_concurrency: int = Field(4, ge=1, le=64, alias="LOCAL_CONNECT_CONCURRENCY")
    publish_concurrency: int = Field(2, ge=1, le=64, alias="LOCAL_PUBLISH_CONCURRENCY")
    rules_concurrency: int = Field(1, ge=1, le=64, alias="LOCAL_RULES_CONCURRENCY")
    # CPU priority (nice) of the ingest environments, below the flush's and the gateway's.
    ingest_nice: int = Field(5, ge=0, le=19, alias="LOCAL_INGEST_NICE")
    # Bytes posted to a WebSocket client and not yet read before posts get 429, and how
    # long a client may stay that far behind before it is disconnected.
    websocket_client_buffer_bytes: int = Field(1024 * 1024, ge=1024, alias="LOCAL_WS_CLIENT_BUFFER_BYTES")
    websocket_stalled_close_seconds: float = Field(30.0, gt=0, alias="LOCAL_WS_STALLED_CLOSE_SECONDS")
    # The MQTT broker: mosquitto when installed (make dev installs it), else amqtt.
    mqtt_broker: Literal["mosquitto", "amqtt"] = Field("mosquitto", alias="LOCAL_MQTT_BROKER")
    # The fault-injection admin API (devstack/faults.py); 0 = any free port.
    admin_port: int = Field(0, ge=0, le=65535, alias="LOCAL_ADMIN_PORT")

    @field_validator("simulated_orgs", mode="before")
    @classmethod
    def _split_orgs(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(org.strip() for org in value.split(",") if org.strip()) or DEFAULT_ORGS
        return value

    @classmethod
    def from_environment(cls) -> StackConfig:
        try:
            return cls()
        except ValidationError as error:
            problems = "; ".join(
                f"{item['loc'][0]}: {item['msg']}" for item in error.errors(include_url=False)
            )
            raise SystemExit(f"invalid local stack settings: {problems}") from error
