"""Alerts and units (contract section 5), in-process: the rules API, evaluation by the flush
(min/max with hysteresis, forSeconds, silence), each alert opening and resolving once,
delivery within subscription and token scope, publication to SNS, getAlerts and listUnits."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto.sns.models import sns_backends

from sensor_stream import clients
from sensor_stream.protocol import MAX_ANSWER_BYTES
from tests.support.clock import FakeClock
from tests.support.events import ACCOUNT_ID, REGION, authorizer_claims
from tests.support.readings import reading
from tests.support.stack import InProcessStack
from tests.support.websocket import wire

pytestmark = pytest.mark.usefixtures("stack")

FREEZER = {
    "metric": "temperature",
    "max": -15,
    "unitId": "freezer-1",
    "severity": "critical",
    "name": "Freezer warm",
}


def alerts_of(stack: InProcessStack, connection_id: str) -> list[dict[str, Any]]:
    return [m for m in wire(stack.take(connection_id)) if m["type"].startswith("alert:")]


def publish(stack: InProcessStack, clock: FakeClock, unit: str, temperature: float, **fields: Any) -> None:
    stack.publish_telemetry("acme", "dev-1", reading(unit, clock.iso(), temperature=temperature, **fields))


# --- the rules API -------------------------------------------------------------------------


def test_a_rule_is_stored_as_sent_with_its_id_listed_and_deleted(stack: InProcessStack):
    claims = authorizer_claims("acme")

    stored = stack.put_rule("acme", "freezer-warm", **FREEZER)
    status, listed = stack.rules_request("GET /alert-rules", claims)
    deleted, nothing = stack.rules_request("DELETE /alert-rules/{ruleId}", claims, rule_id="freezer-warm")

    assert stored == {"ruleId": "freezer-warm", **FREEZER, "forSeconds": 0}
    assert (status, listed) == (200, {"rules": [stored]})
    assert (deleted, nothing) == (204, None)
    assert stack.rules_request("GET /alert-rules", claims) == (200, {"rules": []})
    assert stack.rules_request("DELETE /alert-rules/{ruleId}", claims, rule_id="freezer-warm")[0] == 404


def test_another_orgs_rule_of_the_same_id_is_another_rule(stack: InProcessStack):
    stack.put_rule("acme", "r1", **FREEZER)
    stack.put_rule("globex", "r1", metric="silence", maxSilenceSeconds=60, severity="info")

    _, acme = stack.rules_request("GET /alert-rules", authorizer_claims("acme"))
    _, globex = stack.rules_request("GET /alert-rules", authorizer_claims("globex"))

    assert acme is not None
    assert globex is not None
    assert [r["metric"] for r in acme["rules"]] == ["temperature"]
    assert [r["metric"] for r in globex["rules"]] == ["silence"]


@pytest.mark.parametrize(
    ("rule_id", "body", "field"),
    [
        ("r1", {"metric": "silence", "severity": "info"}, "a silence rule needs maxSilenceSeconds"),
        ("r1", {"metric": "silence", "maxSilenceSeconds": 5, "severity": "info"}, "maxSilenceSeconds"),
        ("r1", {"metric": "temperature", "severity": "info"}, "needs min and/or max"),
        ("r1", {"metric": "temperature", "min": 5, "max": 1, "severity": "info"}, "min must not be greater"),
        ("r1", {"metric": "pressure", "max": 1, "severity": "info"}, "metric"),
        ("r1", {"metric": "battery", "min": 10, "severity": "loud"}, "severity"),
        (
            "r1",
            {"metric": "battery", "min": 10, "severity": "info", "unitId": "u", "siteId": "s"},
            "not both",
        ),
        ("r1", {"metric": "battery", "min": "10", "severity": "info"}, "min"),
        ("r1", {"metric": "battery", "min": 10, "severity": "info", "maxSilence": 60}, "maxSilence"),
        ("bad#id", {"metric": "battery", "min": 10, "severity": "info"}, "ruleId"),
    ],
)
def test_a_bad_rule_is_refused_with_details_and_nothing_is_stored(
    stack: InProcessStack, rule_id: str, body: dict[str, Any], field: str
):
    claims = authorizer_claims("acme")

    status, answer = stack.rules_request("PUT /alert-rules/{ruleId}", claims, body, rule_id)

    assert status == 400
    assert answer is not None
    assert answer["error"]["code"] == "validation_error"
    assert field in json.dumps(answer["error"])
    assert stack.rules_request("GET /alert-rules", claims) == (200, {"rules": []})


def test_a_units_limited_token_manages_only_rules_of_its_units(stack: InProcessStack):
    limited = authorizer_claims("acme", units=["freezer-1"])
    stack.put_rule("acme", "org-wide", metric="battery", min=10, severity="warning")

    mine = stack.rules_request("PUT /alert-rules/{ruleId}", limited, FREEZER, "mine")
    other_unit = stack.rules_request(
        "PUT /alert-rules/{ruleId}", limited, {**FREEZER, "unitId": "other"}, "x"
    )
    site_wide = stack.rules_request(
        "PUT /alert-rules/{ruleId}",
        limited,
        {"metric": "battery", "min": 5, "siteId": "s1", "severity": "info"},
        "y",
    )
    delete_org_wide = stack.rules_request("DELETE /alert-rules/{ruleId}", limited, rule_id="org-wide")
    _, listed = stack.rules_request("GET /alert-rules", limited)

    assert mine[0] == 200
    assert (other_unit[0], site_wide[0], delete_org_wide[0]) == (403, 403, 403)
    assert listed is not None
    assert [rule["ruleId"] for rule in listed["rules"]] == ["mine"]


# --- evaluation and delivery -----------------------------------------------------------------


def test_a_reading_out_of_range_opens_an_alert_once_and_one_back_in_range_resolves_it(
    stack: InProcessStack, clock: FakeClock
):
    watcher = stack.open("acme")
    stack.put_rule("acme", "freezer-warm", **FREEZER)
    stack.deliver()

    publish(stack, clock, "freezer-1", -4.0)
    stack.deliver()
    [triggered] = alerts_of(stack, watcher)
    for _ in range(3):  # still warm: the alert stays open, no new one
        publish(stack, clock, "freezer-1", -3.0)
        stack.deliver()
    assert alerts_of(stack, watcher) == []
    publish(stack, clock, "freezer-1", -18.0)
    stack.deliver()
    [resolved] = alerts_of(stack, watcher)
    publish(stack, clock, "freezer-1", -2.0)
    stack.deliver()
    [again] = alerts_of(stack, watcher)

    assert {k: v for k, v in triggered.items() if k not in ("alertId", "triggeredAt")} == {
        "type": "alert:triggered",
        "ruleId": "freezer-warm",
        "unitId": "freezer-1",
        "alertType": "temperature_high",
        "severity": "critical",
        "message": "Freezer warm: temperature -4 above -15 on unit freezer-1",
        "value": -4.0,
        "threshold": -15.0,
    }
    assert resolved["type"] == "alert:resolved"
    assert resolved["alertId"] == triggered["alertId"]
    assert again["alertId"] != triggered["alertId"]


def test_the_triggering_reading_and_its_alert_go_out_in_the_same_tick(
    stack: InProcessStack, clock: FakeClock
):
    watcher = stack.open("acme")
    stack.put_rule("acme", "freezer-warm", **FREEZER)
    stack.deliver()

    publish(stack, clock, "freezer-1", 3.0)
    stack.deliver()

    assert [m["type"] for m in wire(stack.take(watcher))] == ["sensor:readings:batch", "alert:triggered"]


def test_an_alert_with_for_seconds_opens_only_when_the_condition_held_that_long(
    stack: InProcessStack, clock: FakeClock
):
    watcher = stack.open("acme")
    stack.put_rule("acme", "warm-10s", **{**FREEZER, "forSeconds": 10})
    stack.deliver()

    publish(stack, clock, "freezer-1", -4.0)
    stack.deliver()
    publish(stack, clock, "freezer-1", -20.0)  # back in range within 10 s: never opens
    for _ in range(12):
        stack.tick()
    assert alerts_of(stack, watcher) == []

    publish(stack, clock, "freezer-1", -4.0)
    for _ in range(9):
        stack.tick()
    assert alerts_of(stack, watcher) == []
    for _ in range(3):  # no further reading: it opens on the flush's clock once 10 s have passed
        stack.tick()
    [opened] = alerts_of(stack, watcher)
    assert (opened["type"], opened["value"]) == ("alert:triggered", -4.0)


def test_a_silent_unit_raises_a_silence_alert_and_its_next_reading_resolves_it(
    stack: InProcessStack, clock: FakeClock
):
    watcher = stack.open("acme")
    stack.put_rule(
        "acme", "quiet", metric="silence", maxSilenceSeconds=30, siteId="site-1", severity="warning"
    )
    stack.deliver()
    publish(stack, clock, "buoy-7", 12.0, siteId="site-1")
    stack.deliver()
    stack.take(watcher)

    for _ in range(28):
        stack.tick()
    assert alerts_of(stack, watcher) == []
    for _ in range(3):
        stack.tick()
    [silence] = alerts_of(stack, watcher)
    publish(stack, clock, "buoy-7", 12.5, siteId="site-1")
    stack.deliver()
    [back] = alerts_of(stack, watcher)

    assert (silence["alertType"], silence["unitId"], silence["severity"]) == ("silence", "buoy-7", "warning")
    assert silence["message"] == "quiet: no reading from unit buoy-7 for 30 s"
    assert "value" not in silence
    assert (back["type"], back["alertId"]) == ("alert:resolved", silence["alertId"])


def test_silence_counts_from_the_registry_for_a_flusher_that_saw_no_reading(
    stack: InProcessStack, clock: FakeClock
):
    watcher = stack.open("acme")
    stack.put_rule("acme", "quiet", metric="silence", maxSilenceSeconds=20, severity="info")
    publish(stack, clock, "buoy-1", 10.0)
    stack.deliver(owner="first")
    stack.take(watcher)
    clock.advance(stack.settings.flush_lease_seconds)  # the first flusher died

    for _ in range(15):  # the second counts from the registry: silent since the reading
        stack.tick(owner="second")

    [silence] = alerts_of(stack, watcher)
    assert silence["alertType"] == "silence"


def test_alerts_reach_only_connections_that_may_see_the_unit_and_never_another_org(
    stack: InProcessStack, clock: FakeClock
):
    everything = stack.open("acme")
    other_units = stack.open("acme", units=["freezer-2"])
    other_subscription = stack.open("acme")
    stack.request(other_subscription, {"action": "subscribe", "unitIds": ["freezer-2"]})
    other_org = stack.open("globex")
    stack.put_rule("acme", "freezer-warm", **FREEZER)
    stack.deliver()

    publish(stack, clock, "freezer-1", 0.0)
    stack.deliver()

    assert len(alerts_of(stack, everything)) == 1
    assert (
        alerts_of(stack, other_units)
        == alerts_of(stack, other_subscription)
        == alerts_of(stack, other_org)
        == []
    )


def test_a_redelivered_reading_and_a_second_evaluator_open_the_alert_once(
    stack: InProcessStack, clock: FakeClock
):
    watcher = stack.open("acme")
    stack.put_rule("acme", "freezer-warm", **FREEZER)
    stack.deliver(owner="first")
    message = reading("freezer-1", clock.iso(), temperature=1.0, id="warm-1")
    stack.publish_telemetry("acme", "dev-1", message)
    stack.publish_telemetry("acme", "dev-1", message)  # IoT delivers it again
    stack.deliver(owner="first")
    # A successor after a crash evaluates the same second again (it redelivers it).
    clock.advance(stack.settings.flush_lease_seconds)
    second = stack.flusher("second")
    first_next_second = stack.flusher("first")._next_second
    assert first_next_second is not None
    second._next_second = first_next_second - 2
    stack.tick(advance=0, owner="second")

    opened = [m for m in alerts_of(stack, watcher) if m["type"] == "alert:triggered"]
    assert len(opened) == 1
    assert len(stack.store.alerts.open_alerts("acme")) == 1


def test_deleting_or_changing_a_rule_resolves_what_it_no_longer_matches(
    stack: InProcessStack, clock: FakeClock
):
    watcher = stack.open("acme")
    claims = authorizer_claims("acme")
    stack.put_rule("acme", "warm-1", **FREEZER)
    stack.put_rule("acme", "warm-2", **{**FREEZER, "unitId": "freezer-2"})
    stack.deliver()
    publish(stack, clock, "freezer-1", -5.0)
    publish(stack, clock, "freezer-2", -5.0)
    stack.deliver()
    first, second = alerts_of(stack, watcher)

    stack.rules_request("DELETE /alert-rules/{ruleId}", claims, rule_id="warm-1")
    stack.put_rule("acme", "warm-2", **{**FREEZER, "unitId": "freezer-2", "max": 0})  # -5 is fine now
    stack.deliver()

    resolved = alerts_of(stack, watcher)
    assert {(m["type"], m["alertId"]) for m in resolved} == {
        ("alert:resolved", first["alertId"]),
        ("alert:resolved", second["alertId"]),
    }
    assert stack.store.alerts.open_alerts("acme") == []


def test_every_opened_and_resolved_alert_is_published_to_the_topic(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    topic_arn = boto3.client("sns").create_topic(Name="sensor-stream-alerts")["TopicArn"]
    stack.reconfigure(monkeypatch, ALERT_TOPIC_ARN=topic_arn)
    stack.flusher()._publish_alert = clients.alert_publisher()
    stack.put_rule("acme", "freezer-warm", **FREEZER)
    stack.deliver()
    publish(stack, clock, "freezer-1", 2.0)
    stack.deliver()
    publish(stack, clock, "freezer-1", -20.0)
    stack.deliver()
    stack.flusher().close()  # publishing runs in the background: let it finish

    sent = sns_backends[ACCOUNT_ID][REGION].topics[topic_arn].sent_notifications
    messages = [json.loads(message) for _, message, _, _, _ in sent]
    subjects = [subject for _, _, subject, _, _ in sent]
    assert [(m["type"], m["orgId"]) for m in messages] == [
        ("alert:triggered", "acme"),
        ("alert:resolved", "acme"),
    ]
    assert subjects[0] == "[critical] Freezer warm: temperature 2 above -15 on unit freezer-1"


def test_an_alert_a_rule_deletion_resolves_is_published_once_and_reaches_browsers(
    stack: InProcessStack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    topic_arn = boto3.client("sns").create_topic(Name="sensor-stream-alerts")["TopicArn"]
    stack.reconfigure(monkeypatch, ALERT_TOPIC_ARN=topic_arn)
    stack.flusher()._publish_alert = clients.alert_publisher()
    watcher = stack.open("acme")
    stack.put_rule("acme", "freezer-warm", **FREEZER)
    stack.deliver()
    publish(stack, clock, "freezer-1", 2.0)
    stack.deliver()

    deleted, _ = stack.rules_request(
        "DELETE /alert-rules/{ruleId}", authorizer_claims("acme"), rule_id="freezer-warm"
    )
    stack.deliver()
    stack.deliver()
    stack.flusher().close()

    sent = sns_backends[ACCOUNT_ID][REGION].topics[topic_arn].sent_notifications
    assert deleted == 204
    assert [json.loads(message)["type"] for _, message, _, _, _ in sent] == [
        "alert:triggered",
        "alert:resolved",
    ]
    assert [m["type"] for m in alerts_of(stack, watcher)] == ["alert:triggered", "alert:resolved"]


# --- getAlerts and listUnits -----------------------------------------------------------------


def test_get_alerts_answers_the_open_alerts_within_the_token_scope(stack: InProcessStack, clock: FakeClock):
    stack.put_rule("acme", "warm", metric="temperature", max=0, severity="warning")
    stack.deliver()
    publish(stack, clock, "freezer-1", 5.0)
    publish(stack, clock, "freezer-2", 5.0)
    stack.deliver()
    limited = stack.open("acme", units=["freezer-2"])

    [answer] = wire(stack.request(limited, {"action": "getAlerts", "requestId": "a"}))

    assert (answer["type"], answer["requestId"]) == ("alerts", "a")
    assert [alert["unitId"] for alert in answer["active"]] == ["freezer-2"]


def test_list_units_answers_every_unit_quiet_ones_too_with_its_last_reading(
    stack: InProcessStack, clock: FakeClock
):
    publish(stack, clock, "quiet-1", 4.0, siteId="site-a")
    clock.advance(3600)
    publish(stack, clock, "busy-1", 5.0)
    clock.advance(1)
    publish(stack, clock, "busy-1", 6.0)
    stack.publish_telemetry("globex", "dev-9", reading("theirs", clock.iso()))
    connection_id = stack.open("acme")
    limited = stack.open("acme", units=["busy-1"])

    [answer] = wire(stack.request(connection_id, {"action": "listUnits"}))
    [scoped] = wire(stack.request(limited, {"action": "listUnits"}))

    units = {unit["unitId"]: unit for unit in answer["units"]}
    assert sorted(units) == ["busy-1", "quiet-1"]
    assert units["busy-1"]["lastReading"]["temperature"] == 6.0
    assert units["busy-1"]["lastSeenAt"] == clock.iso()
    assert (units["quiet-1"]["siteId"], units["quiet-1"]["lastSeenAt"]) == ("site-a", clock.iso(-3601))
    assert [unit["unitId"] for unit in scoped["units"]] == ["busy-1"]


def test_a_new_rule_applies_from_the_next_tick_without_waiting_for_the_lease_renewal(
    stack: InProcessStack, clock: FakeClock
):
    watcher = stack.open("acme")
    stack.deliver()  # the flusher has loaded the (no) rules and renewed its lease

    stack.put_rule("acme", "freezer-warm", **FREEZER)
    publish(stack, clock, "freezer-1", 3.0)
    report = stack.deliver()

    assert report.seconds
    assert not report.lease_lost
    assert stack.settings.flush_renew_seconds > 2  # so the renewal did not load it
    assert [m["type"] for m in alerts_of(stack, watcher)] == ["alert:triggered"]


def test_an_org_of_many_units_gets_them_all_in_parts_that_each_fit_a_websocket_message(
    stack: InProcessStack, clock: FakeClock
):
    units = [f"unit-{n:04d}" for n in range(1000)]
    for start in range(0, len(units), 100):
        batch = [
            reading(
                unit,
                clock.iso(),
                temperature=1.5,
                humidity=40.0,
                battery=90.0,
                siteId="site-with-a-long-name",
            )
            for unit in units[start : start + 100]
        ]
        stack.publish_telemetry("acme", f"gateway-{start}", {"readings": batch})
    connection_id = stack.open("acme")

    parts = wire(stack.request(connection_id, {"action": "listUnits", "requestId": "r-1"}))

    assert len(parts) > 1
    assert all(len(json.dumps(part, separators=(",", ":")).encode()) <= MAX_ANSWER_BYTES for part in parts)
    assert [(p["requestId"], p["part"], p["parts"]) for p in parts] == [
        ("r-1", n, len(parts)) for n in range(1, len(parts) + 1)
    ]
    assert sorted(u["unitId"] for p in parts for u in p["units"]) == units


def test_a_reading_without_the_rules_metric_leaves_the_alert_open(stack: InProcessStack, clock: FakeClock):
    watcher = stack.open("acme")
    stack.put_rule("acme", "freezer-warm", **FREEZER)
    stack.deliver()
    publish(stack, clock, "freezer-1", -4.0)
    stack.deliver()

    humidity_only = {"unitId": "freezer-1", "recordedAt": clock.iso(), "humidity": 40.0}
    stack.publish_telemetry("acme", "dev-1", humidity_only)
    stack.deliver()
    still_open = len(stack.store.alerts.open_alerts("acme"))
    publish(stack, clock, "freezer-1", -20.0)
    stack.deliver()

    assert still_open == 1
    assert [m["type"] for m in alerts_of(stack, watcher)] == ["alert:triggered", "alert:resolved"]


def test_an_org_at_its_rule_limit_gets_409_for_a_new_rule_but_may_change_its_rules(
    stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
):
    stack.reconfigure(monkeypatch, MAX_RULES_PER_ORG="2")
    stack.put_rule("acme", "r1", **FREEZER)
    stack.put_rule("acme", "r2", **FREEZER)
    claims = authorizer_claims("acme")

    third = stack.rules_request("PUT /alert-rules/{ruleId}", claims, {**FREEZER}, "r3")
    changed = stack.rules_request("PUT /alert-rules/{ruleId}", claims, {**FREEZER, "max": -10}, "r2")
    other_org = stack.rules_request(
        "PUT /alert-rules/{ruleId}", authorizer_claims("globex"), {**FREEZER}, "r3"
    )

    assert third[0] == 409
    assert third[1] is not None
    assert third[1]["error"]["code"] == "limit_exceeded"
    assert (changed[0], other_org[0]) == (200, 200)
    _, listed = stack.rules_request("GET /alert-rules", claims)
    assert listed is not None
    assert [r["ruleId"] for r in listed["rules"]] == ["r1", "r2"]
