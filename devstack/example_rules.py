"""Example alert rules for the simulated orgs, so that a new user of ``make dev`` sees an
alert within a minute: each org's first freezer has its door left open 20 s after start
(devstack/simulator.py) and its rule fires 10 s into the excursion; the fridges and
freezers keep having random excursions that their rules catch now and then.

The rules are set through the HTTP API (``PUT /alert-rules/{ruleId}``, the rules
function) with a token of each org, exactly as a user would, never written into the
table. ``LOCAL_EXAMPLE_RULES=false`` leaves them out.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from devstack.simulator import SimulatedDevice
from devstack.token import mint_token

log = logging.getLogger("devstack.example_rules")

# The sure excursion of each org's first freezer starts this long after the fleet is built.
DOOR_OPEN_AFTER_SECONDS = 20.0


@dataclass(frozen=True)
class TooWarm:
    """How far above its set point a unit may go before its rule fires, and for how long."""

    above_set_point: float
    for_seconds: int
    severity: str
    name: str


# A freezer (-18 °C) alerts above -15 °C, a fridge (4 °C) above 8 °C. Sensor noise stays
# within about a degree of the set point, so only excursions cross these.
TOO_WARM = {
    "freezer": TooWarm(3.0, 10, "critical", "Freezer too warm"),
    "fridge": TooWarm(4.0, 30, "warning", "Fridge too warm"),
}
SILENCE_RULE = {"metric": "silence", "maxSilenceSeconds": 30, "severity": "warning", "name": "Unit silent"}


def example_rules(devices: Sequence[SimulatedDevice]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per org, ruleId -> rule body: one temperature rule per freezer and fridge, and one
    org-wide silence rule."""
    rules: dict[str, dict[str, dict[str, Any]]] = {}
    for device in devices:
        org_rules = rules.setdefault(device.org_id, {"unit-silent": dict(SILENCE_RULE)})
        for unit in device.units:
            too_warm = TOO_WARM.get(unit.profile.kind)
            if too_warm is None:
                continue
            org_rules[f"{unit.unit_id}.too-warm"] = {
                "metric": "temperature",
                "max": unit.profile.set_point + too_warm.above_set_point,
                "unitId": unit.unit_id,
                "forSeconds": too_warm.for_seconds,
                "severity": too_warm.severity,
                "name": too_warm.name,
            }
    return rules


def install(http_url: str, rules: dict[str, dict[str, dict[str, Any]]], jwt_secret: str) -> int:
    """PUT every rule with a token of its org; returns how many were stored. A rule the
    API refuses is logged: the stack still starts."""
    stored = 0
    for org_id, org_rules in rules.items():
        token = mint_token(org_id, secret=jwt_secret, subject="devstack-example-rules")
        for rule_id, body in org_rules.items():
            request = urllib.request.Request(  # noqa: S310 - the stack's own HTTP API on loopback
                f"{http_url}/alert-rules/{rule_id}",
                data=json.dumps(body).encode(),
                method="PUT",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - loopback
                    stored += 1
            except urllib.error.HTTPError as error:
                log.warning("example rule %s of %s refused: %s %s", rule_id, org_id, error.code, error.read())
            except OSError as error:
                log.warning("example rule %s of %s not stored: %s", rule_id, org_id, error)
    return stored
