"""Hypothesis strategies for what clients send: readings (valid, and invalid one field
at a time), times over datetime's whole range, and JSON documents, arbitrary or shaped
like the contract's messages."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")
E = TypeVar("E", bound=Exception)
IDENTIFIER = r"[A-Za-z0-9_.:-]"
# Offsets as ISO-8601 writes them: whole minutes, less than a day.
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def identifiers(max_size: int = 64) -> st.SearchStrategy[str]:
    return st.from_regex(rf"{IDENTIFIER}{{1,{max_size}}}", fullmatch=True)


# Ids as people (and attackers) write them: key separators, paths, other scripts.
odd_ids = st.one_of(
    identifiers(),
    st.sampled_from(["u#1", "acme#u1", "org/acme", "../u1", "ünit-1", "温度", "🌡", "", " ", "u1\n"]),
    st.text(max_size=70),
)


def utc_times(min_value: datetime, max_value: datetime) -> st.SearchStrategy[datetime]:
    """UTC times with millisecond precision between the two (aware) bounds."""
    naive = st.datetimes(
        min_value=min_value.astimezone(UTC).replace(tzinfo=None),
        max_value=max_value.astimezone(UTC).replace(tzinfo=None),
    )
    return naive.map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000, tzinfo=UTC))


def iso_texts(times: st.SearchStrategy[datetime]) -> st.SearchStrategy[str]:
    """Each time as ISO-8601 text with a ``Z`` or in some offset's local time."""
    return st.one_of(
        times.map(lambda t: t.isoformat().replace("+00:00", "Z")),
        st.tuples(times, offsets).map(lambda pair: pair[0].astimezone(pair[1]).isoformat()),
    )


# Any aware time datetime can hold, written in any offset: some overflow UTC.
any_time_texts = st.tuples(st.datetimes(), offsets).map(
    lambda pair: pair[0].replace(tzinfo=pair[1]).isoformat()
)


def readings(now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    """Valid reading objects as devices send them, recorded from 2000 to 5 minutes after ``now``."""

    def numbers(low: float, high: float) -> st.SearchStrategy[float | int]:
        return st.one_of(
            st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False),
            st.integers(min_value=math.ceil(low), max_value=math.floor(high)),
        )

    recorded = utc_times(datetime(2000, 1, 1, tzinfo=UTC), now + timedelta(minutes=5))
    return st.fixed_dictionaries(
        {
            # u1 and u2: the units the tests' units-limited tokens allow.
            "unitId": st.one_of(st.sampled_from(["u1", "u2"]), identifiers()),
            "temperature": numbers(-100, 150),
            "recordedAt": iso_texts(recorded),
        },
        optional={
            "id": st.none() | identifiers(128),
            "siteId": st.none() | identifiers(),
            "humidity": st.none() | numbers(0, 100),
            "battery": st.none() | numbers(0, 100),
            "signalStrength": st.none() | st.integers(min_value=-150, max_value=0),
        },
    )


_wrong_types = st.one_of(
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _bad_strings(max_size: int) -> st.SearchStrategy[str]:
    pattern = re.compile(rf"{IDENTIFIER}{{1,{max_size}}}")
    too_long = st.from_regex(rf"{IDENTIFIER}{{{max_size + 1},{max_size + 8}}}", fullmatch=True)
    return st.one_of(too_long, odd_ids.filter(lambda s: not pattern.fullmatch(s)))


def _out_of(low: float, high: float) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.floats(min_value=high, exclude_min=True),
        st.floats(max_value=low, exclude_max=True),
        st.just(math.nan),
        st.integers(min_value=math.floor(high) + 1),
        st.integers(max_value=math.ceil(low) - 1),
        st.text(max_size=5),
        _wrong_types,
    )


_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def invalid_fields(now: datetime) -> st.SearchStrategy[tuple[str, Any]]:
    """(wire field name, a value the contract refuses for it)."""
    # A day inside datetime's range, so that every offset can write the time.
    before_2000 = utc_times(
        datetime(1, 1, 2, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    )
    too_late = utc_times(now + timedelta(minutes=5, milliseconds=1), datetime(9999, 12, 30, tzinfo=UTC))
    per_field: dict[str, st.SearchStrategy[Any]] = {
        "temperature": st.none() | _out_of(-100, 150),
        "humidity": _out_of(0, 100),
        "battery": _out_of(0, 100),
        "signalStrength": st.one_of(
            _out_of(-150, 0), st.floats(allow_nan=False, min_value=-150, max_value=0)
        ),
        "unitId": st.one_of(st.none(), st.integers(), st.floats(), _bad_strings(64), _wrong_types),
        "siteId": st.one_of(st.integers(), st.floats(), _bad_strings(64), _wrong_types),
        "id": st.one_of(st.integers(), st.floats(), _bad_strings(128), _wrong_types),
        "recordedAt": st.one_of(
            iso_texts(before_2000),
            iso_texts(too_late),
            iso_texts(too_late).map(lambda text: text.removesuffix("Z")[:19]),  # no time zone
            st.text(max_size=30).filter(lambda s: not _ISO_DATE_TIME.match(s)),
            st.integers(),
            st.floats(),
            st.none(),
            _wrong_types,
        ),
    }
    return st.sampled_from(sorted(per_field)).flatmap(lambda name: st.tuples(st.just(name), per_field[name]))


# JSON documents: scalars of every kind (big numbers, NaN and Infinity as Python writes
# them, any text), nested in arrays and objects.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(),
    st.text(),
    odd_ids,
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int) -> str:
    """An array nested ``depth`` levels deep."""
    return "[" * depth + "]" * depth


def mostly(usual: st.SearchStrategy[T], sometimes: st.SearchStrategy[T], one_in: int) -> st.SearchStrategy[T]:
    """Examples of ``usual``, and of ``sometimes`` about one time in ``one_in``."""
    return st.integers(min_value=1, max_value=one_in).flatmap(lambda n: sometimes if n == 1 else usual)


def texts_of(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    """Documents as JSON text (two examples in three), and text that is not quite JSON: any
    text, cut-off or doubled documents, deep nesting, huge integers, unpaired surrogates."""
    as_text = documents.map(json.dumps)
    not_quite = st.one_of(
        as_text.flatmap(lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut])),
        as_text.map(lambda text: text + text),
        st.text(),
        st.integers(min_value=20, max_value=40).map(nested),
        st.just(nested(20_000)),
        st.just('{"n": ' + "9" * 5000 + "}"),
        st.sampled_from(['"\\ud800"', '{"requestId": "\\udfff"}', '{"action": "hello", "x": "\\ud83d"}']),
    )
    return mostly(as_text, not_quite, one_in=3)


READING_FIELDS = (
    "id",
    "unitId",
    "siteId",
    "temperature",
    "humidity",
    "battery",
    "signalStrength",
    "recordedAt",
)


def _valid_or_broken(reading_objects: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Readings: valid ones, ones with a field changed to any JSON value, or anything."""
    changed = st.tuples(reading_objects, st.sampled_from(READING_FIELDS), json_values).map(
        lambda triple: triple[0] | {triple[1]: triple[2]}
    )
    return st.one_of(reading_objects, changed, json_values)


def _with_junk_fields(requests: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A request with one of the contract's field names (or another) set to any JSON value."""
    names = st.sampled_from(
        [
            "action",
            "requestId",
            "resume",
            "scope",
            "unitIds",
            "siteIds",
            "unitId",
            "deviceId",
            "command",
            "params",
        ]
    )
    return st.tuples(requests, st.one_of(names, st.text(max_size=8)), json_values).map(
        lambda triple: triple[0] | {triple[1]: triple[2]}
    )


def client_messages() -> st.SearchStrategy[Any]:
    """WebSocket requests: each action of the contract well formed (ids of any kind), the
    same with a field of any JSON value, and documents that are no request at all."""
    unit_ids = st.one_of(st.sampled_from(["u1", "u2"]), identifiers(), odd_ids)
    request_ids = st.one_of(identifiers(), odd_ids)
    requests = st.one_of(
        st.fixed_dictionaries(
            {"action": st.just("hello")},
            optional={"requestId": request_ids, "resume": st.fixed_dictionaries({"since": any_time_texts})},
        ),
        st.fixed_dictionaries(
            {"action": st.sampled_from(["subscribe", "unsubscribe"])},
            optional={
                "requestId": request_ids,
                "unitIds": st.lists(unit_ids, max_size=4),
                "siteIds": st.lists(unit_ids, max_size=4),
                "scope": st.sampled_from(["org", "selected"]),
            },
        ),
        st.fixed_dictionaries(
            {"action": st.just("getLatest"), "unitId": unit_ids}, optional={"requestId": request_ids}
        ),
        st.fixed_dictionaries(
            {"action": st.just("sendCommand"), "deviceId": odd_ids, "command": odd_ids},
            optional={"requestId": request_ids, "params": json_values},
        ),
    )
    return st.one_of(requests, _with_junk_fields(requests), json_values)


def ingest_bodies(now: datetime) -> st.SearchStrategy[Any]:
    """``POST /readings`` bodies: well formed, with readings valid or broken, with a field
    of any JSON value, or any JSON value."""
    reading_objects = readings(now)
    requests = st.fixed_dictionaries(
        {
            "deviceId": st.one_of(identifiers(128), odd_ids),
            "readings": st.one_of(
                st.lists(reading_objects, min_size=1, max_size=4),
                st.lists(_valid_or_broken(reading_objects), max_size=4),
            ),
        }
    )
    junk = st.tuples(requests, st.sampled_from(["deviceId", "readings"]), json_values).map(
        lambda triple: triple[0] | {triple[1]: triple[2]}
    )
    return st.one_of(requests, junk, json_values)


def telemetry_payloads(now: datetime) -> st.SearchStrategy[Any]:
    """MQTT payloads: one reading, ``{"readings": [...]}`` (valid or broken), or any JSON value."""
    reading_objects = readings(now)
    return st.one_of(
        _valid_or_broken(reading_objects),
        st.fixed_dictionaries({"readings": st.lists(_valid_or_broken(reading_objects), max_size=4)}),
        st.fixed_dictionaries({"readings": json_values}),
    )


def result_or_error(call: Callable[[], T], expected: type[E]) -> T | E:
    """What ``call`` returns, or the ``expected`` exception it raised (any other propagates
    and fails the property)."""
    try:
        return call()
    except expected as error:
        return error
