"""Simulated devices: their readings satisfy the contract's model; they answer commands."""

import time
from datetime import UTC, datetime

import pytest

from devstack.example_rules import example_rules
from devstack.simulator import build_fleet
from sensor_stream.models import AlertRule, AlertRuleBody, ReadingIn


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


def test_each_orgs_first_freezer_leaves_its_door_open_and_its_example_rule_catches_it():
    fleet = build_fleet(5, orgs=("acme", "globex"), seed=2, door_open_after_seconds=20)
    freezers = [unit for device in fleet for unit in device.units if unit.profile.kind == "freezer"]
    doors = [unit for unit in freezers if unit.door_opens_at is not None]
    device = next(device for device in fleet if doors[0] in device.units)
    rules = example_rules(fleet)
    rule = AlertRule(
        rule_id="r",
        **AlertRuleBody.model_validate(rules["acme"][f"{doors[0].unit_id}.too-warm"]).model_dump(),
    )

    assert [unit.unit_id for unit in doors] == ["acme-gw-01.freezer", "globex-gw-01.freezer"]
    assert len(freezers) > len(doors)
    start = time.monotonic()
    temperatures = [
        next(r for r in device.readings(now=start + second)["readings"] if r["unitId"] == doors[0].unit_id)
        for second in range(1, 60)
    ]
    # Not before the door opens; then above the rule's threshold for longer than its forSeconds.
    assert all(rule.breach(reading) is None for reading in temperatures[:18])
    breaches = [second for second, reading in enumerate(temperatures, 1) if rule.breach(reading)]
    assert len(breaches) > rule.for_seconds
    assert breaches[0] < 60 - rule.for_seconds


def test_the_example_rules_are_valid_rules_for_every_simulated_org():
    fleet = build_fleet(5, orgs=("acme", "globex"), seed=2)

    rules = example_rules(fleet)

    assert sorted(rules) == ["acme", "globex"]
    for org_rules in rules.values():
        for body in org_rules.values():
            AlertRuleBody.model_validate(body)
        assert org_rules["unit-silent"]["metric"] == "silence"
    assert rules["acme"]["acme-gw-01.freezer.too-warm"]["max"] == -15.0
