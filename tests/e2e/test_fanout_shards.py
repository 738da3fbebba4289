"""Sharded fan-out on the local stack: with two connections a shard, six browsers make the
flush's shard 0 start more shards through Lambda's Invoke API (devstack/lambda_api.py), as
it does in AWS; every browser still gets each reading of its org once, across the change
of layout and the flushers' hand-over each schedule period."""

from __future__ import annotations

import json
import time
import urllib.request
from contextlib import ExitStack
from typing import Any

from tests.e2e.conftest import Device, LocalStack, browser_socket, unique

SENDING_SECONDS = 20


def _flush_stats(stack: LocalStack) -> dict[str, int]:
    with urllib.request.urlopen(f"{stack.admin_url}/functions", timeout=10) as response:  # noqa: S310
        stats: dict[str, Any] = json.loads(response.read())
    return stats["flush"]


def test_every_browser_gets_each_reading_once_from_its_shard(local_stack_factory):
    settings = {
        "SIMULATED_DEVICES": "0",
        "LOCAL_EXAMPLE_RULES": "false",
        "FLUSH_CONNECTIONS_PER_SHARD": "2",
        "FLUSH_SIZING_SECONDS": "2",
        "FLUSH_RENEW_SECONDS": "2",
        # Hand-overs of every shard while readings flow.
        "LOCAL_FLUSH_SCHEDULE_SECONDS": "8",
    }
    orgs = [unique("org"), unique("org")]
    with local_stack_factory(**settings) as stack, ExitStack() as open_things:
        browsers = {
            org: [open_things.enter_context(browser_socket(stack, stack.token(org))) for _ in range(3)]
            for org in orgs
        }
        for browser in (b for group in browsers.values() for b in group):
            browser.hello()
        devices = {org: Device(stack, org, unique("dev")) for org in orgs}
        for device in devices.values():
            open_things.callback(device.close)
        sent: dict[str, list[str]] = {org: [] for org in orgs}
        most_flushers = 0
        started = time.monotonic()
        while time.monotonic() - started < SENDING_SECONDS:
            for org, device in devices.items():
                sent[org].append(device.publish_reading(f"{org}-freezer"))
            most_flushers = max(most_flushers, _flush_stats(stack)["running"])
            time.sleep(0.5)
        for org, group in browsers.items():
            for browser in group:
                browser.wait_for_reading(sent[org][-1])
                for reading_id in sent[org]:
                    browser.wait_for_reading(reading_id)

    for org, group in browsers.items():
        for browser in group:
            received = [reading["id"] for reading in browser.readings()]
            assert sorted(received) == sorted(sent[org]), "each reading of its org, once, nothing else"
    # Six connections at two a shard: shard 0 and at least two more flushers ran at once.
    assert most_flushers >= 3
