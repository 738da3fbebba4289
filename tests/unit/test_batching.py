"""pack_batches: one message per tick and connection, split only to stay under the frame
limit, each reading once, ordered by recordedAt within its unit, byte for byte what the
message model writes."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from sensor_stream.gateway import MAX_MESSAGE_BYTES
from sensor_stream.models import Reading, ReadingsBatchMessage
from sensor_stream.packing import PackedReading, TickPacking, pack_batches

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
# The contract's bound; MAX_MESSAGE_BYTES is the code's own, stricter one.
FRAME_LIMIT = 32 * 1024


def make_reading(unit_id: str, seconds_ago: float, *, long_fields: bool = False, index: int = 0) -> Reading:
    pad = "x" * 40 if long_fields else ""
    return Reading(
        id=f"r-{unit_id}-{index:05d}{pad * 2}"[:128],
        unit_id=unit_id,
        site_id=("site-" + pad)[:64] if long_fields else None,
        device_id=("device-" + pad)[:64],
        temperature=-12.345678901234,
        humidity=55.55555555,
        battery=99.999999,
        signal_strength=-123,
        recorded_at=NOW - timedelta(seconds=seconds_ago),
        received_at=NOW,
        source="http",
    )


def batch_messages(
    readings: list[Reading], *, server_time: datetime, replay: bool = False
) -> list[ReadingsBatchMessage]:
    """pack_batches on the readings' stored texts; each message must parse as the model
    and be exactly what the model writes."""
    packed = pack_batches(
        [PackedReading.from_reading(r) for r in readings], server_time=server_time, replay=replay
    )
    messages = [ReadingsBatchMessage.model_validate_json(data) for data in packed]
    for data, message in zip(packed, messages, strict=True):
        assert json.loads(data) == message.to_wire()
        assert data == message.to_json().encode()  # so frame_sizes measures what is posted
    return messages


def frame_sizes(messages: list[ReadingsBatchMessage]) -> list[int]:
    return [len(message.to_json().encode()) for message in messages]


def delivered_ids(messages: list[ReadingsBatchMessage]) -> list[str]:
    return [reading.id for message in messages for batch in message.batches for reading in batch.readings]


def assert_well_formed(messages: list[ReadingsBatchMessage], readings: list[Reading]) -> None:
    assert max(frame_sizes(messages)) <= MAX_MESSAGE_BYTES < FRAME_LIMIT
    ids = delivered_ids(messages)
    assert sorted(ids) == sorted({r.id for r in readings})  # each reading exactly once
    per_unit: dict[str, list[datetime]] = {}
    for message in messages:
        assert message.server_time == NOW
        for batch in message.batches:
            assert batch.count == len(batch.readings) > 0
            assert {r.unit_id for r in batch.readings} == {batch.unit_id}
            per_unit.setdefault(batch.unit_id, []).extend(r.recorded_at for r in batch.readings)
    for times in per_unit.values():
        assert times == sorted(times)


def test_a_small_tick_is_one_message_grouped_per_unit_in_time_order():
    readings = [make_reading("u2", 3), make_reading("u1", 1, index=1), make_reading("u1", 2, index=2)]

    [message] = batch_messages(readings, server_time=NOW)

    assert [(b.unit_id, [r.id for r in b.readings], b.count) for b in message.batches] == [
        ("u1", ["r-u1-00002", "r-u1-00001"], 2),
        ("u2", ["r-u2-00000"], 1),
    ]
    assert message.replay is None


def test_repeated_reading_is_sent_once():
    one = make_reading("u1", 1)

    [message] = batch_messages([one, one, one], server_time=NOW)

    assert delivered_ids([message]) == [one.id]


def test_nothing_makes_no_message():
    assert batch_messages([], server_time=NOW) == []


def test_replay_marks_every_message():
    readings = [make_reading("u1", i, long_fields=True, index=i) for i in range(200)]

    messages = batch_messages(readings, server_time=NOW, replay=True)

    assert len(messages) > 1
    assert all(message.replay is True for message in messages)


@pytest.mark.parametrize("units", [1, 3, 40])
def test_many_readings_split_under_the_frame_limit_each_once_and_in_order(units: int):
    shuffled = random.Random(7)
    readings = [make_reading(f"unit-{i % units}", i * 0.5, long_fields=True, index=i) for i in range(600)]
    shuffled.shuffle(readings)

    messages = batch_messages(readings, server_time=NOW)

    assert len(messages) > 1
    assert_well_formed(messages, readings)
    # Split only when needed: no two consecutive messages would have fit in one.
    sizes = frame_sizes(messages)
    assert all(a + b > MAX_MESSAGE_BYTES for a, b in itertools.pairwise(sizes))


def test_many_units_with_the_longest_ids_stay_under_the_frame_limit():
    readings = [make_reading(f"{i:04d}".ljust(64, "u"), 1, long_fields=True, index=i) for i in range(300)]

    messages = batch_messages(readings, server_time=NOW)

    assert_well_formed(messages, readings)


# --- one tick's packing, shared by the connections that want the same readings ---------------


def test_connections_that_want_the_same_readings_post_the_same_messages_packed_once():
    packing = TickPacking()
    readings = [PackedReading.from_reading(make_reading(f"u{i % 7}", i, index=i)) for i in range(300)]
    # Each tick's list, as the lanes of an org's whole-org subscribers hold it.
    first_tick, second_tick = readings[:200], readings[200:]
    selected = [r for r in readings if r.unit_id == "u1"]

    one_lane = packing.pack([first_tick, second_tick], NOW)  # behind by a tick
    another_lane = packing.pack([first_tick, second_tick], NOW)
    alone = packing.pack([selected], NOW)
    caught_up = packing.pack([second_tick], NOW)

    assert one_lane == pack_batches(readings, server_time=NOW)
    assert another_lane is one_lane  # built once
    assert alone == pack_batches(selected, server_time=NOW) != one_lane
    assert caught_up == pack_batches(second_tick, server_time=NOW)
    assert (
        packing.pack([first_tick, second_tick], NOW + timedelta(seconds=1)) is not one_lane
    )  # the next tick's


def test_a_new_tick_packs_again_with_its_server_time():
    packing = TickPacking()
    readings = [PackedReading.from_reading(make_reading("u1", i, index=i)) for i in range(3)]
    later = NOW + timedelta(seconds=1)

    packing.pack([readings], NOW)
    again = packing.pack([readings], later)

    assert again == pack_batches(readings, server_time=later)
    parsed = [ReadingsBatchMessage.model_validate_json(message) for message in again]
    assert [message.server_time for message in parsed] == [later]


def test_the_packed_messages_say_which_readings_each_carries():
    readings = [make_reading(f"unit-{i % 3}", i * 0.5, long_fields=True, index=i) for i in range(600)]
    packed = pack_batches([PackedReading.from_reading(r) for r in readings], server_time=NOW)

    assert len(packed) > 2
    for sent in range(len(packed) + 1):
        carried_later = {
            r.id
            for data in packed[sent:]
            for batch in ReadingsBatchMessage.model_validate_json(data).batches
            for r in batch.readings
        }
        assert {r.reading_id for r in packed.readings_after(sent)} == carried_later
