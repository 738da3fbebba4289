"""How often boto3's Management API client tries an answer to a client: twice (botocore's
``max_attempts`` counts retries, not attempts: ``total_max_attempts`` does). The flush's
posts go through the signed client, which never retries inside a call
(tests/unit/test_management_api.py)."""

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


def test_an_answer_to_a_client_is_retried_once():
    assert attempts(clients.gateway()._client, 500, "InternalServerErrorException") == 2
