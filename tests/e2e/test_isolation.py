"""A connection sees its own org only, and within it only the units its token allows."""

from tests.e2e.conftest import browser_socket, unique


def _ids(socket):
    return {reading["id"] for reading in socket.readings()}


def test_readings_stay_within_their_org_and_the_units_of_the_token(local_stack, device_factory):
    org_a, org_b = unique("org"), unique("org")
    allowed_unit, other_unit, unit_of_b = unique("unit"), unique("unit"), unique("unit")
    device_a, device_b = device_factory(org_a), device_factory(org_b)
    with (
        browser_socket(local_stack, local_stack.token(org_a)) as whole_org_a,
        browser_socket(local_stack, local_stack.token(org_b)) as whole_org_b,
        browser_socket(local_stack, local_stack.token(org_a, units=[allowed_unit])) as one_unit_of_a,
    ):
        for socket in (whole_org_a, whole_org_b, one_unit_of_a):
            socket.hello()
        of_b = device_b.publish_reading(unit_of_b)
        of_other_unit = device_a.publish_reading(other_unit)
        whole_org_b.wait_for_reading(of_b)
        whole_org_a.wait_for_reading(of_other_unit)
        # Published last: once every socket has it, anything leaked earlier would be there too.
        marker = device_a.publish_reading(allowed_unit)
        for socket in (whole_org_a, one_unit_of_a):
            socket.wait_for_reading(marker)
        marker_b = device_b.publish_reading(unit_of_b)
        whole_org_b.wait_for_reading(marker_b)

        latest_elsewhere = whole_org_a.request({"action": "getLatest", "unitId": unit_of_b}, "latest")
        refused = one_unit_of_a.request({"action": "subscribe", "unitIds": [other_unit]}, "subscribed")

    assert _ids(whole_org_a) == {of_other_unit, marker}
    assert _ids(one_unit_of_a) == {marker}
    assert _ids(whole_org_b) == {of_b, marker_b}
    assert latest_elsewhere["reading"] is None
    assert refused["type"] == "error"
    assert refused["error"]["code"] == "forbidden"


def test_a_command_to_another_orgs_device_is_refused(local_stack, device_factory):
    org_a, org_b = unique("org"), unique("org")
    device_b = device_factory(org_b)
    with browser_socket(local_stack, local_stack.token(org_b)) as browser_b:
        browser_b.hello()
        browser_b.wait_for_reading(device_b.publish_reading(unique("unit")))
    with browser_socket(local_stack, local_stack.token(org_a)) as browser_a:
        browser_a.hello()
        answer = browser_a.request(
            {"action": "sendCommand", "deviceId": device_b.device_id, "command": "reboot", "params": {}},
            "command:accepted",
        )

    assert answer["type"] == "error"
    assert answer["error"]["code"] == "not_found"
    assert device_b.commands.empty()
