"""How often the Management API clients try a request: a flush post once (a post that
fails is retried on the next tick with what arrived meanwhile, and a throttled or slow post
must not hold a posting thread through botocore's back-off), an answer to a client twice.
botocore's ``max_attempts`` counts retries, not attempts: ``total_max_attempts`` does."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from sensor_stream import clients
from tests.support.botocore_hooks import answer_sent

pytestmark = pytest.mark.usefixtures("aws")


def attempts(gateway_client: object, status: int, code: str) -> int:
    sent = answer_sent(gateway_client, status, code)
    with pytest.raises(ClientError):
        gateway_client.post_to_connection(ConnectionId="Cx000000001Q=", Data=b"{}")  # type: ignore[attr-defined]
    return len(sent)


def test_a_throttled_flush_post_is_tried_once():
    assert attempts(clients.fanout_gateway()._client, 429, "LimitExceededException") == 1


def test_a_flush_post_failing_on_the_server_is_tried_once():
    assert attempts(clients.fanout_gateway()._client, 500, "InternalServerErrorException") == 1


def test_an_answer_to_a_client_is_retried_once():
    assert attempts(clients.gateway()._client, 500, "InternalServerErrorException") == 2
