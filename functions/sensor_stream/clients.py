"""AWS clients, created once per Lambda container on first use and shared (they are
thread-safe).

Nothing here is imported or built before a handler needs it: boto3, the store and the
token verifier (PyJWT and cryptography) load on the first call of their factory, so each
function pays only for the clients it uses. Clients come from boto3's default session
(the local stack registers its hooks there), except the flush's posting client
(management_api.py), which signs with botocore's credentials itself. Endpoints come from
settings or boto3's own AWS_ENDPOINT_URL_* variables, which is all the local stack changes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from .settings import get_settings

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_dynamodb import DynamoDBClient

    from .auth import TokenVerifier
    from .coordination import WorkerStarter
    from .gateway import ConnectionGateway
    from .notifications import AlertPublisher
    from .store import SensorStore


def user_agent() -> str:
    """The User-Agent of every boto3 client here: the project and function (CloudTrail's
    ``userAgent`` shows which function called), the SDK and Python. A fixed string, because
    botocore otherwise assembles its standard one from ~15 sanitised components twice per
    request: ~0.4 ms of CPU a DynamoDB call, a quarter of ingest's CPU a message
    (devstack/README.md, "What bounds throughput")."""
    import platform

    import botocore

    function = get_settings().function_name or "local"
    return f"sensor-stream/{function} Botocore/{botocore.__version__} Python/{platform.python_version()}"


def _config(**options: Any) -> Config:
    from botocore.config import Config

    return Config(user_agent=user_agent(), **options)


def _retries(**options: Any) -> Config:
    return _config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=64, **options)


def _client(service: str, config: Config, endpoint_url: str | None = None) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]


@lru_cache(maxsize=1)
def store() -> SensorStore:
    """DynamoDB without botocore's client-side parameter validation (~27 checks a request,
    a tenth of ingest's CPU): the store builds every request from typed items itself, and
    DynamoDB validates each one anyway (a ValidationException instead of a ParamValidationError).
    Its writes of every reading (PutItem, BatchWriteItem) skip boto3's per-call machinery
    (dynamodb_writes.py: 56-68 % of boto3's CPU a message); everything else is boto3's."""
    import boto3

    from .dynamodb_writes import LeanWrites
    from .store import SensorStore

    client = _client("dynamodb", _retries(parameter_validation=False))
    assert boto3.DEFAULT_SESSION is not None  # boto3.client() set it up
    writes = LeanWrites(client, boto3.DEFAULT_SESSION.get_credentials())
    return SensorStore(cast("DynamoDBClient", writes), get_settings())


def _management_api(config: Config) -> ConnectionGateway:
    from .gateway import ConnectionGateway

    settings = get_settings()
    if not settings.websocket_callback_url:
        raise RuntimeError("WEBSOCKET_CALLBACK_URL is not set")
    return ConnectionGateway(_client("apigatewaymanagementapi", config, settings.websocket_callback_url))


@lru_cache(maxsize=1)
def gateway() -> ConnectionGateway:
    """Answers to a client's requests: retried once (botocore's ``max_attempts`` counts
    retries; ``total_max_attempts`` counts attempts)."""
    return _management_api(
        _config(retries={"mode": "standard", "total_max_attempts": 2}, max_pool_connections=64)
    )


@lru_cache(maxsize=1)
def fanout_gateway() -> ConnectionGateway:
    """The flush's posts: the lean signed client (management_api.py: half the CPU of boto3's
    client a post, docs/posting.md), with botocore's credentials and region as boto3 would
    find them, and the signer boto3's clients would choose. Short timeouts and no retry
    inside the call, because a post that fails is retried on the next tick with what
    arrived meanwhile, and a slow connection must not hold a posting slot."""
    import boto3
    import botocore.session

    from .gateway import ConnectionGateway
    from .management_api import SignedManagementApi

    settings = get_settings()
    if not settings.websocket_callback_url:
        raise RuntimeError("WEBSOCKET_CALLBACK_URL is not set")
    session = botocore.session.get_session()
    credentials = session.get_credentials()
    region = session.get_config_variable("region")
    # The event hooks every boto3 client of the function inherits (its signer choice).
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    if credentials is None or not region:
        raise RuntimeError("no AWS credentials or region for the Management API")
    return ConnectionGateway(
        SignedManagementApi(
            settings.websocket_callback_url,
            region=region,
            credentials=credentials,
            timeout_seconds=settings.flush_post_timeout_seconds,
            max_connections=settings.flush_post_concurrency + 8,
            events=boto3.DEFAULT_SESSION.events,
        )
    )


@lru_cache(maxsize=1)
def iot_data() -> Any:
    return _client("iot-data", _retries(), get_settings().iot_data_endpoint or None)


@lru_cache(maxsize=1)
def alert_publisher() -> AlertPublisher | None:
    """Publishes alerts to ALERT_TOPIC_ARN; None when the deployment has no topic."""
    from .notifications import AlertPublisher

    topic_arn = get_settings().alert_topic_arn
    return AlertPublisher(_client("sns", _retries()), topic_arn) if topic_arn else None


@lru_cache(maxsize=1)
def worker_starter() -> WorkerStarter | None:
    """How shard 0 starts the other fan-out shards' flushers: invocations of this function
    (AWS_LAMBDA_FUNCTION_NAME); None outside Lambda (one shard)."""
    from .coordination import LambdaWorkerStarter

    function_name = get_settings().function_name
    return LambdaWorkerStarter(_client("lambda", _retries()), function_name) if function_name else None


@lru_cache(maxsize=1)
def token_verifier() -> TokenVerifier:
    from .auth import TokenVerifier

    return TokenVerifier(get_settings())


def reset() -> None:
    """Forget cached clients and settings (tests change the environment)."""
    for factory in (
        store,
        gateway,
        fanout_gateway,
        iot_data,
        alert_publisher,
        worker_starter,
        token_verifier,
        get_settings,
    ):
        factory.cache_clear()
