"""Commands from a browser to a device over MQTT, and the device's ack back."""

from contextlib import contextmanager

from tests.e2e.conftest import DELIVERY_TIMEOUT_SECONDS, browser_socket, unique


@contextmanager
def known_device(local_stack, device_factory, **options):
    """A device the system has heard from (commands go to known devices only) and a
    browser of its org."""
    org = unique("org")
    device = device_factory(org, **options)
    with browser_socket(local_stack, local_stack.token(org)) as browser:
        browser.hello()
        browser.wait_for_reading(device.publish_reading(unique("unit")))
        yield device, browser


def test_a_command_reaches_the_device_and_its_ack_comes_back(local_stack, device_factory):
    with known_device(local_stack, device_factory) as (device, browser):
        request_id = unique("req")
        browser.send(
            {
                "action": "sendCommand",
                "requestId": request_id,
                "deviceId": device.device_id,
                "command": "setReportingInterval",
                "params": {"seconds": 5},
            }
        )
        accepted = browser.wait_for(lambda m: m.get("requestId") == request_id)
        ack = browser.wait_for(lambda m: m.get("type") == "command:ack")
    received = device.commands.get(timeout=DELIVERY_TIMEOUT_SECONDS)

    assert accepted["type"] == "command:accepted", accepted
    assert received["commandId"] == accepted["commandId"]
    assert received["command"] == "setReportingInterval"
    assert received["params"] == {"seconds": 5}
    assert received["issuedAt"].endswith("Z")
    assert ack == {
        "type": "command:ack",
        "requestId": request_id,
        "commandId": accepted["commandId"],
        "status": "ok",
        "detail": "did setReportingInterval",
    }
    assert browser.received.index(accepted) < browser.received.index(ack)


def test_a_command_the_device_does_not_answer_times_out(local_stack, device_factory):
    with known_device(local_stack, device_factory, answer_commands=False) as (device, browser):
        accepted = browser.request(
            {"action": "sendCommand", "deviceId": device.device_id, "command": "reboot", "params": {}},
            "command:accepted",
        )
        timed_out = browser.wait_for(lambda m: m.get("type") == "command:timeout")

    assert accepted["type"] == "command:accepted", accepted
    assert device.commands.get(timeout=DELIVERY_TIMEOUT_SECONDS)["commandId"] == accepted["commandId"]
    assert timed_out["commandId"] == accepted["commandId"]
    assert timed_out["requestId"] == accepted["requestId"]
    assert not any(m.get("type") == "command:ack" for m in browser.received)


def test_a_late_ack_after_the_timeout_is_not_relayed(local_stack, device_factory):
    with known_device(local_stack, device_factory, answer_commands=False) as (device, browser):
        accepted = browser.request(
            {"action": "sendCommand", "deviceId": device.device_id, "command": "ping", "params": {}},
            "command:accepted",
        )
        browser.wait_for(lambda m: m.get("type") == "command:timeout")
        command = device.commands.get(timeout=DELIVERY_TIMEOUT_SECONDS)
        device.client.publish(
            f"orgs/{device.org_id}/devices/{device.device_id}/commands/ack",
            f'{{"commandId": "{command["commandId"]}", "status": "ok"}}',
            qos=1,
        ).wait_for_publish(30)
        # Anything the late ack caused would arrive before this later reading's batch.
        browser.wait_for_reading(device.publish_reading(unique("unit")))

    assert accepted["type"] == "command:accepted"
    assert not any(m.get("type") == "command:ack" for m in browser.received)
