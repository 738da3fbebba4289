"""The dashboard in headless Chromium against the real local stack with simulated devices.

Playwright (PyPI) drives Debian's chromium; the stack runs as ``python -m devstack`` on free
ports. The screenshot lands in ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import jwt
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import ARTIFACTS, LocalStack, start_local_stack
from tests.support.browser import debian_chromium

pytestmark = pytest.mark.browser

# Generous: the machine is shared, and the stack answers within a few ticks when idle.
WAIT_MS = 60_000
SCREENSHOT = ARTIFACTS / "dashboard.png"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    # The simulated devices spread over acme and globex and answer commands; a command
    # timeout long enough for a busy machine.
    with start_local_stack(SIMULATED_DEVICES="4", COMMAND_TIMEOUT_SECONDS="10") as local_stack:
        yield local_stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from debian_chromium()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 760})
    dashboard = context.new_page()
    yield dashboard
    context.close()


def reading_count(page: Page) -> int:
    return int(page.get_attribute("#reading-count", "data-count") or 0)


def wait_for_reading_count(page: Page, minimum: int) -> None:
    page.wait_for_function(
        "(minimum) => Number(document.querySelector('#reading-count').dataset.count) >= minimum",
        arg=minimum,
        timeout=WAIT_MS,
    )


def test_dashboard_streams_simulated_readings_and_shows_a_command_ack(stack: LocalStack, page: Page) -> None:
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
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

    row = rows.first
    row.locator(".command-button").click()
    expect(row.locator(".command-state")).to_have_attribute("data-state", "ack", timeout=WAIT_MS)
    expect(row.locator(".command-state")).to_have_attribute("title", re.compile("blinking"))

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # The token left the address bar, and never rode in a WebSocket URL.
    assert "token" not in page.url
    assert socket_urls
    assert all(token not in url for url in socket_urls)
    assert page_errors == []


def test_the_units_filter_subscribes_to_exactly_the_chosen_unit(stack: LocalStack, page: Page) -> None:
    page.goto(f"{stack.dashboard_url}/?token={stack.token('acme')}")
    rows = page.locator("tr[data-unit-id]")
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


def test_a_token_the_server_refuses_ends_in_unauthorized(stack: LocalStack, page: Page) -> None:
    claims = {"sub": "mallory", "org": "acme", "exp": 4102444800}
    forged = jwt.encode(claims, "a-secret-of-32-bytes-or-more-but-not-this-stack's")

    page.goto(f"{stack.dashboard_url}/?token={forged}")

    expect(page.locator("#status")).to_have_attribute("data-status", "unauthorized", timeout=WAIT_MS)
    expect(page.locator("#notices")).to_contain_text("Not authorized")
    expect(page.locator("tr[data-unit-id]")).to_have_count(0)
