"""Checks on the dashboard page shared by its peer-driven and end-to-end browser tests."""

from __future__ import annotations

import time

from playwright.sync_api import Page


def wait_for_banner_blaming_no_device(page: Page, seconds: float) -> None:
    """Until the connection banner shows, no unit may be marked stale: the server's silence
    is the connection's fault, not the devices'."""
    banner = page.locator("#connection-banner")
    deadline = time.monotonic() + seconds
    while not banner.is_visible():
        assert page.locator(".stale-marker").count() == 0, "a device was blamed for the server's silence"
        assert time.monotonic() < deadline, f"no connection banner within {seconds} s of the server's silence"
        time.sleep(0.2)
