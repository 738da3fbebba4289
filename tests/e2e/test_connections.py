"""Connection life: resuming after a reconnect, and forgetting clients that vanished."""

import time
from datetime import UTC, datetime, timedelta

from sensor_stream.models import format_time
from tests.e2e.conftest import DELIVERY_TIMEOUT_SECONDS, browser_socket, unique


def test_resume_after_a_reconnect_replays_what_was_missed(local_stack, device_factory):
    org, unit = unique("org"), unique("unit")
    device = device_factory(org)
    token = local_stack.token(org)
    with browser_socket(local_stack, token) as watcher:
        watcher.hello()
        with browser_socket(local_stack, token) as first:
            first.hello()
            last_seen = first.wait_for_reading(device.publish_reading(unit))
        # Missed while disconnected (one of them recorded a minute ago by a device that was
        # offline); the watcher tells when they are stored and delivered.
        base = datetime.now(UTC)
        missed = [
            device.publish_reading(unit, recordedAt=format_time(base + timedelta(milliseconds=10 * n)))
            for n in range(1, 4)
        ]
        missed.append(device.publish_reading(unit, recordedAt=format_time(base - timedelta(minutes=1))))
        for reading_id in missed:
            watcher.wait_for_reading(reading_id)
        with browser_socket(local_stack, token) as second:
            # What arrived after the newest reading it has, whenever it was recorded.
            second.hello(resume={"since": last_seen["receivedAt"]})
            replay = second.wait_for(
                lambda m: m.get("type") == "sensor:readings:batch" and m.get("replay") is True
            )

    replayed = [reading["id"] for batch in replay["batches"] for reading in batch["readings"]]
    # Ordered by recordedAt within the unit: the late one first.
    assert replayed == [missed[-1], *missed[:-1]]


def _items_mentioning(stack, connection_id):
    """The connection's records (by id and under its org)."""
    items = stack.dynamodb().scan(TableName=stack.table_name, ConsistentRead=True)["Items"]
    return [
        item
        for item in items
        if item["pk"]["S"] == f"CONN#{connection_id}"
        or (item["pk"]["S"].startswith("ORGCONNS#") and item["sk"]["S"] == connection_id)
    ]


def test_a_client_that_vanishes_without_closing_is_forgotten_after_its_next_410(local_stack, device_factory):
    org, unit = unique("org"), unique("unit")
    device = device_factory(org)
    token = local_stack.token(org)
    with browser_socket(local_stack, token) as watcher, browser_socket(local_stack, token) as vanishing:
        watcher.hello()
        connection_id = vanishing.hello()["connectionId"]
        # The TCP connection ends without a close frame; the stack runs with
        # LOCAL_WS_DISCONNECT_ON_DROP=false, so no $disconnect tells the functions.
        vanishing.connection.close_socket()
        assert _items_mentioning(local_stack, connection_id), "the connection record should still be there"

        # The next delivery to it gets 410 Gone, which removes it.
        deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
        while _items_mentioning(local_stack, connection_id):
            assert time.monotonic() < deadline, "the gone connection was never cleaned up"
            watcher.wait_for_reading(device.publish_reading(unit))

    # Later deliveries go to the live connection only.
    with browser_socket(local_stack, token) as later:
        later.hello()
        later.wait_for_reading(device.publish_reading(unit))
    assert not _items_mentioning(local_stack, connection_id)


def test_a_socket_message_that_is_not_json_gets_an_error_answer(local_stack):
    with browser_socket(local_stack, local_stack.token(unique("org"))) as browser:
        browser.connection.send("this is not json")
        answer = browser.wait_for(lambda m: m.get("type") == "error")
        unknown = browser.request({"action": "dance"}, "never")

    assert answer["error"]["code"] == "malformed_json"
    assert unknown["error"]["code"] == "unknown_action"


def test_browser_socket_receives_only_what_it_subscribed_to(local_stack, device_factory):
    org, wanted, unwanted = unique("org"), unique("unit"), unique("unit")
    device = device_factory(org)
    with browser_socket(local_stack, local_stack.token(org)) as browser:
        browser.hello()
        subscribed = browser.request({"action": "subscribe", "unitIds": [wanted]}, "subscribed")
        skipped = device.publish_reading(unwanted)
        delivered = device.publish_reading(wanted)
        browser.wait_for_reading(delivered)
        latest = browser.request({"action": "getLatest", "unitId": unwanted}, "latest")

    assert subscribed["subscription"] == {"scope": "selected", "unitIds": [wanted], "siteIds": []}
    assert skipped not in {r["id"] for r in browser.readings()}
    assert latest["reading"]["id"] == skipped
