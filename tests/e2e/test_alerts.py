"""Alerts on the local stack (contract section 5): a rule set over HTTP, a device's warm
reading over MQTT, the alert on the org's browsers and on the alert topic, once."""

import time
from typing import Any

import pytest

from tests.e2e.conftest import DELIVERY_TIMEOUT_SECONDS, browser_socket, iso_now, unique


def _wait_for_notifications(local_stack: Any, rule_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
    while True:
        mine = [n for n in local_stack.notifications() if n["message"].get("ruleId") == rule_id]
        if len(mine) >= count or time.monotonic() > deadline:
            return mine
        time.sleep(0.2)


def test_a_warm_reading_raises_an_alert_on_screen_and_on_the_topic_and_a_cold_one_resolves_it(
    local_stack, device_factory
):
    org, other_org, unit, rule_id = unique("org"), unique("org"), unique("freezer"), unique("warm")
    token = local_stack.token(org)
    status, rule = local_stack.http(
        "PUT",
        f"/alert-rules/{rule_id}",
        token,
        {"metric": "temperature", "max": -15, "unitId": unit, "severity": "critical", "name": "Freezer warm"},
    )
    device = device_factory(org)
    with (
        browser_socket(local_stack, token) as browser,
        browser_socket(local_stack, local_stack.token(other_org)) as stranger,
    ):
        browser.hello()
        stranger.hello()
        device.publish_reading(unit, temperature=-3.5, recordedAt=iso_now())
        triggered = browser.wait_for(
            lambda m: m["type"] == "alert:triggered", timeout=DELIVERY_TIMEOUT_SECONDS
        )
        active = browser.request({"action": "getAlerts"}, "alerts")["active"]
        device.publish_reading(unit, temperature=-20.0, recordedAt=iso_now())
        resolved = browser.wait_for(lambda m: m["type"] == "alert:resolved", timeout=DELIVERY_TIMEOUT_SECONDS)
        units = browser.request({"action": "listUnits"}, "units")["units"]
        # The same ticks went out to every connection: another org's browser got none of it.
        with pytest.raises(AssertionError, match="no matching message"):
            stranger.wait_for(lambda m: m["type"].startswith("alert:"), timeout=2)
    notifications = _wait_for_notifications(local_stack, rule_id, 2)

    assert (status, rule) == (
        200,
        {
            "ruleId": rule_id,
            "metric": "temperature",
            "max": -15.0,
            "unitId": unit,
            "severity": "critical",
            "name": "Freezer warm",
            "forSeconds": 0,
        },
    )
    assert (triggered["ruleId"], triggered["unitId"], triggered["alertType"]) == (
        rule_id,
        unit,
        "temperature_high",
    )
    assert (triggered["value"], triggered["threshold"]) == (-3.5, -15.0)
    assert [a["alertId"] for a in active] == [triggered["alertId"]]
    assert resolved["alertId"] == triggered["alertId"]
    assert [(u["unitId"], u["lastReading"]["temperature"]) for u in units] == [(unit, -20.0)]
    # Published once each, for the people who are not watching a browser.
    assert [
        (n["message"]["type"], n["message"]["alertId"], n["attributes"]["orgId"]) for n in notifications
    ] == [
        ("alert:triggered", triggered["alertId"], org),
        ("alert:resolved", triggered["alertId"], org),
    ]
    assert notifications[0]["subject"].startswith("[critical] Freezer warm")


def test_bad_rules_get_a_clear_error_and_another_orgs_rule_is_invisible(local_stack):
    org, other_org = unique("org"), unique("org")
    token = local_stack.token(org)

    bad_id = local_stack.http(
        "PUT", "/alert-rules/has%20space", token, {"metric": "silence", "severity": "info"}
    )
    no_threshold = local_stack.http(
        "PUT", "/alert-rules/r1", token, {"metric": "battery", "severity": "info"}
    )
    stored = local_stack.http(
        "PUT",
        "/alert-rules/quiet",
        token,
        {"metric": "silence", "maxSilenceSeconds": 600, "severity": "warning"},
    )
    others = local_stack.http("GET", "/alert-rules", local_stack.token(other_org))
    not_theirs = local_stack.http("DELETE", "/alert-rules/quiet", local_stack.token(other_org))
    unauthenticated = local_stack.http("GET", "/alert-rules", "not-a-token")

    assert bad_id[0] == 400
    assert bad_id[1] is not None
    assert bad_id[1]["error"]["code"] == "validation_error"
    assert no_threshold[0] == 400
    assert no_threshold[1] is not None
    assert no_threshold[1]["error"]["details"]
    assert stored[0] == 200
    assert others == (200, {"rules": []})
    assert not_theirs[0] == 404
    assert unauthenticated[0] == 401
    assert local_stack.http("GET", "/alert-rules", token) == (200, {"rules": [stored[1]]})
