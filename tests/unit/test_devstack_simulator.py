"""Simulated devices: their readings satisfy the contract's model; they answer commands."""

import time
from datetime import UTC, datetime

import pytest

from devstack.simulator import build_fleet
from sensor_stream.models import ReadingIn


def test_the_fleet_spreads_devices_over_the_orgs_with_distinct_units():
    fleet = build_fleet(6, orgs=("acme", "globex"), seed=1)

    units = [unit.unit_id for device in fleet for unit in device.units]
    assert [device.org_id for device in fleet] == ["acme", "globex"] * 3
    assert len({device.device_id for device in fleet}) == 6
    assert len(units) == len(set(units))
    assert all(2 <= len(device.units) <= 3 for device in fleet)
    sites = [unit.site_id for device in fleet for unit in device.units]
    assert any(sites)
    assert None in sites


@pytest.mark.parametrize("seconds_between_readings", [0.2, 1, 30])
def test_every_reading_is_valid_under_the_contract_at_any_reporting_rate(seconds_between_readings):
    device = build_fleet(1, seed=7)[0]
    clock = time.monotonic()
    batteries = []
    for _ in range(1000):
        clock += seconds_between_readings
        payload = device.readings(now=clock)
        for reading in payload["readings"]:
            ReadingIn.model_validate(reading, context={"now": datetime.now(UTC)})
        batteries.append(payload["readings"][0]["battery"])

    assert min(batteries) < batteries[0]


def test_temperatures_stay_near_the_set_point_apart_from_excursions():
    device = build_fleet(1, seed=3)[0]
    unit = device.units[0]
    temperatures = []
    for _ in range(2000):
        unit.step(device.rng, 1.0)
        temperatures.append(unit.temperature)
    typical = sorted(temperatures)[len(temperatures) // 2]

    assert abs(typical - unit.profile.set_point) < 3


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ({"command": "ping"}, ("ok", "pong")),
        ({"command": "setReportingInterval", "params": {"seconds": 5}}, ("ok", "reporting every 5 s")),
        ({"command": "setReportingInterval", "params": {"seconds": 0}}, ("error", None)),
        ({"command": "selfDestruct", "params": {}}, ("error", "unknown command 'selfDestruct'")),
    ],
)
def test_devices_answer_commands(command, answer):
    device = build_fleet(1, seed=1)[0]

    status, detail = device.answer({"commandId": "c1", **command})

    assert status == answer[0]
    if answer[1]:
        assert detail == answer[1]


def test_a_new_reporting_interval_takes_effect():
    device = build_fleet(1, rate=1.0, seed=1)[0]

    device.answer({"commandId": "c1", "command": "setReportingInterval", "params": {"seconds": 2.5}})

    assert device.interval_seconds == 2.5
