"""The wire format the models define: camelCase, UTC times with ms and Z, optional
fields omitted when unset, deterministic reading ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sensor_stream.models import (
    CommandAckMessage,
    ConnectionMessage,
    ErrorBody,
    ErrorMessage,
    LatestMessage,
    Reading,
    ReadingIn,
    ReadingsBatchMessage,
    Resume,
    Subscription,
    UnitBatch,
    format_time,
)
from tests.support.readings import full_reading, reading

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CLOCK_UNSET = "Value error, is before 2000-01-01; check the device clock"


def parse(raw: dict[str, object]) -> ReadingIn:
    return ReadingIn.model_validate(raw, context={"now": NOW})


def stored(raw: dict[str, object], device_id: str = "dev-1") -> Reading:
    return Reading.accept(parse(raw), device_id=device_id, received_at=NOW, source="iot")


def test_reading_serializes_camel_case_with_every_contract_field():
    wire = stored(full_reading("fridge-1", "2026-03-01T11:59:58.5Z")).to_wire()

    assert wire == {
        "id": wire["id"],
        "unitId": "fridge-1",
        "siteId": "site-1",
        "deviceId": "dev-1",
        "temperature": 21.5,
        "humidity": 40.5,
        "battery": 87.0,
        "signalStrength": -67,
        "recordedAt": "2026-03-01T11:59:58.500Z",
        "receivedAt": "2026-03-01T12:00:00.000Z",
        "source": "iot",
    }


def test_optional_reading_fields_are_sent_as_null():
    # Reading lists them all (contract section 3); only request/detail fields vanish.
    wire = stored(reading("fridge-1", "2026-03-01T11:59:58Z")).to_wire()

    assert wire["siteId"] is None
    assert wire["humidity"] is None
    assert wire["battery"] is None
    assert wire["signalStrength"] is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-03-01T11:59:58Z", "2026-03-01T11:59:58.000Z"),
        ("2026-03-01T12:59:58.123456+01:00", "2026-03-01T11:59:58.123Z"),
        ("2026-03-01T06:29:58.9-05:30", "2026-03-01T11:59:58.900Z"),
    ],
)
def test_times_become_utc_with_milliseconds_and_z(given: str, expected: str):
    assert stored(reading("u1", given)).to_wire()["recordedAt"] == expected


def test_format_time_is_sortable_as_a_string():
    earlier = format_time(datetime(2026, 3, 1, 9, 5, 7, 1000, tzinfo=UTC))
    later = format_time(datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC))

    assert earlier == "2026-03-01T09:05:07.001Z"
    assert earlier < later


@pytest.mark.parametrize(
    ("moment", "written"),
    [
        (datetime(999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC), "0999-12-31T23:59:59.999Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000Z"),
        (datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC), "9999-12-31T23:59:59.999Z"),
    ],
)
def test_format_time_keeps_four_digit_years_and_reads_back(moment: datetime, written: str):
    # glibc's strftime("%Y") wrote "999-12-31T...", which does not parse back.
    assert format_time(moment) == written
    assert Resume.model_validate({"since": written}).since == moment


def test_format_time_sorts_years_before_1000_first():
    # "999-..." sorted after "2026-..." and broke the order of the store's sort keys.
    assert format_time(datetime(999, 1, 1, tzinfo=UTC)) < format_time(datetime(2026, 1, 1, tzinfo=UTC))


def test_request_id_is_omitted_when_none_and_echoed_when_given():
    subscription = Subscription()
    without = ConnectionMessage(connection_id="c1", server_time=NOW, subscription=subscription)
    with_id = ConnectionMessage(
        request_id="r-7", connection_id="c1", server_time=NOW, subscription=subscription
    )

    assert "requestId" not in without.to_wire()
    assert with_id.to_wire()["requestId"] == "r-7"
    assert json.loads(without.to_json()) == without.to_wire()


def test_error_details_and_ack_detail_are_omitted_when_none():
    error = ErrorMessage(error=ErrorBody(code="forbidden", message="no"))
    ack = CommandAckMessage(command_id="c", status="ok")

    assert error.to_wire() == {"type": "error", "error": {"code": "forbidden", "message": "no"}}
    assert ack.to_wire() == {"type": "command:ack", "commandId": "c", "status": "ok"}


def test_latest_message_keeps_a_null_reading():
    # reading: null is the answer for an unknown unit, so it must not vanish.
    assert LatestMessage(unit_id="u9", reading=None).to_wire() == {
        "type": "latest",
        "unitId": "u9",
        "reading": None,
    }


def test_batch_message_marks_replay_only_when_replaying():
    one = stored(reading("u1", "2026-03-01T11:59:58Z"))
    batch = UnitBatch(unit_id="u1", readings=[one], count=1)
    live = ReadingsBatchMessage(server_time=NOW, batches=[batch]).to_wire()
    replayed = ReadingsBatchMessage(server_time=NOW, replay=True, batches=[batch]).to_wire()

    assert live == {
        "type": "sensor:readings:batch",
        "serverTime": "2026-03-01T12:00:00.000Z",
        "batches": [{"unitId": "u1", "readings": [one.to_wire()], "count": 1}],
    }
    assert replayed["replay"] is True


def test_subscription_serializes_camel_case():
    assert Subscription(scope="selected", unit_ids=["u1"], site_ids=["s1"]).to_wire() == {
        "scope": "selected",
        "unitIds": ["u1"],
        "siteIds": ["s1"],
    }


def test_derived_reading_id_is_deterministic():
    first = parse(reading("u1", "2026-03-01T11:59:58.123Z")).reading_id("dev-1")
    again = parse(reading("u1", "2026-03-01T11:59:58.123Z", temperature=30)).reading_id("dev-1")
    same_instant = parse(reading("u1", "2026-03-01T12:59:58.123+01:00")).reading_id("dev-1")

    assert first == again == same_instant


@pytest.mark.parametrize(
    ("unit_id", "recorded_at", "device_id"),
    [
        ("u2", "2026-03-01T11:59:58.123Z", "dev-1"),
        ("u1", "2026-03-01T11:59:58.124Z", "dev-1"),
        ("u1", "2026-03-01T11:59:58.123Z", "dev-2"),
    ],
)
def test_derived_reading_id_differs_for_another_unit_time_or_device(
    unit_id: str, recorded_at: str, device_id: str
):
    base = parse(reading("u1", "2026-03-01T11:59:58.123Z")).reading_id("dev-1")

    assert parse(reading(unit_id, recorded_at)).reading_id(device_id) != base


def test_given_reading_id_is_kept():
    raw = parse(reading("u1", "2026-03-01T11:59:58Z", id="r-0001"))

    assert raw.reading_id("dev-1") == "r-0001"
    assert Reading.accept(raw, device_id="dev-1", received_at=NOW, source="http").id == "r-0001"


def test_unknown_reading_fields_are_ignored_and_never_override_ids():
    raw = parse(reading("u1", "2026-03-01T11:59:58Z", deviceId="spoofed", orgId="other", colour="red"))

    assert Reading.accept(raw, device_id="dev-1", received_at=NOW, source="iot").device_id == "dev-1"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", "21", "Input should be a valid number"),
        ("temperature", True, "Input should be a valid number"),
        ("temperature", 150.5, "Input should be less than or equal to 150"),
        ("temperature", -100.1, "Input should be greater than or equal to -100"),
        ("temperature", float("nan"), "Input should be a finite number"),
        ("humidity", 100.1, "Input should be less than or equal to 100"),
        ("battery", -1, "Input should be greater than or equal to 0"),
        ("signalStrength", 1, "Input should be less than or equal to 0"),
        ("signalStrength", -151, "Input should be greater than or equal to -150"),
        ("signalStrength", -70.5, "Input should be a valid integer"),
        ("unitId", "fridge 1", "String should match pattern '^[A-Za-z0-9_.:-]+$'"),
        ("unitId", "", "String should have at least 1 character"),
        ("unitId", "u" * 65, "String should have at most 64 characters"),
        ("siteId", "site/1", "String should match pattern '^[A-Za-z0-9_.:-]+$'"),
        ("id", "a b", "String should match pattern '^[A-Za-z0-9_.:-]+$'"),
        ("recordedAt", "2026-03-01T12:00:00", "Value error, must carry a time zone, e.g. a trailing Z"),
        (
            "recordedAt",
            1772366400,
            "Value error, must be an ISO-8601 string such as 2026-01-31T12:00:00Z",
        ),
        ("recordedAt", "2026-03-01T12:05:00.001Z", "Value error, is more than 5 minutes in the future"),
        # A device whose clock was never set reports 1970; older years broke the store's order.
        ("recordedAt", "1970-01-01T00:00:00Z", CLOCK_UNSET),
        ("recordedAt", "1999-12-31T23:59:59.999Z", CLOCK_UNSET),
        ("recordedAt", "0999-01-01T00:00:00Z", CLOCK_UNSET),
        ("recordedAt", "2000-01-01T04:59:59+05:00", CLOCK_UNSET),
        ("recordedAt", "0001-01-01T00:00:00+05:00", "Value error, is out of range once converted to UTC"),
        ("recordedAt", "9999-12-31T23:59:59-05:00", "Value error, is out of range once converted to UTC"),
        # pydantic alone reads a numeric string as epoch seconds or milliseconds, by its size.
        (
            "recordedAt",
            "1772366400",
            "Value error, must be an ISO-8601 string such as 2026-01-31T12:00:00Z",
        ),
    ],
)
def test_invalid_reading_fields_are_named(field: str, value: object, message: str):
    raw = full_reading("u1", "2026-03-01T11:59:58Z", **{field: value})

    with pytest.raises(ValidationError) as caught:
        parse(raw)

    assert [(error["loc"], error["msg"]) for error in caught.value.errors()] == [((field,), message)]


def test_recorded_at_exactly_five_minutes_ahead_is_accepted():
    assert parse(reading("u1", "2026-03-01T12:05:00Z")).recorded_at == datetime(2026, 3, 1, 12, 5, tzinfo=UTC)


def test_recorded_at_from_2000_on_is_accepted():
    assert parse(reading("u1", "2000-01-01T00:00:00Z")).recorded_at == datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
    ],
)
def test_other_times_take_any_valid_time(since: str, expected: str):
    assert Resume.model_validate({"since": since}).to_wire() == {"since": expected}


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_time_that_overflows_utc_is_a_validation_error(since: str):
    # It raised OverflowError, which no caller turned into an answer.
    with pytest.raises(ValidationError) as caught:
        Resume.model_validate({"since": since})

    assert [(error["loc"], error["msg"]) for error in caught.value.errors()] == [
        (("since",), "Value error, is out of range once converted to UTC")
    ]


@pytest.mark.parametrize("missing", ["unitId", "temperature", "recordedAt"])
def test_required_reading_fields(missing: str):
    raw = reading("u1", "2026-03-01T11:59:58Z")
    del raw[missing]

    with pytest.raises(ValidationError) as caught:
        parse(raw)

    assert [(error["loc"], error["msg"]) for error in caught.value.errors()] == [
        ((missing,), "Field required")
    ]
