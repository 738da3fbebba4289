"""The dashboard (web/index.html) in headless Chromium against the scripted contract peer:
what the real stack cannot be made to do on demand (outages, frozen servers, units of a
given state, a units-limited token) and sign-in through a fake Cognito hosted UI.
tests/e2e/test_dashboard_browser.py runs the same page against the real local stack."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.axe import axe_violations
from tests.support.browser import debian_chromium
from tests.support.contract_peer import (
    ContractPeer,
    WebServer,
    batch,
    fake_jwt,
    iso_ago,
    reading,
    token_claims,
    wait_until,
)
from tests.support.dashboard import wait_for_banner_blaming_no_device
from tests.support.rules_api import FakeRulesApi

pytestmark = pytest.mark.browser

WAIT_MS = 15_000
FRIDGE, FREEZER, AMBIENT, COLDROOM = (
    "acme-gw-01.fridge",
    "acme-gw-01.freezer",
    "acme-gw-02.ambient",
    "acme-gw-03.coldroom",
)
SITES = {FRIDGE: "acme-site-1", FREEZER: "acme-site-1", AMBIENT: None, COLDROOM: "acme-site-2"}


def token(**claims: Any) -> str:
    return fake_jwt({"sub": "tester", "org": "acme", "exp": int(time.time()) + 3600, **claims})


def unit_reading(unit_id: str, number: int, seconds_ago: float, **fields: Any) -> dict[str, Any]:
    defaults = {
        "siteId": SITES[unit_id],
        "deviceId": unit_id.split(".")[0],
        "temperature": 4 + number % 5 / 10,
    }
    return reading(f"{unit_id}-{number}", unit_id, iso_ago(seconds_ago), **{**defaults, **fields})


def history(unit_id: str, *, gap: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """A reading every 2 s over the last 5 minutes (up to 20 s ago), less the ``gap`` seconds."""
    return [
        unit_reading(unit_id, n, ago)
        for n, ago in enumerate(range(290, 20, -2))
        if not (gap and gap[1] < ago < gap[0])
    ]


def fresh(unit_id: str, **fields: Any) -> dict[str, Any]:
    return unit_reading(unit_id, 10_000 + int(time.time() * 1000) % 100_000, 0, **fields)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from debian_chromium()


@pytest.fixture(scope="module")
def web() -> Iterator[WebServer]:
    server = WebServer()
    yield server
    server.close()


@pytest.fixture
def peer() -> Iterator[ContractPeer]:
    contract_peer = ContractPeer()
    contract_peer.history = {unit_id: history(unit_id) for unit_id in SITES}
    contract_peer.start()
    yield contract_peer
    contract_peer.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 800})
    # Counts connection attempts, also those that fail before a handshake.
    context.add_init_script(
        """window.socketsOpened = 0;
        window.WebSocket = class extends WebSocket {
            constructor(...args) { super(...args); window.socketsOpened += 1; }
        };"""
    )
    dashboard = context.new_page()
    errors: list[str] = []
    dashboard.on("pageerror", lambda error: errors.append(str(error)))
    yield dashboard
    context.close()
    assert errors == []


@pytest.fixture
def rules_api() -> Iterator[FakeRulesApi]:
    api = FakeRulesApi()
    yield api
    api.close()


def open_dashboard(
    page: Page,
    web: WebServer,
    peer: ContractPeer,
    jwt: str | None = None,
    *,
    http_url: str = "http://127.0.0.1:9",
    rows: int | None = None,
) -> None:
    web.config = {"websocketUrl": peer.url, "httpUrl": http_url}
    page.goto(f"{web.origin}/?token={jwt or token()}")
    expect(page.locator("#status")).to_have_attribute("data-status", "connected", timeout=WAIT_MS)
    expect(page.locator("tr[data-unit-id]")).to_have_count(rows or len(peer.history), timeout=WAIT_MS)


def row(page: Page, unit_id: str) -> Any:
    return page.locator(f'tr[data-unit-id="{unit_id}"]')


def test_history_on_load_fills_the_sparklines_and_shows_gaps_as_gaps(
    page: Page, web: WebServer, peer: ContractPeer
) -> None:
    peer.history[FRIDGE] = history(FRIDGE, gap=(200, 150))
    open_dashboard(page, web, peer)

    (hello,) = peer.messages("hello")
    assert iso_ago(305) < hello["resume"]["since"] < iso_ago(295)
    wait_until(lambda: len(peer.messages("getHistory")) >= len(SITES), "a history request per unit")
    # Two runs of line for the unit that was silent for 50 s, one for the others.
    expect(row(page, FRIDGE).locator(".sparkline polyline")).to_have_count(2, timeout=WAIT_MS)
    expect(row(page, FRIDGE).locator(".sparkline svg")).to_have_attribute("aria-label", re.compile("1 gap"))
    expect(row(page, FREEZER).locator(".sparkline polyline")).to_have_count(1)


def test_the_history_survives_a_filter_change_and_opens_as_a_chart(
    page: Page, web: WebServer, peer: ContractPeer
) -> None:
    open_dashboard(page, web, peer)
    expect(row(page, AMBIENT).locator(".sparkline polyline")).to_have_count(1, timeout=WAIT_MS)
    page.fill("#units-input", FRIDGE)
    page.click("#filter-form button")
    expect(page.locator("#subscription-text")).to_have_text(f"Receiving units {FRIDGE}.")
    expect(row(page, AMBIENT)).to_be_hidden()

    # The server no longer has AMBIENT's history: what the page shows next is what it kept.
    del peer.history[AMBIENT]
    page.fill("#units-input", "")
    page.click("#filter-form button")
    expect(page.locator("#subscription-text")).to_have_text("Receiving every unit of acme.")
    expect(row(page, AMBIENT)).to_be_visible()
    expect(row(page, AMBIENT).locator(".sparkline polyline")).to_have_count(1)

    row(page, FREEZER).locator(".unit-link").click()
    dialog = page.locator("#unit-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#dialog-title")).to_have_text(FREEZER)
    expect(dialog.locator("canvas")).to_have_count(1, timeout=WAIT_MS)
    expect(dialog.locator("#dialog-summary")).to_contain_text("readings in the last 15 minutes")
    assert axe_violations(page) == []
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_an_outage_shows_a_banner_with_a_countdown_and_no_stale_rows(
    page: Page, web: WebServer, peer: ContractPeer
) -> None:
    open_dashboard(page, web, peer)
    # The history ends 20 s ago: with the server answering, every unit is stale.
    expect(page.locator(".stale-marker")).to_have_count(len(SITES), timeout=WAIT_MS)

    peer.stop()
    banner = page.locator("#connection-banner")
    expect(banner).to_be_visible(timeout=WAIT_MS)
    expect(banner).to_contain_text("Connection lost")
    expect(banner).to_contain_text("Data may be out of date: last update at")
    # During an outage the connection is to blame, not every device.
    expect(page.locator(".stale-marker")).to_have_count(0)
    expect(page.locator("#status-text")).to_have_text(re.compile("Reconnecting"))
    expect(page.locator("#banner-countdown")).to_have_text(
        re.compile(r"Reconnecting in \d+ s"), timeout=WAIT_MS
    )
    assert axe_violations(page) == []
    attempts = page.evaluate("window.socketsOpened")
    page.click("#retry-now")
    wait_until(lambda: page.evaluate("window.socketsOpened") > attempts, "an attempt from Retry now")

    peer.start()
    back = time.monotonic()
    expect(banner).to_be_hidden(timeout=WAIT_MS)
    assert time.monotonic() - back < 2.5
    expect(page.locator("#status-text")).to_have_text("Connected")


def test_a_frozen_server_is_reported_without_blaming_the_devices(
    page: Page, web: WebServer, peer: ContractPeer
) -> None:
    peer.history = {FRIDGE: history(FRIDGE)}
    open_dashboard(page, web, peer)
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(0.5):
            peer.push(batch([fresh(FRIDGE)], server_time=peer.now()))

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    expect(page.locator(".stale-marker")).to_have_count(0, timeout=WAIT_MS)
    stop.set()
    reporter.join()
    peer.frozen = True  # neither readings nor answers: the server hangs

    wait_for_banner_blaming_no_device(page, 30)
    banner = page.locator("#connection-banner")
    expect(banner).to_contain_text("Connection lost")

    peer.frozen = False
    expect(banner).to_be_hidden(timeout=WAIT_MS)


def test_search_grouping_sorting_and_feedback_on_unknown_ids(
    page: Page, web: WebServer, peer: ContractPeer
) -> None:
    open_dashboard(page, web, peer)
    peer.push(
        batch([fresh(u, battery=10.0 if u == COLDROOM else 90.0) for u in SITES], server_time=peer.now())
    )
    visible = page.locator("tr[data-unit-id]:visible")

    page.fill("#search-input", "gw-01")
    expect(visible).to_have_count(2)
    page.fill("#search-input", "SITE-2")
    expect(visible).to_have_count(1)
    expect(visible.first).to_have_attribute("data-unit-id", COLDROOM)
    page.fill("#search-input", "nothing-like-it")
    expect(visible).to_have_count(0)
    expect(page.locator("#search-feedback")).to_have_text(
        'No unit, site or device matches "nothing-like-it".'
    )
    page.fill("#search-input", "")

    page.select_option("#group-select", "site")
    expect(page.locator("tr.group-row")).to_have_text(
        ["acme-site-1 · 2 units", "acme-site-2 · 1 unit", "No site · 1 unit"]
    )
    page.select_option("#group-select", "none")
    page.select_option("#sort-select", "state")
    expect(visible.first).to_have_attribute("data-unit-id", COLDROOM)
    expect(row(page, COLDROOM).locator(".state-badge")).to_have_text("Low battery")

    # Ids that look real, and a clear word for one that does not exist.
    assert "acme-gw-01" in (page.get_attribute("#units-input", "placeholder") or "")
    page.fill("#units-input", "acme-gw-09.freezer")
    page.click("#filter-form button")
    expect(page.locator("#filter-feedback")).to_contain_text("No readings ever from acme-gw-09.freezer")


def test_the_scope_line_matches_a_units_limited_token(page: Page, web: WebServer, peer: ContractPeer) -> None:
    peer.history = {FRIDGE: history(FRIDGE), FREEZER: history(FREEZER)}
    open_dashboard(page, web, peer, token(units=[FRIDGE, FREEZER]))
    expect(page.locator("#subscription-text")).to_have_text(
        f"Receiving the 2 units your access allows: {FRIDGE}, {FREEZER}."
    )
    page.fill("#units-input", AMBIENT)
    page.click("#filter-form button")
    expect(page.locator("#filter-feedback")).to_have_text(f"{AMBIENT} is outside your access")
    assert peer.messages("subscribe") == []


def test_commands_with_parameters_and_a_visible_result(
    page: Page, web: WebServer, peer: ContractPeer
) -> None:
    open_dashboard(page, web, peer)
    peer.push(batch([fresh(FRIDGE)], server_time=peer.now()))
    fridge = row(page, FRIDGE)
    button = fridge.locator(".command-button")
    expect(button).to_be_enabled(timeout=WAIT_MS)
    # The others stopped reporting 20 s ago: no commands to a device that may not be there.
    expect(row(page, AMBIENT).locator(".command-button")).to_be_disabled()
    names = page.locator(".command-button").evaluate_all("(buttons) => buttons.map((b) => b.ariaLabel)")
    assert len(set(names)) == len(SITES)
    assert f"Send the command to acme-gw-01 for {FRIDGE}" in names

    fridge.locator("select").select_option("setReportingInterval")
    fridge.locator(".param input").fill("0")
    button.click()
    expect(fridge.locator(".command-state")).to_contain_text("a number from 0.1 to 3600")
    assert peer.messages("sendCommand") == []
    fridge.locator(".param input").fill("5")
    button.click()
    expect(fridge.locator(".command-state")).to_have_text("✓ Set interval: blinking the status LED for 10 s")
    (sent,) = peer.messages("sendCommand")
    assert (sent["deviceId"], sent["command"], sent["params"]) == (
        "acme-gw-01",
        "setReportingInterval",
        {"seconds": 5},
    )

    peer.command_outcome = "error"
    page.once("dialog", lambda dialog: dialog.accept())
    fridge.locator("select").select_option("reboot")
    button.click()
    expect(fridge.locator(".command-state")).to_have_text("✗ Reboot: LED is broken")
    assert peer.messages("sendCommand")[-1]["command"] == "reboot"


def test_phones_get_cards_without_horizontal_scrolling(
    browser: Browser, web: WebServer, peer: ContractPeer
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        open_dashboard(page, web, peer)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        for cell in row(page, FRIDGE).locator("td").all():
            box = cell.bounding_box()
            assert box is not None
            assert box["x"] >= 0, cell.inner_text()
            assert box["x"] + box["width"] <= 390, cell.inner_text()
        assert axe_violations(page) == []
    finally:
        context.close()


# --- Units, alerts and rules -------------------------------------------------------------------


def unit_info(last: dict[str, Any]) -> dict[str, Any]:
    """A unit as listUnits answers it, from its last reading."""
    return {
        "unitId": last["unitId"],
        "siteId": last["siteId"],
        "lastReading": last,
        "lastSeenAt": last["receivedAt"],
    }


def alert(alert_id: str, unit_id: str, severity: str, message: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "alert:triggered",
        "alertId": alert_id,
        "ruleId": f"rule-{alert_id}",
        "unitId": unit_id,
        "alertType": "temperature_high",
        "severity": severity,
        "message": message,
        "triggeredAt": iso_ago(0),
        **fields,
    }


def resolved(opened: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "alert:resolved",
        "alertId": opened["alertId"],
        "ruleId": opened["ruleId"],
        "unitId": opened["unitId"],
        "resolvedAt": iso_ago(0),
    }


def visible_unit_ids(page: Page) -> list[str]:
    ids: list[str] = page.locator("tr[data-unit-id]:visible").evaluate_all(
        "(rows) => rows.map((row) => row.dataset.unitId)"
    )
    return ids


def test_quiet_units_and_alerts_come_from_the_server_then_alerts_open_and_resolve_live(
    page: Page, web: WebServer, peer: ContractPeer
) -> None:
    peer.history = {FRIDGE: history(FRIDGE), FREEZER: history(FREEZER)}
    # Quiet for two hours: no replay or history brings it, only listUnits.
    quiet = unit_reading(COLDROOM, 1, 2 * 3600)
    peer.units = [unit_info(peer.history[FRIDGE][-1]), unit_info(peer.history[FREEZER][-1]), unit_info(quiet)]
    silent = alert(
        "a-1",
        COLDROOM,
        "warning",
        f"Unit silent: no reading from unit {COLDROOM} for 300 s",
        alertType="silence",
        triggeredAt=iso_ago(2 * 3600 - 300),
    )
    peer.alerts = [silent]
    open_dashboard(page, web, peer, rows=3)

    coldroom = row(page, COLDROOM)
    expect(coldroom.locator(".state-badge")).to_have_text("Stale")
    expect(coldroom.locator(".last-seen")).to_have_text("2 h ago")
    expect(coldroom).to_have_attribute("data-alert", "warning")
    expect(coldroom.locator(".severity-badge")).to_have_text("Warning: Silent")
    expect(page.locator("#alerts-count")).to_have_text("1")

    warm = alert(
        "a-2", FREEZER, "critical", f"Freezer too warm: temperature -3.5 above -15 on unit {FREEZER}"
    )
    peer.push(warm)
    expect(row(page, FREEZER)).to_have_attribute("data-alert", "critical")
    expect(row(page, FREEZER).locator(".severity-badge")).to_have_text("Critical: Temperature high")
    expect(page.locator("#alerts-count")).to_have_text("2")
    expect(page.locator("#alerts-announcer")).to_contain_text("Critical alert on acme-gw-01.freezer")
    page.select_option("#sort-select", "severity")
    wait_until(lambda: visible_unit_ids(page) == [FREEZER, COLDROOM, FRIDGE], "the most severe alert first")

    page.click("#alerts-toggle")
    items = page.locator("#alerts-list .alert-item")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text(FREEZER)  # the newest first
    expect(items.first).to_contain_text("Freezer too warm")
    expect(items.nth(1)).to_contain_text(re.compile(r"since .* \(2 h ago\)"))
    assert axe_violations(page) == []
    # The list keeps keyboard focus while its ages tick; Escape closes it, back on the bell.
    page.wait_for_timeout(1200)
    expect(items.first).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#alerts-panel")).to_be_hidden()
    expect(page.locator("#alerts-toggle")).to_be_focused()
    page.keyboard.press("Enter")
    expect(items.first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#unit-dialog")).to_be_visible()
    expect(page.locator("#dialog-title")).to_have_text(FREEZER)
    expect(page.locator("#dialog-alerts")).to_contain_text("Freezer too warm")
    page.keyboard.press("Escape")
    expect(page.locator("#unit-dialog")).to_be_hidden()

    peer.push(resolved(warm))
    expect(row(page, FREEZER).locator(".severity-badge")).to_have_count(0)
    expect(row(page, FREEZER)).not_to_have_attribute("data-alert", "critical")
    expect(page.locator("#alerts-count")).to_have_text("1")

    # After a reconnect the page asks again: what changed while it was away shows.
    peer.alerts = []
    peer.units = [*peer.units, unit_info(unit_reading(AMBIENT, 1, 3 * 3600))]
    peer.drop()
    expect(row(page, AMBIENT)).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#alerts-label")).to_have_text("No active alerts")
    expect(coldroom.locator(".severity-badge")).to_have_count(0)


def test_a_unit_is_stale_after_three_of_its_intervals_or_as_its_silence_rule_says(
    page: Page, web: WebServer, peer: ContractPeer, rules_api: FakeRulesApi
) -> None:
    every_ten_seconds = [unit_reading(AMBIENT, n, ago) for n, ago in enumerate(range(292, 11, -10))]
    peer.history = {FRIDGE: history(FRIDGE), AMBIENT: every_ten_seconds}
    open_dashboard(page, web, peer, http_url=rules_api.url)

    # Both were last heard of 12-20 s ago: stale for a unit of 2 s, not for one of 10 s.
    expect(row(page, FRIDGE).locator(".state-badge")).to_have_text("Stale")
    expect(row(page, AMBIENT).locator(".state-badge")).to_have_text("OK")

    row(page, AMBIENT).locator(".unit-link").click()
    page.click("#rule-new")
    page.fill("#rule-name", "Ambient quiet")
    page.select_option("#rule-metric", "silence")
    expect(page.locator("#rule-min")).to_be_hidden()
    page.fill("#rule-silence", "10")
    page.click("#rule-save")
    expect(page.locator("#rules-list")).to_contain_text("No reading for 10 s · this unit")
    page.keyboard.press("Escape")
    expect(row(page, AMBIENT).locator(".state-badge")).to_have_text("Stale")
    (stored,) = rules_api.rules.values()
    assert stored == {
        "ruleId": stored["ruleId"],
        "metric": "silence",
        "maxSilenceSeconds": 10,
        "unitId": AMBIENT,
        "forSeconds": 0,
        "severity": "warning",
        "name": "Ambient quiet",
    }


def test_rules_are_created_edited_and_deleted_with_the_servers_errors_by_their_fields(
    page: Page, web: WebServer, peer: ContractPeer, rules_api: FakeRulesApi
) -> None:
    open_dashboard(page, web, peer, http_url=rules_api.url)
    row(page, FRIDGE).locator(".unit-link").click()
    expect(page.locator("#rules-list")).to_have_text("No rule covers this unit yet.")

    page.click("#rule-new")
    expect(page.locator("#rule-name")).to_be_focused()
    page.fill("#rule-name", "Fridge quiet")
    page.select_option("#rule-metric", "silence")
    page.fill("#rule-silence", "5")
    page.keyboard.press("Enter")
    silence = page.locator("#rule-silence")
    expect(page.locator("#rule-error-maxSilenceSeconds")).to_have_text(
        "Input should be greater than or equal to 10"
    )
    expect(silence).to_have_attribute("aria-invalid", "true")
    expect(silence).to_be_focused()
    assert rules_api.rules == {}
    assert axe_violations(page) == []

    silence.fill("60")
    page.click("#rule-save")
    expect(page.locator("#rules-status")).to_have_text("Saved the rule “Fridge quiet”.")
    expect(silence).to_be_hidden()
    (rule_id,) = rules_api.rules

    page.get_by_role("button", name="Edit the rule Fridge quiet").click()
    page.select_option("#rule-metric", "temperature")
    page.fill("#rule-min", "3")
    page.fill("#rule-max", "1")
    page.select_option("#rule-severity", "critical")
    page.click("#rule-save")
    expect(page.locator("#rule-form-error")).to_have_text("min must not be greater than max")
    page.fill("#rule-max", "8")
    page.fill("#rule-name", "Fridge out of range")
    page.click("#rule-save")
    item = page.locator(f'#rules-list [data-rule-id="{rule_id}"]')
    expect(item).to_contain_text("Fridge out of range")
    expect(item).to_contain_text("Critical")
    expect(item).to_contain_text("Temperature below 3 °C or above 8 °C · this unit")
    assert list(rules_api.rules) == [rule_id]
    assert (rules_api.rules[rule_id]["min"], rules_api.rules[rule_id]["max"]) == (3, 8)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete the rule Fridge out of range").click()
    expect(page.locator("#rules-status")).to_have_text("Deleted the rule “Fridge out of range”.")
    expect(page.locator("#rules-list")).to_have_text("No rule covers this unit yet.")
    assert rules_api.rules == {}
    assert rules_api.requests[-1][:2] == ("DELETE", f"/alert-rules/{rule_id}")


def test_a_token_the_rules_api_refuses_turns_the_rule_controls_off(
    page: Page, web: WebServer, peer: ContractPeer, rules_api: FakeRulesApi
) -> None:
    rules_api.refuse_with = 401
    open_dashboard(page, web, peer, http_url=rules_api.url)
    row(page, FRIDGE).locator(".unit-link").click()

    expect(page.locator("#rules-status")).to_contain_text(
        "Alert rules cannot be shown or changed with this access: "
        "the rules API does not accept your token (401 unauthorized)"
    )
    expect(page.locator("#rule-new")).to_be_disabled()
    assert rules_api.requests[0][:2] == ("GET", "/alert-rules")


def test_rules_that_failed_to_load_are_loaded_again(
    page: Page, web: WebServer, peer: ContractPeer, rules_api: FakeRulesApi
) -> None:
    rules_api.rules["warm"] = {
        "ruleId": "warm",
        "metric": "temperature",
        "max": 8,
        "unitId": FRIDGE,
        "severity": "warning",
        "forSeconds": 0,
    }
    rules_api.fail_next = 1
    open_dashboard(page, web, peer, http_url=rules_api.url)
    row(page, FRIDGE).locator(".unit-link").click()

    expect(page.locator("#rules-list")).to_contain_text("above 8", timeout=15_000)
    expect(page.locator("#rule-new")).to_be_enabled()
    assert [request[:2] for request in rules_api.requests[:2]] == [("GET", "/alert-rules")] * 2


# --- Sign-in through a Cognito hosted UI of our own -------------------------------------------

CLIENT_ID = "dashboard-public-client"


class FakeCognito:
    """The hosted UI's authorize and logout pages and its token endpoint, for a public client
    with PKCE (S256): checks what Cognito checks and records the token requests."""

    def __init__(self) -> None:
        self.token_requests: list[dict[str, str]] = []
        self.codes: dict[str, dict[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.id_token_lifetime = 3600
        self.issued: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/oauth2/authorize":
                    outer.authorize(self, query)
                elif url.path == "/logout":
                    self.send_response(302)
                    self.send_header("Location", query["logout_uri"])
                    self.end_headers()
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlsplit(self.path).path == "/login":
                    outer.login(self, form)
                else:
                    outer.token(self, form)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def domain(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def authorize(self, handler: http.server.BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        assert query["response_type"] == "code"
        assert query["client_id"] == CLIENT_ID
        assert query["code_challenge_method"] == "S256"
        assert query["scope"].split() == ["openid", "email", "profile"]
        fields = "".join(
            f'<input type="hidden" name="{name}" value="{query[name]}">'
            for name in ("redirect_uri", "state", "code_challenge")
        )
        form = f'<form method="post" action="/login">{fields}<button>Sign in</button></form>'
        body = f"<!doctype html><title>Sign in</title>{form}".encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def login(self, handler: http.server.BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        code = secrets.token_urlsafe(16)
        self.codes[code] = form
        handler.send_response(302)
        handler.send_header(
            "Location", f"{form['redirect_uri']}?{urlencode({'code': code, 'state': form['state']})}"
        )
        handler.end_headers()

    def id_token(self) -> str:
        claims = {"sub": "user-42", "email": "olga@example.com", "custom:org": "acme", "token_use": "id"}
        issued = fake_jwt(
            {**claims, "exp": int(time.time()) + self.id_token_lifetime, "jti": secrets.token_hex(4)}
        )
        self.issued.append(issued)
        return issued

    def token(self, handler: http.server.BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        self.token_requests.append(form)
        assert form["client_id"] == CLIENT_ID
        assert "client_secret" not in form  # a public client
        answer: dict[str, Any]
        status = 200
        if form["grant_type"] == "authorization_code":
            pending = self.codes.pop(form["code"], None)
            digest = hashlib.sha256(form["code_verifier"].encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if (
                pending is None
                or pending["code_challenge"] != challenge
                or pending["redirect_uri"] != form["redirect_uri"]
            ):
                status, answer = 400, {"error": "invalid_grant"}
            else:
                refresh = secrets.token_urlsafe(24)
                self.refresh_tokens.add(refresh)
                answer = {
                    "id_token": self.id_token(),
                    "access_token": "a",
                    "refresh_token": refresh,
                    "expires_in": 3600,
                }
        elif form["grant_type"] == "refresh_token" and form["refresh_token"] in self.refresh_tokens:
            answer = {"id_token": self.id_token(), "access_token": "a", "expires_in": 3600}
        else:
            status, answer = 400, {"error": "invalid_grant"}
        body = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Access-Control-Allow-Origin", "*")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sign_in_with_the_hosted_ui_and_pkce_then_refresh(
    page: Page, web: WebServer, peer: ContractPeer
) -> None:
    cognito = FakeCognito()
    # Short-lived ID tokens: the client asks for a fresh one 60 s before expiry, the page
    # refreshes those with less than 5 minutes left.
    cognito.id_token_lifetime = 62
    web.config = {
        "websocketUrl": peer.url,
        "httpUrl": "http://127.0.0.1:9",
        "auth": {
            "type": "cognito",
            "domain": cognito.domain + "/",
            "clientId": CLIENT_ID,
            "scopes": ["openid", "email", "profile"],
        },
    }
    try:
        page.goto(f"{web.origin}/")
        expect(page.locator("#sign-in-panel")).to_be_visible()
        expect(page.locator("#token-form")).to_be_hidden()
        page.click("#sign-in")
        page.click("text=Sign in")  # on the hosted UI

        expect(page.locator("#status")).to_have_attribute("data-status", "connected", timeout=WAIT_MS)
        assert "code=" not in page.url
        assert "state=" not in page.url
        expect(page.locator("#identity")).to_have_text("acme · olga@example.com")
        first = cognito.token_requests[0]
        assert first["grant_type"] == "authorization_code"
        assert first["redirect_uri"] == f"{web.origin}/"
        # The ID token rides in the subprotocols (a 62-s one is refreshed before it is used).
        protocol = peer.handshakes[0].headers["Sec-WebSocket-Protocol"]
        assert protocol in {f"sensor-stream.v1, bearer.{issued}" for issued in cognito.issued}

        # The session is extended with a refreshed ID token, on the same connection.
        wait_until(lambda: peer.messages("refreshToken"), "a refreshToken request", seconds=20)
        assert cognito.token_requests[-1]["grant_type"] == "refresh_token"
        assert peer.messages("refreshToken")[0]["token"] == cognito.issued[-1]
        assert token_claims(cognito.issued[-1])["sub"] == "user-42"
        assert len(peer.handshakes) == 1

        page.click("#sign-out")
        expect(page.locator("#sign-in-panel")).to_be_visible(timeout=WAIT_MS)
    finally:
        cognito.close()
