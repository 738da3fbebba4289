"""All configuration, read once from environment variables."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Environment of every function. Endpoints of AWS services themselves come from
    boto3's own ``AWS_ENDPOINT_URL_*`` variables, so local runs differ only there."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    table_name: str = Field("sensor-stream", alias="TABLE_NAME")
    # https://{apiId}.execute-api.{region}.amazonaws.com/{stage}: where @connections lives.
    websocket_callback_url: str = Field("", alias="WEBSOCKET_CALLBACK_URL")
    # IoT data plane endpoint (https://xxxx-ats.iot.{region}.amazonaws.com); empty = boto3 default.
    iot_data_endpoint: str = Field("", alias="IOT_DATA_ENDPOINT")

    # Token verification: HS256 with a shared secret (local) or RS256/ES256 via JWKS (AWS).
    jwt_secret: str = Field("", alias="JWT_SECRET")
    jwt_jwks_url: str = Field("", alias="JWT_JWKS_URL")
    jwt_issuer: str = Field("", alias="JWT_ISSUER")
    jwt_audience: str = Field("", alias="JWT_AUDIENCE")
    # Cognito puts custom attributes under "custom:<name>".
    jwt_org_claim: str = Field("org", alias="JWT_ORG_CLAIM")
    jwt_units_claim: str = Field("units", alias="JWT_UNITS_CLAIM")

    # Write sharding (see docs/data-model.md); changing them needs a drained outbox.
    outbox_shards: int = Field(4, ge=1, le=64, alias="OUTBOX_SHARDS")
    latest_shards: int = Field(4, ge=1, le=64, alias="LATEST_SHARDS")

    # Flush: an arrival second is delivered once it is this far in the past, so that
    # writes still in flight when the second ends are never skipped.
    flush_grace_seconds: float = Field(1.0, ge=0, alias="FLUSH_GRACE_SECONDS")
    flush_tick_seconds: float = Field(1.0, gt=0, alias="FLUSH_TICK_SECONDS")
    # Stop the tick loop this long before the invocation would time out.
    flush_stop_margin_seconds: float = Field(3.0, ge=0, alias="FLUSH_STOP_MARGIN_SECONDS")
    # Stop the loop after this long even with time left, so the next schedule finds the lease free.
    flush_max_loop_seconds: float = Field(57.0, gt=0, alias="FLUSH_MAX_LOOP_SECONDS")
    flush_lease_seconds: float = Field(10.0, gt=0, alias="FLUSH_LEASE_SECONDS")
    flush_post_concurrency: int = Field(32, ge=1, le=256, alias="FLUSH_POST_CONCURRENCY")
    # Oldest backlog a flush delivers after an outage (older seconds are skipped).
    flush_max_catch_up_seconds: int = Field(300, ge=1, alias="FLUSH_MAX_CATCH_UP_SECONDS")

    command_timeout_seconds: int = Field(10, ge=1, alias="COMMAND_TIMEOUT_SECONDS")
    # API Gateway closes a connection after 2 h; the record outlives it a little.
    connection_ttl_seconds: int = Field(2 * 3600 + 600, ge=60, alias="CONNECTION_TTL_SECONDS")
    outbox_ttl_seconds: int = Field(3600, ge=60, alias="OUTBOX_TTL_SECONDS")
    quarantine_ttl_days: int = Field(14, ge=1, alias="QUARANTINE_TTL_DAYS")
    # History kept per reading; 0 keeps it forever.
    reading_ttl_days: int = Field(30, ge=0, alias="READING_TTL_DAYS")

    # Resume after a reconnect: how far back and how many readings at most.
    resume_max_seconds: int = Field(900, ge=0, alias="RESUME_MAX_SECONDS")
    resume_max_readings: int = Field(1000, ge=0, alias="RESUME_MAX_READINGS")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
