"""The local stack's fault-injection admin API (devstack/faults.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.faults import AdminApi, FaultState, GatewayFaults, GatewayFaultSettings
from devstack.http_server import LoopbackHttpServer


class KillableDouble:
    def __init__(self) -> None:
        self.kills = 0

    def kill_running(self) -> list[int]:
        self.kills += 1
        return [4242]

    def stats(self) -> dict[str, int]:
        return {"environments": 1, "running": 1, "queued": 3}


@pytest.fixture
def admin() -> Iterator[tuple[str, FaultState, KillableDouble]]:
    faults = FaultState()
    flush = KillableDouble()
    server = LoopbackHttpServer("admin", AdminApi(faults, {"flush": flush}), 0)
    server.start()
    yield server.url, faults, flush
    server.stop()


def call(url: str, method: str, document: Any = None) -> tuple[int, Any]:
    data = None if document is None else json.dumps(document).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback http
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback http
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_dynamodb_and_gateway_faults_are_set_shown_and_reset(admin):
    url, faults, _ = admin

    dynamodb = call(f"{url}/faults/dynamodb", "PUT", {"throttleRate": 0.25, "serverErrorRate": 0.5})
    gateway = call(
        f"{url}/faults/gateway",
        "PUT",
        {"goneRate": 0.1, "goneConnectionIds": ["abc="], "postLatencyMs": {"median": 20, "p99": 150}},
    )
    slow = call(f"{url}/faults/connections/abc=", "PUT", {"bytesPerSecond": 1000})
    shown = call(f"{url}/faults", "GET")
    rates_while_set = list(faults.dynamodb_rates)
    reset = call(f"{url}/faults", "DELETE")

    assert dynamodb[0] == gateway[0] == slow[0] == 200
    assert shown == (
        200,
        {
            "dynamodb": {"throttleRate": 0.25, "serverErrorRate": 0.5},
            "gateway": {
                "goneRate": 0.1,
                "goneConnectionIds": ["abc="],
                "postLatencyMs": {"median": 20.0, "p99": 150.0},
            },
            "slowConnections": {"abc=": 1000},
        },
    )
    assert rates_while_set == [0.25, 0.5]
    assert reset[1]["dynamodb"] == {"throttleRate": 0.0, "serverErrorRate": 0.0}
    assert reset[1]["slowConnections"] == {}
    assert reset[1]["gateway"]["postLatencyMs"] is None
    assert faults.gateway.bytes_per_second("abc=") is None


@pytest.mark.parametrize(
    ("path", "document"),
    [
        ("/faults/dynamodb", {"throttleRate": 2}),
        ("/faults/dynamodb", {"unknown": 1}),
        ("/faults/gateway", {"goneRate": -1}),
        ("/faults/gateway", {"postLatencyMs": {"median": 20, "p99": 10}}),
        ("/faults/gateway", {"postLatencyMs": {"median": 0, "p99": 10}}),
        ("/faults/gateway", {"postLatencyMs": {"median": 20}}),
        ("/faults/connections/x", {"bytesPerSecond": -5}),
    ],
)
def test_invalid_settings_are_refused_and_change_nothing(admin, path, document):
    url, faults, _ = admin

    status, answer = call(f"{url}{path}", "PUT", document)

    assert status == 400
    assert answer["message"]
    assert faults.describe() == FaultState().describe()


def test_functions_are_listed_and_a_running_one_can_be_killed_and_unknown_routes_are_404(admin):
    url, _, flush = admin

    stats = call(f"{url}/functions", "GET")
    killed = call(f"{url}/functions/flush/kill", "POST")
    unknown_function = call(f"{url}/functions/nope/kill", "POST")
    unknown_route = call(f"{url}/nothing", "GET")

    assert stats == (200, {"flush": {"environments": 1, "running": 1, "queued": 3}})
    assert killed == (200, {"killed": [4242]})
    assert flush.kills == 1
    assert unknown_function[0] == unknown_route[0] == 404


def test_gone_rate_answers_gone_for_that_share_of_posts():
    draws = iter([0.05, 0.5, 0.09, 0.99])
    faults = GatewayFaults(chance=lambda: next(draws))
    faults.settings = faults.settings.model_copy(update={"gone_rate": 0.1})

    assert [faults.post_is_gone("c") for _ in range(4)] == [True, False, True, False]


def test_post_latency_is_lognormal_with_the_median_and_p99_it_was_given():
    draws = iter([0.5, 0.99, 0.01, 0.0])
    faults = GatewayFaults(chance=lambda: next(draws))
    no_latency = faults.post_latency_seconds()
    faults.settings = GatewayFaultSettings.model_validate({"postLatencyMs": {"median": 20, "p99": 150}})

    median, p99, p1, smallest = (faults.post_latency_seconds() for _ in range(4))

    assert no_latency == 0.0
    assert median == pytest.approx(0.020)
    assert p99 == pytest.approx(0.150)
    # Lognormal: as far below the median as p99 is above it, in ratio.
    assert p1 == pytest.approx(0.020 * 20 / 150)
    assert 0 < smallest < p1
