"""The flush's hand-over on the local stack, with a gateway slower than a tick: the
running flusher hands the lanes still holding readings to its successor (FLUSH/HANDOVER,
docs/data-model.md), which posts them; every browser gets each reading of its org once,
and none is closed for it."""

from __future__ import annotations

import json
import time
import urllib.request
from contextlib import ExitStack
from typing import Any

from tests.e2e.conftest import Device, LocalStack, browser_socket, unique

SCHEDULE_SECONDS = 6
# Two hand-overs at least while readings flow and posts are slow.
SENDING_SECONDS = 14
READING_INTERVAL_SECONDS = 0.2
# One post at a time, each answered after ~0.8 s (p99 1.2 s, under the 2-s
# FLUSH_POST_TIMEOUT_SECONDS): four browsers' messages take more than a tick, so at every
# hand-over some wait for the posting slot.
POST_CONCURRENCY = 1
BROWSERS = 4
SLOW_POSTS = {"postLatencyMs": {"median": 800, "p99": 1200}}


def _admin(stack: LocalStack, method: str, path: str, document: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 - the stack's loopback admin API
        f"{stack.admin_url}{path}", data=json.dumps(document).encode(), method=method
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def _logged(stack: LocalStack, message: str) -> list[dict[str, Any]]:
    """The stack's structured log records with this message (the functions log JSON)."""
    records = []
    for line in stack.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"message":"{message}"' in line:
            records.append(json.loads(line))
    return records


def test_lanes_still_holding_readings_at_a_hand_over_reach_their_browsers_once(local_stack_factory):
    settings = {
        "SIMULATED_DEVICES": "0",
        "LOCAL_EXAMPLE_RULES": "false",
        "LOCAL_FLUSH_SCHEDULE_SECONDS": str(SCHEDULE_SECONDS),
        "FLUSH_POST_CONCURRENCY": str(POST_CONCURRENCY),
    }
    org = unique("org")
    with local_stack_factory(**settings) as stack, ExitStack() as open_things:
        token = stack.token(org)
        browsers = [open_things.enter_context(browser_socket(stack, token)) for _ in range(BROWSERS)]
        for browser in browsers:
            browser.hello()
        device = Device(stack, org, unique("dev"))
        open_things.callback(device.close)
        _admin(stack, "PUT", "/faults/gateway", SLOW_POSTS)
        sent: list[str] = []
        started = time.monotonic()
        while time.monotonic() - started < SENDING_SECONDS:
            sent.append(device.publish_reading(f"unit-{len(sent) % 3}"))
            time.sleep(READING_INTERVAL_SECONDS)
        _admin(stack, "PUT", "/faults/gateway", {})
        for browser in browsers:
            for reading_id in sent:
                browser.wait_for_reading(reading_id)
        handovers = _logged(stack, "flush handed over")
        resumes = _logged(stack, "lanes handed over resumed")
        closed = _logged(stack, "closing a connection")

    for browser in browsers:
        received = [reading["id"] for reading in browser.readings()]
        assert sorted(received) == sorted(sent), "each reading of its org, once"
    handed = [record["lanes_handed_over"] for record in handovers]
    assert any(count > 0 for count in handed), f"no lane was handed over: {handed}"
    assert sum(record["resumed"] for record in resumes) > 0, resumes
    assert closed == [], "no browser closed for the gateway's slowness"
