"""ingest: IoT rule events (invalid content quarantined with its reason) and
``POST /readings`` (all or nothing, exact errors)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

import ingest.handler
from sensor_stream import clients
from sensor_stream.models import QuarantinedMessage, Reading
from tests.support.clock import FakeClock
from tests.support.events import authorizer_claims, http_readings_event, telemetry_event
from tests.support.lambda_context import FakeLambdaContext
from tests.support.readings import full_reading, reading
from tests.support.stack import InProcessStack

pytestmark = pytest.mark.usefixtures("stack")

DAY = "2026-03-01"
HUGE_INTEGER = "{} has an integer of more than 4300 digits"
TOO_DEEP = "{} nests arrays and objects more than 32 levels deep"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def history(stack: InProcessStack, unit_id: str, org: str = "acme") -> list[Reading]:
    return stack.store.readings.between(org, unit_id, EPOCH, datetime(9999, 1, 1, tzinfo=UTC), limit=1000)


def quarantined(stack: InProcessStack, org: str = "acme") -> list[QuarantinedMessage]:
    return stack.store.readings.quarantined(org, DAY)


# --- IoT rule events ---------------------------------------------------------------------


def test_single_reading_is_stored_with_ids_from_the_topic(stack: InProcessStack, clock: FakeClock):
    payload = full_reading("fridge-1", clock.iso(-2), orgId="globex", deviceId="spoofed")

    result = stack.publish_telemetry("acme", "dev-1", payload)

    assert result == {"stored": 1, "duplicates": 0, "quarantined": 0}
    [stored] = history(stack, "fridge-1")
    assert stored.to_wire() == {
        "id": stored.id,
        "unitId": "fridge-1",
        "siteId": "site-1",
        "deviceId": "dev-1",
        "temperature": 21.5,
        "humidity": 40.5,
        "battery": 87.0,
        "signalStrength": -67,
        "recordedAt": clock.iso(-2),
        "receivedAt": clock.iso(),
        "source": "iot",
    }
    assert stack.store.readings.newest("acme", "fridge-1") == stored
    assert stack.store.readings.device_known("acme", "dev-1")
    assert history(stack, "fridge-1", org="globex") == []
    assert not stack.store.readings.device_known("acme", "spoofed")


def test_readings_array_of_up_to_100_is_stored(stack: InProcessStack, clock: FakeClock):
    readings = [reading(f"unit-{i % 7}", clock.iso(-100 + i / 10)) for i in range(100)]

    assert stack.publish_telemetry("acme", "dev-1", {"readings": readings}) == {
        "stored": 100,
        "duplicates": 0,
        "quarantined": 0,
    }
    assert sum(len(history(stack, f"unit-{u}")) for u in range(7)) == 100
    assert quarantined(stack) == []


def test_message_of_101_readings_is_quarantined_whole(stack: InProcessStack, clock: FakeClock):
    payload = {"readings": [reading("u1", clock.iso(-200 + i)) for i in range(101)]}

    assert stack.publish_telemetry("acme", "dev-1", payload) == {
        "stored": 0,
        "duplicates": 0,
        "quarantined": 1,
    }
    [entry] = quarantined(stack)
    assert entry.reason == "101 readings in one message; at most 100"
    assert json.loads(entry.payload) == payload
    assert (entry.org_id, entry.device_id, entry.topic) == (
        "acme",
        "dev-1",
        "orgs/acme/devices/dev-1/telemetry",
    )
    assert entry.received_at == clock.now()
    assert history(stack, "u1") == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            b'{"unitId": "u1", "temperature": 21.5,',
            "payload is not valid JSON: "
            "Expecting property name enclosed in double quotes: line 1 column 38 (char 37)",
        ),
        (b"", "payload is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        # These three raised out of ingest (ValueError, RecursionError): retried, then dropped.
        pytest.param(
            b'{"unitId": "u1", "temperature": 2' + b"1" * 5000 + b"}",
            HUGE_INTEGER.format("payload"),
            id="integer-of-5001-digits",
        ),
        pytest.param(b"[" * 50_000, TOO_DEEP.format("payload"), id="nested-50000-deep"),
        pytest.param(b"[" * 33 + b"]" * 33, TOO_DEEP.format("payload"), id="nested-33-deep"),
        (b'{"unitId": "u\\ud800"}', "payload has a string with an unpaired surrogate escape"),
        (b"\xff\xfe\x00garbage", "payload is not UTF-8 text"),
        (b'[{"unitId": "u1"}]', "payload must be a JSON object"),
        (b"42", "payload must be a JSON object"),
        (b'{"readings": []}', "'readings' must be a non-empty array"),
        (b'{"readings": {"unitId": "u1"}}', "'readings' must be a non-empty array"),
    ],
)
def test_unusable_message_is_quarantined_with_its_reason(stack: InProcessStack, payload: bytes, reason: str):
    assert stack.publish_telemetry("acme", "dev-1", payload)["quarantined"] == 1

    [entry] = quarantined(stack)
    assert entry.reason == reason
    assert entry.details is None


def test_json_nested_32_levels_deep_is_still_read(stack: InProcessStack):
    assert stack.publish_telemetry("acme", "dev-1", b"[" * 32 + b"]" * 32)["quarantined"] == 1

    assert [entry.reason for entry in quarantined(stack)] == ["payload must be a JSON object"]


def test_event_with_unusable_topic_ids_is_quarantined_not_retried(stack: InProcessStack, clock: FakeClock):
    event = telemetry_event("acme", "dev-1", b"{}", clock.now()) | {
        "orgId": "acme corp",
        "topic": "orgs/acme corp/devices/dev-1/telemetry",
    }

    assert ingest.handler.lambda_handler(event, FakeLambdaContext())["quarantined"] == 1
    [entry] = quarantined(stack, org="_unroutable")
    assert (entry.reason, entry.topic) == (
        "topic ids or rule event invalid",
        "orgs/acme corp/devices/dev-1/telemetry",
    )
    assert entry.details is not None
    assert [d["field"] for d in entry.details] == ["orgId"]


def test_device_id_may_be_a_128_character_thing_name(stack: InProcessStack, clock: FakeClock):
    thing = "t" * 128

    assert stack.publish_telemetry("acme", thing, reading("u1", clock.iso()))["stored"] == 1
    assert stack.store.readings.device_known("acme", thing)


def test_payload_that_is_not_base64_is_quarantined(stack: InProcessStack, clock: FakeClock):
    event = telemetry_event("acme", "dev-1", b"{}", clock.now()) | {"payload": "%%% not base64 %%%"}

    assert ingest.handler.lambda_handler(event, FakeLambdaContext())["quarantined"] == 1
    [entry] = quarantined(stack)
    assert (entry.reason, entry.payload) == ("payload is not UTF-8 text", "%%% not base64 %%%")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", "21", "Input should be a valid number"),
        ("temperature", 151, "Input should be less than or equal to 150"),
        ("humidity", -0.5, "Input should be greater than or equal to 0"),
        ("battery", 101, "Input should be less than or equal to 100"),
        ("signalStrength", 5, "Input should be less than or equal to 0"),
        ("unitId", "fridge#1", "String should match pattern '^[A-Za-z0-9_.:-]+$'"),
        ("id", "id with spaces", "String should match pattern '^[A-Za-z0-9_.:-]+$'"),
        ("recordedAt", "2026-03-01T12:05:00.251Z", "Value error, is more than 5 minutes in the future"),
        ("recordedAt", "1970-01-01T00:00:00Z", "Value error, is before 2000-01-01; check the device clock"),
        ("recordedAt", "0001-01-01T00:00:00+05:00", "Value error, is out of range once converted to UTC"),
    ],
)
def test_invalid_reading_is_quarantined_and_the_valid_ones_are_stored(
    stack: InProcessStack, clock: FakeClock, field: str, value: Any, message: str
):
    bad = full_reading("fridge-2", clock.iso(-1), **{field: value})
    good = [reading("fridge-1", clock.iso(-3)), reading("fridge-3", clock.iso(-2))]

    result = stack.publish_telemetry("acme", "dev-1", {"readings": [good[0], bad, good[1]]})

    assert result == {"stored": 2, "duplicates": 0, "quarantined": 1}
    [entry] = quarantined(stack)
    assert entry.reason == "invalid reading"
    assert entry.details == [{"field": field, "message": message}]
    assert json.loads(entry.payload) == bad
    assert [r.recorded_at for r in history(stack, "fridge-1")] == [clock.now() - timedelta(seconds=3)]
    assert len(history(stack, "fridge-3")) == 1


def test_nan_temperature_is_quarantined(stack: InProcessStack, clock: FakeClock):
    # Python's json (like many device SDKs) writes NaN; the contract wants a finite number.
    payload = f'{{"unitId": "u1", "temperature": NaN, "recordedAt": "{clock.iso()}"}}'

    assert stack.publish_telemetry("acme", "dev-1", payload)["quarantined"] == 1
    assert quarantined(stack)[0].details == [
        {"field": "temperature", "message": "Input should be a finite number"}
    ]


def test_each_invalid_reading_of_a_message_is_quarantined_on_its_own(stack: InProcessStack, clock: FakeClock):
    readings = [reading("u1", clock.iso(), temperature="hot"), {"temperature": 1}, reading("u2", clock.iso())]

    assert stack.publish_telemetry("acme", "dev-1", {"readings": readings})["quarantined"] == 2

    details = sorted(json.dumps(entry.details) for entry in quarantined(stack))
    assert details == sorted(
        [
            json.dumps([{"field": "temperature", "message": "Input should be a valid number"}]),
            json.dumps(
                [
                    {"field": "unitId", "message": "Field required"},
                    {"field": "recordedAt", "message": "Field required"},
                ]
            ),
        ]
    )


def test_redelivered_message_is_stored_once(stack: InProcessStack, clock: FakeClock):
    payload = {"readings": [reading("u1", clock.iso(-2)), reading("u1", clock.iso(-1))]}
    stack.publish_telemetry("acme", "dev-1", payload)
    clock.advance(30)

    assert stack.publish_telemetry("acme", "dev-1", payload) == {
        "stored": 0,
        "duplicates": 2,
        "quarantined": 0,
    }
    assert len(history(stack, "u1")) == 2


def test_newest_recorded_reading_is_the_latest_and_a_late_older_one_never_is(
    stack: InProcessStack, clock: FakeClock
):
    older = reading("u1", clock.iso(-20), temperature=10, id="r-older")
    newer = reading("u1", clock.iso(-10), temperature=20, id="r-b")
    stack.publish_telemetry("acme", "dev-1", older)
    stack.publish_telemetry("acme", "dev-1", newer)
    stack.publish_telemetry("acme", "dev-1", older)  # redelivered late
    assert stack.store.readings.newest("acme", "u1") == history(stack, "u1")[-1]
    latest = stack.store.readings.newest("acme", "u1")
    assert latest is not None
    assert (latest.temperature, latest.device_id) == (20, "dev-1")

    # Equal recordedAt: the reading ids decide (the history's sort order), whatever arrives last.
    stack.publish_telemetry("acme", "dev-2", reading("u1", clock.iso(-10), temperature=99, id="r-a"))
    assert stack.store.readings.newest("acme", "u1").temperature == 20  # type: ignore[union-attr]
    stack.publish_telemetry("acme", "dev-2", reading("u1", clock.iso(-10), temperature=77, id="r-c"))
    assert stack.store.readings.newest("acme", "u1").temperature == 77  # type: ignore[union-attr]
    assert len(history(stack, "u1")) == 4


def test_latest_takes_the_newest_of_one_message_whatever_its_order(stack: InProcessStack, clock: FakeClock):
    readings = [reading("u1", clock.iso(-1), temperature=3), reading("u1", clock.iso(-5), temperature=1)]

    stack.publish_telemetry("acme", "dev-1", {"readings": readings})

    latest = stack.store.readings.newest("acme", "u1")
    assert latest is not None
    assert latest.temperature == 3


def test_storage_failure_raises_so_iot_retries(stack: InProcessStack, clock: FakeClock, monkeypatch):
    monkeypatch.setenv("TABLE_NAME", "no-such-table")
    clients.reset()

    with pytest.raises(ClientError) as caught:
        stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


# --- POST /readings ---------------------------------------------------------------------


def body(*readings: dict[str, Any], device_id: str = "gateway-7") -> dict[str, Any]:
    return {"deviceId": device_id, "readings": list(readings)}


def test_http_readings_are_stored_under_the_token_org(stack: InProcessStack, clock: FakeClock):
    claims = authorizer_claims("acme")

    status, answer = stack.post_readings(
        claims, body(full_reading("u1", clock.iso(-2)), reading("u2", clock.iso(-1), id="gw-r-2"))
    )

    assert (status, answer) == (200, {"accepted": 2, "duplicates": 0})
    [first] = history(stack, "u1")
    assert (first.device_id, first.source, first.received_at) == ("gateway-7", "http", clock.now())
    assert [r.id for r in history(stack, "u2")] == ["gw-r-2"]
    assert stack.store.readings.device_known("acme", "gateway-7")


def test_http_base64_body_is_decoded(stack: InProcessStack, clock: FakeClock):
    status, answer = stack.post_readings(
        authorizer_claims("acme"), body(reading("u1", clock.iso())), base64_encoded=True
    )

    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})


def test_http_duplicates_are_counted(stack: InProcessStack, clock: FakeClock):
    claims = authorizer_claims("acme")
    first, second = reading("u1", clock.iso(-2)), reading("u1", clock.iso(-1))
    stack.post_readings(claims, body(first))

    assert stack.post_readings(claims, body(first, second, second)) == (200, {"accepted": 1, "duplicates": 2})
    assert stack.post_readings(claims, body(first, second)) == (200, {"accepted": 0, "duplicates": 2})
    assert len(history(stack, "u1")) == 2


def test_http_batch_of_500_is_accepted(stack: InProcessStack, clock: FakeClock):
    readings = [reading(f"u{i % 10}", clock.iso(-600 + i)) for i in range(500)]

    assert stack.post_readings(authorizer_claims("acme"), body(*readings)) == (
        200,
        {"accepted": 500, "duplicates": 0},
    )


def error(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        content["details"] = details
    return {"error": content}


def test_http_501_readings_is_payload_too_large(stack: InProcessStack, clock: FakeClock):
    readings = [reading("u1", clock.iso(-600 + i)) for i in range(501)]

    assert stack.post_readings(authorizer_claims("acme"), body(*readings)) == (
        413,
        error("payload_too_large", "501 readings in one request; at most 500"),
    )
    assert history(stack, "u1") == []


def test_http_body_over_a_megabyte_is_payload_too_large(stack: InProcessStack):
    status, answer = stack.post_readings(
        authorizer_claims("acme"), '{"deviceId": "d", "pad": "' + "x" * 1_000_000 + '"}'
    )

    assert (status, answer) == (413, error("payload_too_large", "request body exceeds 1000000 bytes"))


@pytest.mark.parametrize("content", [None, "", "   \n"])
def test_http_empty_body_is_refused(stack: InProcessStack, content: str | None):
    assert stack.post_readings(authorizer_claims("acme"), content) == (
        400,
        error("malformed_json", 'request body is empty; send {"deviceId", "readings": [...]}'),
    )


def test_http_malformed_json_is_refused(stack: InProcessStack):
    assert stack.post_readings(authorizer_claims("acme"), '{"deviceId": "d", "readings": [') == (
        400,
        error(
            "malformed_json", "request body is not valid JSON: Expecting value: line 1 column 32 (char 31)"
        ),
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # Each was a 500 outside the contract's error shape (ValueError, RecursionError).
        pytest.param(
            '{"deviceId": "gw", "readings": [' + "9" * 5000 + "]}",
            HUGE_INTEGER.format("request body"),
            id="integer-of-5000-digits",
        ),
        pytest.param(
            '{"deviceId": "gw", "readings": ' + "[" * 50_000,
            TOO_DEEP.format("request body"),
            id="nested-50000-deep",
        ),
        (
            '{"deviceId": "gw", "readings": [{"unitId": "\\udfff"}]}',
            "request body has a string with an unpaired surrogate escape",
        ),
    ],
)
def test_http_json_beyond_the_limits_is_malformed(stack: InProcessStack, content: str, message: str):
    assert stack.post_readings(authorizer_claims("acme"), content) == (400, error("malformed_json", message))


def test_http_base64_body_that_is_not_utf8_is_malformed(stack: InProcessStack):
    event = http_readings_event(None, authorizer_claims("acme"))
    event |= {"body": base64.b64encode(b'{"deviceId": "gw\xff"}').decode(), "isBase64Encoded": True}

    response = ingest.handler.lambda_handler(event, FakeLambdaContext())

    assert (response["statusCode"], json.loads(response["body"])) == (
        400,
        error("malformed_json", "request body is not UTF-8 text"),
    )


def test_http_time_that_overflows_utc_is_a_validation_error(stack: InProcessStack):
    # OverflowError escaped the validators: a 500.
    status, answer = stack.post_readings(
        authorizer_claims("acme"), body(reading("u1", "9999-12-31T23:59:59-05:00"))
    )

    assert (status, answer["error"]["details"]) == (
        400,
        [
            {
                "index": 0,
                "errors": [
                    {"field": "recordedAt", "message": "Value error, is out of range once converted to UTC"}
                ],
            }
        ],
    )


@pytest.mark.parametrize(
    ("document", "details"),
    [
        (
            [1, 2],
            [
                {
                    "field": "(body)",
                    "message": "Input should be a valid dictionary or instance of IngestRequest",
                }
            ],
        ),
        ({"readings": [{}]}, [{"field": "deviceId", "message": "Field required"}]),
        (
            {"deviceId": "gate way", "readings": [{}]},
            [{"field": "deviceId", "message": "String should match pattern '^[A-Za-z0-9_.:-]+$'"}],
        ),
        (
            {"deviceId": "gw", "readings": []},
            [{"field": "readings", "message": "List should have at least 1 item after validation, not 0"}],
        ),
        (
            {"deviceId": "gw", "readings": "u1"},
            [{"field": "readings", "message": "Input should be a valid list"}],
        ),
    ],
)
def test_http_invalid_request_shape_is_refused(
    stack: InProcessStack, document: Any, details: list[dict[str, str]]
):
    assert stack.post_readings(authorizer_claims("acme"), json.dumps(document)) == (
        400,
        error("validation_error", "request body is invalid", details),
    )


def test_http_request_with_an_invalid_reading_stores_none_and_names_each(
    stack: InProcessStack, clock: FakeClock
):
    readings = [
        reading("u1", clock.iso(-3)),
        reading("u1", clock.iso(-2), temperature="21", id="gw-r-2"),
        reading("u1", clock.iso(-1)),
        reading("u 4", clock.iso(301), humidity=120),
    ]

    status, answer = stack.post_readings(authorizer_claims("acme"), body(*readings))

    assert (status, answer) == (
        400,
        error(
            "validation_error",
            "2 of 4 readings are invalid; none were stored",
            [
                {
                    "index": 1,
                    "errors": [{"field": "temperature", "message": "Input should be a valid number"}],
                    "id": "gw-r-2",
                },
                {
                    "index": 3,
                    "errors": [
                        {"field": "unitId", "message": "String should match pattern '^[A-Za-z0-9_.:-]+$'"},
                        {"field": "humidity", "message": "Input should be less than or equal to 100"},
                        {
                            "field": "recordedAt",
                            "message": "Value error, is more than 5 minutes in the future",
                        },
                    ],
                },
            ],
        ),
    )
    assert history(stack, "u1") == []
    assert stack.store.readings.newest("acme", "u1") is None
    assert not stack.store.readings.device_known("acme", "gateway-7")


def test_http_units_limited_token_writes_its_own_units(stack: InProcessStack, clock: FakeClock):
    claims = authorizer_claims("acme", units=["u1", "u2"])

    assert stack.post_readings(claims, body(reading("u1", clock.iso(-1)), reading("u2", clock.iso()))) == (
        200,
        {"accepted": 2, "duplicates": 0},
    )


def test_http_units_limited_token_may_not_write_other_units(stack: InProcessStack, clock: FakeClock):
    # They were stored: a gateway's token could write readings of any unit of its org.
    readings = [reading("u1", clock.iso(-3)), reading("u9", clock.iso(-2)), reading("u8", clock.iso(-1))]

    status, answer = stack.post_readings(authorizer_claims("acme", units=["u1"]), body(*readings))

    assert (status, answer) == (
        403,
        error(
            "forbidden",
            "your token does not allow units u8, u9; none were stored",
            [{"index": 1, "unitId": "u9"}, {"index": 2, "unitId": "u8"}],
        ),
    )
    assert history(stack, "u1") == history(stack, "u9") == history(stack, "u8") == []
    assert not stack.store.readings.device_known("acme", "gateway-7")


def test_http_without_authorizer_claims_is_unauthorized(stack: InProcessStack, clock: FakeClock):
    assert stack.post_readings(None, body(reading("u1", clock.iso()))) == (
        401,
        error("unauthorized", "no verified token claims; send Authorization: Bearer <JWT>"),
    )


ORG_RULE = "token claim 'org' must be a string of 1-64 characters of [A-Za-z0-9_.:-]"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (authorizer_claims(None), "token lacks the 'org' claim"),
        (authorizer_claims("ac/me"), ORG_RULE),
        # API Gateway passed these as "123" and "true": readings were stored under those orgs.
        (authorizer_claims(123), ORG_RULE),
        (authorizer_claims(True), ORG_RULE),
        (authorizer_claims("acme", sub=7), "token claim 'sub' must be a string of 1-256 characters"),
        (
            authorizer_claims("acme", units=[1]),
            "token claim 'units' must be a list of unit ids (or one string of comma-separated ones), "
            "each 1-64 characters of [A-Za-z0-9_.:-]",
        ),
    ],
    ids=["no-org", "org-with-slash", "numeric-org", "boolean-org", "numeric-sub", "numeric-units"],
)
def test_http_claims_that_are_not_strictly_valid_are_unauthorized(
    stack: InProcessStack, clock: FakeClock, claims: dict[str, Any], message: str
):
    assert stack.post_readings(claims, body(reading("u1", clock.iso()))) == (
        401,
        error("unauthorized", message),
    )
    for org in ("acme", "ac/me", "123", "true"):
        assert history(stack, "u1", org=org) == []


def test_http_token_that_is_not_the_verified_one_is_unauthorized(stack: InProcessStack, clock: FakeClock):
    event = http_readings_event(body(reading("u1", clock.iso())), authorizer_claims("globex"))
    event["headers"]["authorization"] = http_readings_event(None, authorizer_claims("acme"))["headers"][
        "authorization"
    ]

    response = ingest.handler.lambda_handler(event, FakeLambdaContext())

    assert (response["statusCode"], json.loads(response["body"])) == (
        401,
        error("unauthorized", "the token's 'org' claim is not the one API Gateway verified"),
    )
    assert history(stack, "u1", org="acme") == history(stack, "u1", org="globex") == []
