"""Properties of the input models and the wire codecs over generated input: what is valid
survives its wire form, what is not is a ValidationError naming the field or a
MalformedJson, never another exception."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from sensor_stream.errors import AppError, MalformedJson
from sensor_stream.models import Reading, ReadingIn, Resume, UtcTime, format_time
from sensor_stream.protocol import error_message, parse_client_message
from sensor_stream.wire import MAX_JSON_DEPTH, decode_json
from tests.support.strategies import (
    any_time_texts,
    client_messages,
    invalid_fields,
    json_values,
    readings,
    result_or_error,
    texts_of,
    utc_times,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
UTC_TIME: TypeAdapter[datetime] = TypeAdapter(UtcTime)
WRITTEN_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
recorded_times = utc_times(datetime(2000, 1, 1, tzinfo=UTC), NOW + timedelta(minutes=5))


def parse(raw: Any) -> ReadingIn:
    return ReadingIn.model_validate(raw, context={"now": NOW})


# --- readings ---------------------------------------------------------------------------


@given(readings(NOW))
def test_a_valid_reading_is_accepted_and_survives_its_wire_form(raw: dict[str, Any]):
    reading = parse(raw)

    assert ReadingIn.model_validate_json(reading.to_json(), context={"now": NOW}) == reading
    assert (reading.unit_id, reading.temperature) == (raw["unitId"], raw["temperature"])
    assert reading.recorded_at == UTC_TIME.validate_python(raw["recordedAt"])
    stored = Reading.accept(reading, device_id="dev-1", received_at=NOW, source="iot")
    assert Reading.model_validate_json(stored.to_json()) == stored


@given(readings(NOW), invalid_fields(NOW))
def test_an_invalid_field_is_refused_naming_that_field(raw: dict[str, Any], bad: tuple[str, Any]):
    field, value = bad

    with pytest.raises(ValidationError) as caught:
        parse(raw | {field: value})

    assert {error["loc"][0] for error in caught.value.errors()} == {field}


@given(json_values)
def test_any_json_value_is_a_reading_or_a_validation_error(value: Any):
    reading = result_or_error(lambda: parse(value), ValidationError)

    if isinstance(reading, ValidationError):
        assert reading.errors()
    else:
        assert reading.recorded_at >= datetime(2000, 1, 1, tzinfo=UTC)


# --- times --------------------------------------------------------------------------------


@given(utc_times(EARLIEST, LATEST))
def test_format_time_reads_back_over_the_whole_range(moment: datetime):
    written = format_time(moment)

    assert WRITTEN_TIME.fullmatch(written)
    assert UTC_TIME.validate_python(written) == moment


@given(utc_times(EARLIEST, LATEST), utc_times(EARLIEST, LATEST))
def test_format_time_sorts_as_time_does(first: datetime, second: datetime):
    assert (format_time(first) < format_time(second)) == (first < second)


@given(recorded_times, recorded_times)
def test_recorded_at_sorts_as_time_does_once_accepted(first: datetime, second: datetime):
    def written(moment: datetime) -> str:
        return parse({"unitId": "u1", "temperature": 1, "recordedAt": moment.isoformat()}).to_wire()[
            "recordedAt"
        ]

    assert (written(first) < written(second)) == (first < second)


@given(any_time_texts)
def test_any_time_in_any_offset_is_accepted_or_a_validation_error(text: str):
    resume = result_or_error(lambda: Resume.model_validate({"since": text}), ValidationError)

    if isinstance(resume, ValidationError):
        assert [error["loc"] for error in resume.errors()] == [("since",)]
    else:
        assert WRITTEN_TIME.fullmatch(format_time(resume.since))


# --- the JSON codec -------------------------------------------------------------------------


def _without_nan_or_infinity(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


# NaN and Infinity (which Python writes and reads) are left out: NaN != NaN.
plain_json = json_values.filter(_without_nan_or_infinity)


@given(plain_json)
def test_decode_json_reads_back_what_json_writes(value: Any):
    assert decode_json(json.dumps(value), "document") == value
    assert decode_json(json.dumps(value, ensure_ascii=False).encode(), "document") == value


@given(st.one_of(texts_of(json_values), st.binary()))
def test_decode_json_yields_a_value_or_malformed_json(data: str | bytes):
    decoded = result_or_error(lambda: decode_json(data, "document"), MalformedJson)

    if isinstance(decoded, MalformedJson):
        assert decoded.message.startswith("document ")
    else:
        assert json.loads(json.dumps(decoded)) == decoded or decoded != decoded  # NaN is itself unequal


@given(st.integers(min_value=1, max_value=MAX_JSON_DEPTH + 8))
def test_decode_json_reads_32_levels_and_refuses_more(depth: int):
    text = "[" * depth + "]" * depth
    if depth <= MAX_JSON_DEPTH:
        assert decode_json(text, "document") is not None
    else:
        with pytest.raises(MalformedJson):
            decode_json(text, "document")


@given(texts_of(client_messages()))
def test_a_client_message_is_a_document_or_an_error_the_client_can_read(body: str):
    parsed = result_or_error(lambda: parse_client_message(body), AppError)

    if isinstance(parsed, AppError):
        answer = json.loads(error_message(parsed, None).to_json())
        assert (answer["type"], answer["error"]["code"]) == ("error", "malformed_json")
    else:
        document, request_id = parsed
        assert isinstance(document, dict)
        # Echoed in every answer, it must survive being written as JSON.
        echoed = json.loads(error_message(AppError("refused"), request_id).to_json()).get("requestId")
        assert echoed == request_id
