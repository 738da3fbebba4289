"""Readings travel from devices (MQTT) and gateways (HTTP) to browsers (WebSocket)."""

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from devstack.token import mint_token
from sensor_stream.models import format_time
from tests.e2e.conftest import SUBPROTOCOL, browser_socket, iso_now, unique

# Signs tokens the stack must not accept.
OTHER_SECRET = "a-different-secret-of-at-least-32-bytes"


def test_device_telemetry_reaches_a_browser_of_its_org(local_stack, device_factory):
    org, unit = unique("org"), unique("fridge")
    device = device_factory(org)
    with browser_socket(local_stack, local_stack.token(org)) as browser:
        hello = browser.hello()
        recorded_at = iso_now()
        reading_id = device.publish_reading(
            unit,
            siteId="site-1",
            temperature=3.25,
            humidity=41.5,
            battery=88.0,
            signalStrength=-67,
            recordedAt=recorded_at,
            # The topic names the org and device; the payload cannot override them.
            orgId="someone-else",
            deviceId="spoofed",
        )
        reading = browser.wait_for_reading(reading_id)

    assert hello["subscription"]["scope"] == "org"
    assert hello["connectionId"]
    batch = next(m for m in browser.received if m["type"] == "sensor:readings:batch")
    assert set(batch) >= {"serverTime", "batches"}
    assert {"unitId", "readings", "count"} <= set(batch["batches"][0])
    assert reading == {
        "id": reading_id,
        "unitId": unit,
        "siteId": "site-1",
        "deviceId": device.device_id,
        "temperature": 3.25,
        "humidity": 41.5,
        "battery": 88.0,
        "signalStrength": -67,
        "recordedAt": recorded_at,
        "receivedAt": reading["receivedAt"],
        "source": "iot",
    }


def test_a_batch_of_readings_arrives_once_each_in_recorded_order(local_stack, device_factory):
    org, unit = unique("org"), unique("freezer")
    device = device_factory(org)
    base = datetime.now(UTC) - timedelta(seconds=10)
    times = [format_time(base + timedelta(seconds=offset)) for offset in (3, 1, 2)]
    ids = [unique("r") for _ in times]
    with browser_socket(local_stack, local_stack.token(org)) as browser:
        browser.hello()
        readings = [
            {"id": i, "unitId": unit, "temperature": -18.0, "recordedAt": t}
            for i, t in zip(ids, times, strict=True)
        ]
        device.publish({"readings": readings})
        # A redelivered message (QoS 1 retry) is stored once and delivered once.
        device.publish({"readings": readings})
        for reading_id in ids:
            browser.wait_for_reading(reading_id)
        marker = device.publish_reading(unit)
        browser.wait_for_reading(marker)

    delivered = [r["id"] for r in browser.readings(unit) if r["id"] != marker]
    assert sorted(delivered) == sorted(ids)
    first_batch = next(
        b
        for m in browser.received
        if m["type"] == "sensor:readings:batch"
        for b in m["batches"]
        if b["unitId"] == unit
    )
    assert [r["recordedAt"] for r in first_batch["readings"]] == sorted(times)
    assert first_batch["count"] == len(first_batch["readings"])


@pytest.mark.parametrize(
    "offer",
    [
        pytest.param(lambda stack: [SUBPROTOCOL], id="no-token"),
        pytest.param(lambda stack: None, id="no-subprotocols"),
        pytest.param(lambda stack: [SUBPROTOCOL, "bearer.not-a-jwt"], id="garbage"),
        pytest.param(
            lambda stack: [SUBPROTOCOL, "bearer." + mint_token("acme", secret=OTHER_SECRET)],
            id="bad-signature",
        ),
        pytest.param(
            lambda stack: [SUBPROTOCOL, "bearer." + stack.token("acme", ttl_seconds=-60)], id="expired"
        ),
        pytest.param(lambda stack: ["bearer." + stack.token("acme")], id="without-the-protocol"),
    ],
)
def test_a_connection_without_a_valid_token_is_refused_with_401(local_stack, offer):
    with pytest.raises(InvalidStatus) as refused:
        connect(local_stack.websocket_url, subprotocols=offer(local_stack), open_timeout=30)

    assert refused.value.response.status_code == 401


def _post_readings(stack, body, authorization=None):
    url = f"{stack.http_url}/readings"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")  # noqa: S310 - the stack's http URL
    request.add_header("Content-Type", "application/json")
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback http
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_readings_posted_over_http_reach_the_socket(local_stack):
    org, unit = unique("org"), unique("coldroom")
    token = local_stack.token(org)
    reading_id = unique("r")
    body = {
        "deviceId": "backfill-gateway",
        "readings": [{"id": reading_id, "unitId": unit, "temperature": 2.5, "recordedAt": iso_now()}],
    }
    with browser_socket(local_stack, token) as browser:
        browser.hello()
        first = _post_readings(local_stack, body, f"Bearer {token}")
        reading = browser.wait_for_reading(reading_id)
    again = _post_readings(local_stack, body, f"Bearer {token}")

    assert first == (200, {"accepted": 1, "duplicates": 0})
    assert again == (200, {"accepted": 0, "duplicates": 1})
    assert reading["source"] == "http"
    assert reading["deviceId"] == "backfill-gateway"


def test_an_invalid_http_reading_is_refused_and_named(local_stack):
    token = local_stack.token(unique("org"))
    body = {"deviceId": "gw", "readings": [{"unitId": "u1", "temperature": 999, "recordedAt": iso_now()}]}

    status, answer = _post_readings(local_stack, body, f"Bearer {token}")

    assert status == 400
    assert answer["error"]["code"] == "validation_error"
    assert answer["error"]["details"]


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(lambda stack: None, id="missing"),
        pytest.param(lambda stack: "Bearer not-a-jwt", id="garbage"),
        pytest.param(lambda stack: "Bearer " + mint_token("acme", secret=OTHER_SECRET), id="bad-sig"),
        pytest.param(lambda stack: "Bearer " + stack.token("acme", ttl_seconds=-60), id="expired"),
    ],
)
def test_http_ingest_without_a_valid_token_is_refused_like_api_gateway(local_stack, authorization):
    body = {"deviceId": "gw", "readings": [{"unitId": "u1", "temperature": 1.0, "recordedAt": iso_now()}]}

    assert _post_readings(local_stack, body, authorization(local_stack)) == (401, {"message": "Unauthorized"})
