"""The local stack as a newcomer meets it: simulated devices stream to a browser, the
dashboard is served, and Ctrl-C stops everything."""

import json
import signal
import socket
import urllib.request
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import STOP_TIMEOUT_SECONDS, browser_socket


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback http
        return response.status, response.headers.get("Content-Type", ""), response.read()


def test_simulated_devices_stream_to_a_browser_and_ctrl_c_stops_everything(local_stack_factory):
    with local_stack_factory(SIMULATED_DEVICES="2", SIMULATED_ORGS="acme,globex") as stack:
        with browser_socket(stack, stack.token("acme")) as browser:
            browser.hello()
            batch = browser.wait_for(lambda m: m.get("type") == "sensor:readings:batch")
            answer = browser.request(
                {"action": "sendCommand", "deviceId": "acme-gw-01", "command": "ping", "params": {}},
                "command:accepted",
            )
            ack = browser.wait_for(lambda m: m.get("type") == "command:ack")
        config_status, config_type, config = _get(f"{stack.dashboard_url}/config.json")
        page_status, page_type, _ = _get(f"{stack.dashboard_url}/")

        stack.process.send_signal(signal.SIGINT)
        exit_code = stack.process.wait(STOP_TIMEOUT_SECONDS)
        after_ready = stack.stdout_lines.get(timeout=STOP_TIMEOUT_SECONDS)

    readings = [r for b in batch["batches"] for r in b["readings"]]
    assert {r["deviceId"] for r in readings} == {"acme-gw-01"}
    assert all(-100 <= r["temperature"] <= 150 and r["recordedAt"].endswith("Z") for r in readings)
    assert answer["type"] == "command:accepted", answer
    assert (ack["commandId"], ack["status"], ack["detail"]) == (answer["commandId"], "ok", "pong")
    assert (config_status, config_type) == (200, "application/json")
    assert json.loads(config)["websocketUrl"] == stack.websocket_url
    assert (page_status, page_type.split(";")[0]) == (200, "text/html")
    assert exit_code == 0
    assert after_ready is None, "stdout carries the ready line only"
    for url in (stack.websocket_url, stack.http_url, stack.mqtt_url, stack.dashboard_url):
        parts = urlsplit(url)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((parts.hostname, parts.port), timeout=5)
