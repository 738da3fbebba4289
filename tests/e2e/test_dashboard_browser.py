"""The dashboard in headless Chromium against the real local stack with simulated devices.

Playwright (PyPI) drives Debian's chromium; the stack runs as ``python -m devstack`` on free
ports. Screenshots land in ``test-artifacts/``: ``dashboard.png`` (desktop),
``dashboard-phone.png`` (390x844), ``dashboard-dark.png``, ``dashboard-disconnected.png``
(the stack frozen) and ``dashboard-alert.png`` (an alert from a rule made in the page).
Every view passes axe-core with no violations.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import ARTIFACTS, LocalStack, start_local_stack
from tests.support.axe import axe_violations
from tests.support.browser import debian_chromium
from tests.support.dashboard import wait_for_banner_blaming_no_device

pytestmark = pytest.mark.browser

# Generous: the machine is shared, and the stack answers within a few ticks when idle.
WAIT_MS = 60_000
DESKTOP = {"width": 1360, "height": 760}
PHONE = {"width": 390, "height": 844}
SCREENSHOT_DIR = ARTIFACTS
# When each stack got ready (monotonic), by its WebSocket URL.
STARTED: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    # The simulated devices spread over acme and globex and answer commands; a command
    # timeout long enough for a busy machine.
    with start_local_stack(SIMULATED_DEVICES="4", COMMAND_TIMEOUT_SECONDS="10") as local_stack:
        STARTED[local_stack.websocket_url] = time.monotonic()
        yield local_stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from debian_chromium()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Any]:
    """``open_page(viewport=..., color_scheme=...)``: a fresh browser context's page that
    records page errors (none are allowed)."""
    contexts = []
    errors: list[str] = []

    def make(**options: Any) -> Page:
        context = browser.new_context(**{"viewport": DESKTOP, **options})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield make
    for context in contexts:
        context.close()
    assert errors == []


@pytest.fixture
def page(open_page: Any) -> Page:
    dashboard: Page = open_page()
    return dashboard


def reading_count(page: Page) -> int:
    return int(page.get_attribute("#reading-count", "data-count") or 0)


def wait_for_reading_count(page: Page, minimum: int) -> None:
    page.wait_for_function(
        "(minimum) => Number(document.querySelector('#reading-count').dataset.count) >= minimum",
        arg=minimum,
        timeout=WAIT_MS,
    )


def open_dashboard(page: Page, stack: LocalStack) -> None:
    page.goto(f"{stack.dashboard_url}/?token={stack.token('acme')}")
    expect(page.locator("#status")).to_have_attribute("data-status", "connected", timeout=WAIT_MS)
    expect(page.locator("tr[data-unit-id]").first).to_be_visible(timeout=WAIT_MS)


def test_dashboard_streams_simulated_readings_and_shows_a_command_ack(stack: LocalStack, page: Page) -> None:
    socket_urls: list[str] = []
    page.on("websocket", lambda socket: socket_urls.append(socket.url))
    token = stack.token("acme")

    page.goto(f"{stack.dashboard_url}/?token={token}")

    expect(page.locator("#status")).to_have_attribute("data-status", "connected", timeout=WAIT_MS)
    expect(page.locator("#status")).to_have_text("Connected")
    rows = page.locator("tr[data-unit-id]")
    expect(rows.first).to_be_visible(timeout=WAIT_MS)
    expect(rows.first.locator("td.temperature")).to_have_text(re.compile(r"^-?\d+\.\d °C$"))
    # Several ticks, so the sparklines have a few points for the screenshot.
    wait_for_reading_count(page, 60)
    unit_ids = rows.evaluate_all("rows => rows.map((row) => row.dataset.unitId)")
    assert unit_ids, "no unit rows"
    assert all(unit_id.startswith("acme-") for unit_id in unit_ids), unit_ids  # org isolation
    expect(page.locator("#subscription-text")).to_have_text("Receiving every unit of acme.")

    row = rows.first
    button = row.locator(".command-button")
    expect(button).to_have_attribute("aria-label", re.compile(f"for {re.escape(unit_ids[0])}$"))
    expect(button).to_be_enabled(timeout=WAIT_MS)
    button.click()  # Identify, the default
    result = row.locator(".command-state")
    expect(result).to_have_attribute("data-state", "ack", timeout=WAIT_MS)
    expect(result).to_be_visible()
    expect(result).to_contain_text("blinking")

    assert axe_violations(page) == []
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "dashboard.png"), full_page=True)

    # The token left the address bar, and never rode in a WebSocket URL.
    assert "token" not in page.url
    assert socket_urls
    assert all(token not in url for url in socket_urls)


def test_a_command_with_a_parameter_reaches_the_device(stack: LocalStack, page: Page) -> None:
    open_dashboard(page, stack)
    row = page.locator("tr[data-unit-id]").first
    row.locator("select").select_option("setReportingInterval")
    row.locator(".param input").fill("2")
    expect(row.locator(".command-button")).to_be_enabled(timeout=WAIT_MS)
    row.locator(".command-button").click()
    expect(row.locator(".command-state")).to_have_text("✓ Set interval: reporting every 2 s", timeout=WAIT_MS)
    row.locator(".param input").fill("1")
    row.locator(".command-button").click()
    expect(row.locator(".command-state")).to_have_text("✓ Set interval: reporting every 1 s", timeout=WAIT_MS)


def test_the_units_filter_subscribes_to_exactly_the_chosen_unit(stack: LocalStack, page: Page) -> None:
    open_dashboard(page, stack)
    rows = page.locator("tr[data-unit-id]:visible")
    expect(rows.nth(1)).to_be_visible(timeout=WAIT_MS)
    chosen = rows.first.get_attribute("data-unit-id")
    assert chosen

    page.fill("#units-input", chosen)
    page.click("#filter-form button")

    expect(page.locator("#subscription-text")).to_have_text(f"Receiving units {chosen}.", timeout=WAIT_MS)
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-unit-id", chosen)
    # Later readings of the other units stay out; the chosen one keeps updating.
    wait_for_reading_count(page, reading_count(page) + 1)
    expect(rows).to_have_count(1)

    page.fill("#units-input", "acme-gw-77.fridge")
    page.click("#filter-form button")
    expect(page.locator("#filter-feedback")).to_contain_text("No readings ever from acme-gw-77.fridge")


def test_phones_get_cards_with_every_field_on_screen(stack: LocalStack, open_page: Any) -> None:
    page: Page = open_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    open_dashboard(page, stack)
    wait_for_reading_count(page, 20)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for cell in page.locator("tr[data-unit-id]").first.locator("td").all():
        box = cell.bounding_box()
        assert box is not None
        assert box["x"] >= 0, cell.inner_text()
        assert box["x"] + box["width"] <= PHONE["width"], cell.inner_text()
    assert axe_violations(page) == []
    page.screenshot(path=str(SCREENSHOT_DIR / "dashboard-phone.png"), full_page=False)


def test_dark_mode_follows_the_system_and_stays_readable(stack: LocalStack, open_page: Any) -> None:
    page: Page = open_page(color_scheme="dark")
    open_dashboard(page, stack)
    wait_for_reading_count(page, 20)
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert background == "rgb(11, 18, 32)"
    assert axe_violations(page) == []
    page.screenshot(path=str(SCREENSHOT_DIR / "dashboard-dark.png"), full_page=True)


def test_a_frozen_stack_shows_the_banner_and_comes_back(stack: LocalStack, page: Page) -> None:
    open_dashboard(page, stack)
    wait_for_reading_count(page, 20)
    banner = page.locator("#connection-banner")
    stack.process.send_signal(signal.SIGSTOP)  # the whole stack hangs, sockets stay open
    try:
        wait_for_banner_blaming_no_device(page, 45)
        expect(banner).to_contain_text("Data may be out of date: last update at")
        expect(page.locator(".stale-marker")).to_have_count(0)
        expect(page.locator("#banner-countdown")).to_have_text(re.compile(r"Reconnecting"), timeout=WAIT_MS)
        page.screenshot(path=str(SCREENSHOT_DIR / "dashboard-disconnected.png"), full_page=True)
    finally:
        stack.process.send_signal(signal.SIGCONT)
    back = time.monotonic()
    expect(page.locator("#status")).to_have_attribute("data-status", "connected", timeout=WAIT_MS)
    recovery = time.monotonic() - back
    expect(banner).to_be_hidden()
    # Within 2 s of the server answering on an idle machine; the stack itself needs a moment
    # to catch up after SIGCONT, and the machine is shared.
    assert recovery < 10, f"back {recovery:.1f} s after the stack"
    (SCREENSHOT_DIR / "dashboard-recovery.txt").write_text(f"{recovery:.2f} s\n")


def test_the_page_opens_with_the_last_minutes_of_history(stack: LocalStack, page: Page) -> None:
    # The stack has been streaming for a while (this module's earlier tests, or a wait).
    time.sleep(max(0.0, STARTED[stack.websocket_url] + 50 - time.monotonic()))
    opened = time.monotonic()
    open_dashboard(page, stack)

    # The sparkline's 140 px show 5 minutes: a line starting left of x=120 holds readings
    # from more than 38 s before the page was opened (the stack is 50 s old or more).
    page.wait_for_function(
        """() => [...document.querySelectorAll('.sparkline polyline')].some(
            (line) => Number(line.getAttribute('points').split(',')[0]) < 120)""",
        timeout=WAIT_MS,
    )
    assert time.monotonic() - opened < 20


def test_a_token_the_server_refuses_ends_in_unauthorized(stack: LocalStack, page: Page) -> None:
    claims = {"sub": "mallory", "org": "acme", "exp": 4102444800}
    forged = jwt.encode(claims, "a-secret-of-32-bytes-or-more-but-not-this-stack's")

    page.goto(f"{stack.dashboard_url}/?token={forged}")

    expect(page.locator("#status")).to_have_attribute("data-status", "unauthorized", timeout=WAIT_MS)
    expect(page.locator("#notices")).to_contain_text("Not authorized")
    expect(page.locator("tr[data-unit-id]")).to_have_count(0)


def test_a_rule_made_in_the_dashboard_raises_an_alert_that_its_edit_resolves(
    stack: LocalStack, page: Page
) -> None:
    open_dashboard(page, stack)
    # An ambient unit stays near 21 °C, and no example rule watches its temperature.
    unit_id = "acme-gw-02.ambient"
    row = page.locator(f'tr[data-unit-id="{unit_id}"]')
    row.locator(".unit-link").click()
    rules = page.locator("#rules-list")
    expect(rules).to_contain_text("No reading for 30 s · every unit of the organization", timeout=WAIT_MS)

    page.click("#rule-new")
    page.fill("#rule-name", "Ambient too warm")
    page.fill("#rule-max", "10")
    page.fill("#rule-for", "-1")
    page.select_option("#rule-severity", "critical")
    page.click("#rule-save")
    expect(page.locator("#rule-error-forSeconds")).to_have_text(
        "Input should be greater than or equal to 0", timeout=WAIT_MS
    )
    assert axe_violations(page) == []  # the editor open, with the server's error by its field
    page.fill("#rule-for", "0")
    page.click("#rule-save")
    expect(page.locator("#rules-status")).to_have_text("Saved the rule “Ambient too warm”.", timeout=WAIT_MS)
    expect(page.locator("#dialog-alerts")).to_contain_text(
        re.compile(rf"Ambient too warm: temperature [\d.]+ above 10 on unit {re.escape(unit_id)}"),
        timeout=WAIT_MS,
    )
    page.keyboard.press("Escape")
    expect(row).to_have_attribute("data-alert", "critical")
    expect(row.locator(".severity-badge")).to_contain_text("Critical: Temperature high")
    page.click("#alerts-toggle")
    expect(page.locator("#alerts-list .alert-item", has_text="Ambient too warm")).to_contain_text(unit_id)
    assert axe_violations(page) == []  # an alert on a row and in the header's list
    page.screenshot(path=str(SCREENSHOT_DIR / "dashboard-alert.png"), full_page=True)
    page.keyboard.press("Escape")
    expect(page.locator("#alerts-panel")).to_be_hidden()

    # A bound the unit is far from: the rules API resolves the alert at once.
    row.locator(".unit-link").click()
    page.get_by_role("button", name="Edit the rule Ambient too warm").click()
    page.fill("#rule-max", "60")
    page.click("#rule-save")
    expect(rules).to_contain_text("Temperature above 60 °C · this unit", timeout=WAIT_MS)
    expect(page.locator("#dialog-alerts")).to_be_hidden(timeout=WAIT_MS)
    expect(row).not_to_have_attribute("data-alert", "critical")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete the rule Ambient too warm").click()
    expect(page.locator("#rules-status")).to_have_text(
        "Deleted the rule “Ambient too warm”.", timeout=WAIT_MS
    )
    status, listed = stack.http("GET", "/alert-rules", stack.token("acme"))
    assert status == 200
    assert listed is not None
    assert "Ambient too warm" not in [rule.get("name") for rule in listed["rules"]]
    assert "unit-silent" in [rule["ruleId"] for rule in listed["rules"]]
