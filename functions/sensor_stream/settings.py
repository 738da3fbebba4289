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
    # The token_use claim a token must carry ("id" for Cognito: only ID tokens hold the
    # custom attributes); empty: not checked (other issuers have no such claim).
    jwt_token_use: str = Field("", alias="JWT_TOKEN_USE")
    # Clock skew tolerated between the issuer and this function on iat and nbf (a token
    # minted by an issuer whose clock runs ahead). exp stays strict: a session ends at exp.
    jwt_leeway_seconds: float = Field(10.0, ge=0, le=300, alias="JWT_LEEWAY_SECONDS")
    # Fetching the issuer's keys (once per container and hour) must end well within a
    # $connect (the connect function's timeout is 15 s); PyJWT alone would wait 30 s.
    jwt_jwks_timeout_seconds: float = Field(3.0, gt=0, le=10, alias="JWT_JWKS_TIMEOUT_SECONDS")

    # Outbox partitions per window of arrival seconds (see docs/data-model.md); each takes
    # ~1,000 single-reading messages a second. An org's entries go to ORG_SPREAD of them.
    # Changing either needs a drained outbox.
    outbox_shards: int = Field(1, ge=1, le=64, alias="OUTBOX_SHARDS")
    outbox_org_spread: int = Field(1, ge=1, le=64, alias="OUTBOX_ORG_SPREAD")

    # Flush: second s is read at s + 1 s + grace; writes that land later are queued again
    # by ingest (see docs/data-model.md, "Why the flush never misses a reading").
    flush_grace_seconds: float = Field(0.1, ge=0, alias="FLUSH_GRACE_SECONDS")
    # How far apart the clocks of two Lambda hosts may be; ingest checks the flush's
    # progress for any outbox write that completed later than grace minus this margin.
    flush_clock_margin_seconds: float = Field(0.05, ge=0, alias="FLUSH_CLOCK_MARGIN_SECONDS")
    flush_tick_seconds: float = Field(1.0, gt=0, alias="FLUSH_TICK_SECONDS")
    # Stop ticking this long before the invocation would time out.
    flush_stop_margin_seconds: float = Field(5.0, ge=0, alias="FLUSH_STOP_MARGIN_SECONDS")
    # The lease is renewed (and progress recorded) every RENEW seconds, and whenever a tick
    # reads past what was announced; a crashed holder is replaced once LEASE has passed.
    # An idle tick in between makes one request: its outbox query.
    flush_lease_seconds: float = Field(30.0, gt=0, alias="FLUSH_LEASE_SECONDS")
    flush_renew_seconds: float = Field(10.0, gt=0, alias="FLUSH_RENEW_SECONDS")
    # How often a waiting successor looks whether the lease was handed to it.
    flush_successor_poll_seconds: float = Field(0.1, gt=0, alias="FLUSH_SUCCESSOR_POLL_SECONDS")
    flush_post_concurrency: int = Field(32, ge=1, le=256, alias="FLUSH_POST_CONCURRENCY")
    # How long a tick waits for its posts before it lets them finish in the background.
    flush_tick_post_wait_seconds: float = Field(0.7, ge=0, alias="FLUSH_TICK_POST_WAIT_SECONDS")
    # One post's network timeout (API Gateway answers in milliseconds).
    flush_post_timeout_seconds: float = Field(2.0, gt=0, alias="FLUSH_POST_TIMEOUT_SECONDS")
    # A connection that has accepted nothing for this long is closed; its client resumes.
    flush_stalled_connection_seconds: float = Field(10.0, gt=0, alias="FLUSH_STALLED_CONNECTION_SECONDS")
    # Backlog: seconds read per tick at most, and the oldest second delivered after an
    # outage (older ones are skipped: browsers get them by resuming).
    flush_max_seconds_per_tick: int = Field(10, ge=1, alias="FLUSH_MAX_SECONDS_PER_TICK")
    flush_max_catch_up_seconds: int = Field(900, ge=1, alias="FLUSH_MAX_CATCH_UP_SECONDS")
    # Fan-out shards (docs/scaling.md): the connections one flusher posts to in a tick at
    # most (or its posts a second, where a connection gets several messages a tick), the
    # most shards, and how often shard 0 reconsiders their number.
    # 400: what one flusher at 512 MB posts within a tick with room to spare (make scale:
    # ~0.5 ms of a vCPU a post, a third of a vCPU at 512 MB); 128 shards carry 51,200.
    flush_connections_per_shard: int = Field(400, ge=1, alias="FLUSH_CONNECTIONS_PER_SHARD")
    flush_max_shards: int = Field(128, ge=1, le=1000, alias="FLUSH_MAX_SHARDS")
    flush_sizing_seconds: float = Field(60.0, gt=0, alias="FLUSH_SIZING_SECONDS")
    # Set by Lambda: the running function (the flush's shard 0 starts the other shards'
    # flushers as invocations of itself; every SDK call names it in its User-Agent).
    function_name: str = Field("", alias="AWS_LAMBDA_FUNCTION_NAME")
    # A 410 this soon after $connect means "handshake not complete yet", not "gone".
    connect_grace_seconds: float = Field(30.0, ge=0, alias="CONNECT_GRACE_SECONDS")

    # Ingest: a redelivery re-queues readings whose first queueing cannot be found if the
    # first attempt was at most this long ago (IoT and Lambda retry within minutes).
    recovery_window_seconds: int = Field(900, ge=0, alias="RECOVERY_WINDOW_SECONDS")
    # A device's registry item (which org owns it) is rewritten at most this often per
    # container; unit registry items go out with every message that carries the unit.
    registry_refresh_seconds: int = Field(300, ge=1, alias="REGISTRY_REFRESH_SECONDS")
    # Partitions of an org's unit registry (each takes ~1,000 writes a second).
    unit_registry_shards: int = Field(4, ge=1, le=64, alias="UNIT_REGISTRY_SHARDS")

    # Requests per connection: at most LIMIT per WINDOW seconds, else "throttled".
    connection_request_limit: int = Field(100, ge=1, alias="CONNECTION_REQUEST_LIMIT")
    connection_request_window_seconds: int = Field(10, ge=1, alias="CONNECTION_REQUEST_WINDOW_SECONDS")

    # The SNS topic every opened and resolved alert is published to (empty: none).
    alert_topic_arn: str = Field("", alias="ALERT_TOPIC_ARN")

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
    # Alert rules per org: the flush holds every org's rules in memory and reads them all
    # again when one changes.
    max_rules_per_org: int = Field(200, ge=1, alias="MAX_RULES_PER_ORG")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
