"""The local stack as a newcomer meets it: simulated devices stream to a browser, the
dashboard is served, and Ctrl-C stops everything, also while devices publish."""

import contextlib
import json
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from paho.mqtt.client import CallbackAPIVersion, Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.e2e.conftest import STOP_TIMEOUT_SECONDS, browser_socket, iso_now


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
        _, _, functions = _get(f"{stack.admin_url}/functions")

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
    # Before the first hand-over (a minute in), the flush's successor is initialised
    # already: a cold start there would take the running flush's CPU on this machine.
    assert json.loads(functions)["flush"]["environments"] == 2
    assert exit_code == 0
    assert after_ready is None, "stdout carries the ready line only"
    for url in (stack.websocket_url, stack.http_url, stack.mqtt_url, stack.dashboard_url):
        parts = urlsplit(url)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((parts.hostname, parts.port), timeout=5)


def _descendants(pid: int) -> set[int]:
    """Every process under ``pid`` now (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left


def _read_until_closed(connection: ClientConnection) -> bool:
    """Read what is left; True once the connection is closed, False if it stays open."""
    try:
        while True:
            connection.recv(timeout=STOP_TIMEOUT_SECONDS)
    except ConnectionClosed:
        return True
    except TimeoutError:
        return False


def test_ctrl_c_under_load_stops_every_process_quietly(local_stack_factory):
    org = "acme"
    with local_stack_factory(SIMULATED_DEVICES="0") as stack, contextlib.ExitStack() as open_sockets:
        browsers = [open_sockets.enter_context(browser_socket(stack, stack.token(org))) for _ in range(8)]
        for browser in browsers:
            browser.hello()
        publishing = threading.Event()
        publishing.set()
        published = [0]

        def publish_until_stopped(client: Client, device_id: str) -> None:
            topic = f"orgs/{org}/devices/{device_id}/telemetry"
            while publishing.is_set():
                reading = {"unitId": f"unit-{published[0] % 20}", "temperature": 4.5, "recordedAt": iso_now()}
                client.publish(topic, json.dumps(reading), qos=1)
                published[0] += 1
                time.sleep(0.01)

        devices = []
        for number in range(4):
            device_id = f"load-{number}"
            client = Client(CallbackAPIVersion.VERSION2, client_id=device_id)
            client.connect(stack.mqtt_host, stack.mqtt_port)
            client.loop_start()
            devices.append((client, threading.Thread(target=publish_until_stopped, args=(client, device_id))))
        for _, thread in devices:
            thread.start()
        browsers[0].wait_for(lambda m: m.get("type") == "sensor:readings:batch")
        time.sleep(3)
        processes = _descendants(stack.process.pid)
        log_before_stop = len(stack.log_path.read_text(errors="replace"))

        stack.process.send_signal(signal.SIGINT)
        started = time.monotonic()
        exit_code = stack.process.wait(STOP_TIMEOUT_SECONDS)
        stop_seconds = time.monotonic() - started
        publishing.clear()
        for client, thread in devices:
            thread.join(10)
            client.loop_stop()
        log_after_stop = stack.log_path.read_text(errors="replace")[log_before_stop:]
        closed = [_read_until_closed(browser.connection) for browser in browsers]

    assert closed == [True] * len(browsers), "every browser saw its connection close"
    assert published[0] > 400, "the devices were publishing when the stack was stopped"
    assert len(processes) >= 5, processes  # moto, the broker, the functions' workers
    assert exit_code == 0
    assert stop_seconds < STOP_TIMEOUT_SECONDS
    assert [pid for pid in processes if _running(pid)] == []
    assert "Traceback" not in log_after_stop, log_after_stop[-4000:]
    for url in (stack.websocket_url, stack.http_url, stack.mqtt_url, stack.dashboard_url, stack.aws_url):
        parts = urlsplit(url)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((parts.hostname, parts.port), timeout=5)
