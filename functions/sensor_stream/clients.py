"""AWS clients, created once per Lambda container and shared (they are thread-safe).

Endpoints come from settings or boto3's own AWS_ENDPOINT_URL_* variables, which is all
the local stack changes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from .auth import TokenVerifier
from .gateway import ConnectionGateway
from .notifications import AlertPublisher
from .settings import get_settings
from .store import SensorStore

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=64)


@lru_cache(maxsize=1)
def store() -> SensorStore:
    return SensorStore(boto3.client("dynamodb", config=_RETRIES), get_settings())


def _management_api(config: Config) -> ConnectionGateway:
    settings = get_settings()
    if not settings.websocket_callback_url:
        raise RuntimeError("WEBSOCKET_CALLBACK_URL is not set")
    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url=settings.websocket_callback_url, config=config
    )
    return ConnectionGateway(client)


@lru_cache(maxsize=1)
def gateway() -> ConnectionGateway:
    """Answers to a client's requests: retried once."""
    return _management_api(Config(retries={"mode": "standard", "max_attempts": 2}, max_pool_connections=64))


@lru_cache(maxsize=1)
def fanout_gateway() -> ConnectionGateway:
    """The flush's posts: short timeouts and no retry inside the call, because a post that
    fails is retried on the next tick with what arrived meanwhile, and a slow connection
    must not hold a posting thread."""
    settings = get_settings()
    return _management_api(
        Config(
            retries={"mode": "standard", "max_attempts": 1},
            connect_timeout=settings.flush_post_timeout_seconds,
            read_timeout=settings.flush_post_timeout_seconds,
            max_pool_connections=settings.flush_post_concurrency + 8,
        )
    )


@lru_cache(maxsize=1)
def iot_data() -> Any:
    endpoint = get_settings().iot_data_endpoint or None
    return boto3.client("iot-data", endpoint_url=endpoint, config=_RETRIES)


@lru_cache(maxsize=1)
def alert_publisher() -> AlertPublisher | None:
    """Publishes alerts to ALERT_TOPIC_ARN; None when the deployment has no topic."""
    topic_arn = get_settings().alert_topic_arn
    return AlertPublisher(boto3.client("sns", config=_RETRIES), topic_arn) if topic_arn else None


@lru_cache(maxsize=1)
def token_verifier() -> TokenVerifier:
    return TokenVerifier(get_settings())


def reset() -> None:
    """Forget cached clients and settings (tests change the environment)."""
    for factory in (store, gateway, fanout_gateway, iot_data, alert_publisher, token_verifier, get_settings):
        factory.cache_clear()
