"""publish: sendCommand (accepted + published to the device) and device acks relayed to
the requesting connection; timeouts come from the flush tick."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sensor_stream import clients
from sensor_stream.models import CommandAcceptedMessage, CommandMessage
from tests.support.botocore_hooks import fail_operation
from tests.support.clock import FakeClock
from tests.support.readings import reading
from tests.support.stack import InProcessStack
from tests.support.websocket import PostRecorder, wire
from tests.support.websocket import error_answer as error

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
def browser(stack: InProcessStack, clock: FakeClock) -> str:
    """A connection of acme, whose device dev-1 has reported once (so it is known)."""
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    return stack.open("acme")


def send_command(
    stack: InProcessStack, connection_id: str, request_id: str | None = "c-1", **fields: Any
) -> str:
    """sendCommand for dev-1; returns the accepted commandId."""
    message = {
        "action": "sendCommand",
        "deviceId": "dev-1",
        "command": "setInterval",
        "params": {"seconds": 30},
    }
    if request_id is not None:
        message["requestId"] = request_id
    [accepted] = stack.request(connection_id, message | fields)
    assert isinstance(accepted, CommandAcceptedMessage)
    return accepted.command_id


# --- sendCommand --------------------------------------------------------------------------


def test_send_command_is_accepted_and_published_to_the_device(
    stack: InProcessStack, clock: FakeClock, browser: str
):
    command_id = send_command(stack, browser)

    assert uuid.UUID(command_id)
    assert wire(stack.recorder.received(browser)) == [
        {"type": "command:accepted", "requestId": "c-1", "commandId": command_id}
    ]
    assert stack.published_commands() == [
        (
            "orgs/acme/devices/dev-1/commands",
            CommandMessage(
                command_id=command_id, command="setInterval", params={"seconds": 30}, issued_at=clock.now()
            ),
        )
    ]


def test_each_command_gets_its_own_id(stack: InProcessStack, browser: str):
    first = send_command(stack, browser, params={})
    second = send_command(stack, browser, params={})

    assert first != second
    assert [command.command_id for _, command in stack.published_commands()] == [first, second]


def test_command_to_an_unknown_device_is_not_found(stack: InProcessStack, browser: str):
    answer = stack.request(
        browser, {"action": "sendCommand", "deviceId": "dev-404", "command": "reboot", "requestId": "k"}
    )

    assert wire(answer) == [error("not_found", "device 'dev-404' is not known in your organization", "k")]
    assert stack.published_commands() == []


@pytest.mark.parametrize(
    ("fields", "details"),
    [
        ({"deviceId": None}, [{"field": "deviceId", "message": "Input should be a valid string"}]),
        (
            {"command": "re boot"},
            [{"field": "command", "message": "String should match pattern '^[A-Za-z0-9_.:-]+$'"}],
        ),
        ({"command": ""}, [{"field": "command", "message": "String should have at least 1 character"}]),
        ({"params": [1, 2]}, [{"field": "params", "message": "Input should be a valid dictionary"}]),
    ],
)
def test_invalid_send_command_is_refused(
    stack: InProcessStack, browser: str, fields: dict[str, Any], details: list[dict[str, str]]
):
    message = {"action": "sendCommand", "deviceId": "dev-1", "command": "reboot", "requestId": "v"} | fields

    assert wire(stack.request(browser, message)) == [
        error("validation_error", "invalid 'sendCommand' request", "v", details=details)
    ]
    assert stack.published_commands() == []


def test_malformed_send_command_is_refused(stack: InProcessStack, browser: str):
    # API Gateway cannot select a route in broken JSON: $default (connect) answers it.
    body = '{"action": "sendCommand", "deviceId": }'

    assert wire(stack.request(browser, body)) == [
        error("malformed_json", "message is not valid JSON: Expecting value: line 1 column 39 (char 38)")
    ]
    assert stack.published_commands() == []


def test_send_command_with_params_nested_too_deep_is_malformed(stack: InProcessStack, browser: str):
    # 300 levels were accepted, then failed to serialize for IoT: answered "unavailable".
    params = '{"a": ' * 299 + "{}" + "}" * 299
    body = f'{{"action": "sendCommand", "deviceId": "dev-1", "command": "reboot", "params": {params}}}'

    assert wire(stack.request(browser, body)) == [
        error("malformed_json", "message nests arrays and objects more than 32 levels deep")
    ]
    assert stack.published_commands() == []


def test_send_command_from_an_unregistered_connection_is_unauthorized(stack: InProcessStack, browser: str):
    stack.disconnect(browser)

    assert wire(
        stack.request(browser, {"action": "sendCommand", "deviceId": "dev-1", "command": "reboot"})
    ) == [error("unauthorized", "this connection is not registered (expired?); reconnect")]


def test_iot_failure_answers_unavailable_and_drops_the_command(
    stack: InProcessStack, clock: FakeClock, browser: str
):
    fail_operation(clients.iot_data(), "Publish", "ServiceUnavailableException", 503)

    [accepted, refused] = wire(
        stack.request(
            browser, {"action": "sendCommand", "deviceId": "dev-1", "command": "reboot", "requestId": "u"}
        )
    )

    command_id = accepted["commandId"]
    assert refused == error(
        "unavailable", f"command {command_id} could not be sent to the device; try again", "u"
    )
    # Not pending any more: neither a timeout nor a late ack reaches the browser.
    clock.advance(stack.settings.command_timeout_seconds + 5)
    stack.tick()
    stack.device_ack("acme", "dev-1", {"commandId": command_id, "status": "ok"})
    assert stack.take(browser) == []


# --- acks and timeouts ---------------------------------------------------------------------


def test_device_ack_reaches_the_requesting_connection_only(stack: InProcessStack, browser: str):
    bystander = stack.open("acme")
    command_id = send_command(stack, browser, request_id="c-7")
    stack.take(browser)

    delivered = stack.device_ack("acme", "dev-1", {"commandId": command_id, "status": "ok"})

    assert delivered == {"delivered": True}
    assert wire(stack.take(browser)) == [
        {"type": "command:ack", "requestId": "c-7", "commandId": command_id, "status": "ok"}
    ]
    assert stack.take(bystander) == []


def test_error_ack_carries_its_detail(stack: InProcessStack, browser: str):
    command_id = send_command(stack, browser, request_id=None)
    stack.take(browser)

    stack.device_ack(
        "acme", "dev-1", {"commandId": command_id, "status": "error", "detail": "interval too short"}
    )

    assert wire(stack.take(browser)) == [
        {"type": "command:ack", "commandId": command_id, "status": "error", "detail": "interval too short"}
    ]


def test_a_second_ack_is_ignored(stack: InProcessStack, browser: str):
    command_id = send_command(stack, browser)
    stack.device_ack("acme", "dev-1", {"commandId": command_id, "status": "ok"})
    stack.take(browser)

    assert stack.device_ack("acme", "dev-1", {"commandId": command_id, "status": "error"}) == {
        "delivered": False
    }
    assert stack.take(browser) == []


@pytest.mark.parametrize(("org", "device"), [("acme", "dev-2"), ("globex", "dev-1")])
def test_ack_from_another_device_is_ignored(stack: InProcessStack, browser: str, org: str, device: str):
    command_id = send_command(stack, browser)
    stack.take(browser)

    assert stack.device_ack(org, device, {"commandId": command_id, "status": "ok"}) == {"delivered": False}
    assert stack.take(browser) == []
    # The command is still pending for its own device.
    assert stack.device_ack("acme", "dev-1", {"commandId": command_id, "status": "ok"}) == {"delivered": True}


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"status": "ok"}',
        b'{"commandId": "x", "status": "done"}',
        b"\xff\xfe",
        # RecursionError escaped: the ack was retried, then dropped.
        pytest.param(b"[" * 50_000, id="nested-50000-deep"),
    ],
)
def test_invalid_ack_is_ignored(stack: InProcessStack, browser: str, payload: bytes):
    command_id = send_command(stack, browser)
    stack.take(browser)

    assert stack.device_ack("acme", "dev-1", payload) == {"delivered": False}
    assert stack.take(browser) == []
    # The command is still pending: a valid ack still gets through.
    assert stack.device_ack("acme", "dev-1", {"commandId": command_id, "status": "ok"}) == {"delivered": True}


def test_no_ack_times_out_after_ten_seconds_on_a_tick(stack: InProcessStack, clock: FakeClock, browser: str):
    command_id = send_command(stack, browser, request_id="c-9")
    stack.take(browser)

    stack.tick(advance=9.5)
    assert stack.take(browser) == []

    stack.tick(advance=1.5)
    assert wire(stack.take(browser)) == [
        {"type": "command:timeout", "requestId": "c-9", "commandId": command_id}
    ]

    stack.tick(advance=1)
    assert stack.take(browser) == []


def test_late_ack_after_the_timeout_is_ignored(stack: InProcessStack, clock: FakeClock, browser: str):
    command_id = send_command(stack, browser)
    stack.tick(advance=11)
    stack.take(browser)

    assert stack.device_ack("acme", "dev-1", {"commandId": command_id, "status": "ok"}) == {
        "delivered": False
    }
    assert stack.take(browser) == []


def test_acked_command_never_times_out(
    stack: InProcessStack, clock: FakeClock, browser: str, posts: PostRecorder
):
    command_id = send_command(stack, browser)
    clock.advance(3)
    stack.device_ack("acme", "dev-1", {"commandId": command_id, "status": "ok"})
    stack.take(browser)

    for _ in range(12):
        stack.tick()

    command_messages = [m.type for m in posts.received(browser) if m.type.startswith("command:")]
    assert command_messages == ["command:accepted", "command:ack"]
