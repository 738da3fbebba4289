"""Fixtures of the unit tests: moto-backed AWS, a fake clock for the handlers, and the
handlers wired together in-process (tests/support/stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
import rules.handler
from moto import mock_aws

import connect.handler
import ingest.handler
import publish.handler
from sensor_stream import clients
from sensor_stream.observability import metrics
from sensor_stream.table import create_table
from tests.support.clock import FakeClock
from tests.support.events import WEBSOCKET_API_ID, WEBSOCKET_STAGE
from tests.support.stack import InProcessStack
from tests.support.websocket import PostRecorder

JWT_SECRET = "unit-test-hs256-secret-of-at-least-32-bytes"
TABLE_NAME = "sensor-stream-unit"
# Deterministic time for everything the handlers and the flusher do (JWT expiry alone
# follows the real clock, inside PyJWT).
START = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)

ENVIRONMENT = {
    "TABLE_NAME": TABLE_NAME,
    "JWT_SECRET": JWT_SECRET,
    "WEBSOCKET_CALLBACK_URL": f"https://{WEBSOCKET_API_ID}.execute-api.eu-west-1.amazonaws.com/{WEBSOCKET_STAGE}",
    "FLUSH_GRACE_SECONDS": "0.1",
    "FLUSH_MAX_CATCH_UP_SECONDS": "5",
    "FLUSH_LEASE_SECONDS": "10",
    "COMMAND_TIMEOUT_SECONDS": "10",
    # Two shards still exercise merging them; moto's Query walks the whole table, so
    # fewer partitions per tick keep the suite fast.
    "OUTBOX_SHARDS": "2",
    "LATEST_SHARDS": "2",
}
# Set on a developer's machine, these would change what the tests exercise.
UNSET = (
    "JWT_JWKS_URL",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_ORG_CLAIM",
    "JWT_UNITS_CLAIM",
    "IOT_DATA_ENDPOINT",
)


def pytest_configure(config: pytest.Config) -> None:
    # Handlers that record no metric (e.g. a refused request) make Powertools warn.
    config.addinivalue_line("filterwarnings", "ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto for every AWS call, the table created as the stack creates it, fresh clients."""
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    clients.reset()
    # Keeping boto3's default session (moto would drop it) spares each test ~0.5 s of
    # reloading service models; the clients themselves are still new per test.
    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        create_table(boto3.client("dynamodb"), TABLE_NAME)
        yield
    clients.reset()
    metrics.clear_metrics()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The handlers' notion of now (``utc_now``) under the test's control."""
    fake = FakeClock(START)
    for module in (ingest.handler, connect.handler, publish.handler, rules.handler):
        monkeypatch.setattr(module, "utc_now", fake.now)
    return fake


@pytest.fixture
def posts() -> PostRecorder:
    return PostRecorder()


@pytest.fixture
def stack(aws: None, clock: FakeClock, posts: PostRecorder) -> Iterator[InProcessStack]:
    system = InProcessStack(clock, posts, JWT_SECRET)
    yield system
    system.close()
