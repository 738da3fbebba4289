"""The live benchmark's and the soak's accounting (benchmarks/accounting.py, report.py),
fed with small synthetic messages: no stack, no network."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.accounting import (
    BATCH_TYPE,
    ClientDedupe,
    ConnectionLedger,
    FreshRun,
    LatencyHistogram,
    digest_message,
    digest_of,
    latency_by_period_second,
    latency_by_window,
    parse_reading_id,
    reading_id,
)
from benchmarks.browsers import BrowserResult
from benchmarks.devices import DeviceSpec, LoadReport, build_payload, iso
from benchmarks.faults import AdminApiFaults
from benchmarks.harness import RunResult, Workload, device_specs
from benchmarks.report import Figures, side_by_side
from benchmarks.soak import behaviour_of

T0 = 1_800_000_000.0  # a whole second


def reading(
    device: int, seq: int, sent_at: float, unit: str = "u1", recorded: float | None = None
) -> dict[str, Any]:
    at = iso(recorded if recorded is not None else sent_at)
    return {"id": reading_id(device, seq, sent_at), "unitId": unit, "recordedAt": at, "receivedAt": at}


def batch(*readings: dict[str, Any], replay: bool = False) -> dict[str, Any]:
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for r in readings:
        by_unit.setdefault(r["unitId"], []).append(r)
    message: dict[str, Any] = {
        "type": BATCH_TYPE,
        "serverTime": iso(T0),
        "batches": [{"unitId": u, "readings": rs, "count": len(rs)} for u, rs in by_unit.items()],
    }
    if replay:
        message["replay"] = True
    return message


def test_reading_ids_carry_device_sequence_and_send_time() -> None:
    value = reading_id(12, 345, T0 + 0.123456)
    assert value == "12.345.1800000000123456"
    assert parse_reading_id(value) == (12, 345, pytest.approx(T0 + 0.123456))
    assert parse_reading_id("r-1") is None
    assert parse_reading_id("a.b.c") is None


def test_latency_percentiles_are_nearest_rank_over_whole_milliseconds() -> None:
    histogram = LatencyHistogram()
    for millis in range(1, 101):
        histogram.add(millis / 1000)
    assert histogram.count == 100
    assert histogram.percentile(50) == 0.05
    assert histogram.percentile(90) == 0.09
    assert histogram.percentile(99) == 0.099
    assert histogram.max == 0.1
    assert LatencyHistogram().percentile(50) is None
    assert LatencyHistogram().max is None


def test_latency_histograms_merge_and_clamp_clock_skew_to_zero() -> None:
    one, other = LatencyHistogram(), LatencyHistogram()
    one.add(-0.004)
    other.add(2.0, times=3)
    one.merge(other)
    assert one.counts == Counter({0: 1, 2000: 3})
    assert one.percentile(25) == 0.0
    assert one.percentile(26) == 2.0


def test_ledger_counts_expected_received_missing_duplicated_and_foreign() -> None:
    ledger = ConnectionLedger("b0", devices=[0, 1])
    ledger.record_message(batch(reading(0, 0, T0), reading(0, 1, T0 + 0.5)), received_at=T0 + 1.0)
    ledger.record_message(batch(reading(0, 1, T0 + 0.5), reading(1, 0, T0)), received_at=T0 + 2.0)
    # Another org's device and an id this run never made.
    ledger.record_message(batch(reading(7, 0, T0), {**reading(0, 0, T0), "id": "x"}), received_at=T0 + 2.5)
    ledger.record_message({"type": "connection", "connectionId": "c"}, received_at=T0 + 3.0)
    sent = {0: 3, 1: 2}

    summary = ledger.summary(sent)

    assert summary.expected == 5
    assert summary.received == 4  # deliveries of expected readings, the repeat included
    assert summary.missing == 2  # 0.2 and 1.1
    assert summary.duplicated == 1
    assert summary.duplicated_after_dedupe == 0  # the client's dedupe caught the repeat
    assert summary.foreign == 2
    assert summary.messages == 3  # batches only
    assert summary.missing_examples == [(0, 2), (1, 1)]
    assert not ledger.complete(sent)
    assert ledger.complete({0: 2, 1: 1})
    assert ledger.missing_count({0: 2, 1: 1}) == 0


def test_ledger_latency_is_receive_minus_send_time_of_first_delivery() -> None:
    ledger = ConnectionLedger("b0", devices=[0])
    ledger.record_message(batch(reading(0, 0, T0)), received_at=T0 + 1.25)
    ledger.record_message(batch(reading(0, 0, T0)), received_at=T0 + 9.0)  # a repeat: no new latency
    ledger.record_message(batch(reading(0, 1, T0 + 3.2)), received_at=T0 + 5.2)
    assert ledger.latency.counts == Counter({1250: 1, 2000: 1})
    assert set(ledger.latency_by_sent_second) == {int(T0), int(T0) + 3}


def test_out_of_order_counts_recorded_at_going_backwards_within_a_unit_of_one_message() -> None:
    ledger = ConnectionLedger("b0", devices=[0])
    message = batch(
        reading(0, 0, T0, unit="a", recorded=T0 + 2),
        reading(0, 1, T0, unit="a", recorded=T0 + 1),  # backwards
        reading(0, 2, T0, unit="a", recorded=T0 + 1),  # equal: in order
        reading(0, 3, T0, unit="b", recorded=T0),  # another unit starts afresh
    )
    ledger.record_message(message, received_at=T0 + 3)
    # Across messages a unit may go back (a late reading): not counted.
    ledger.record_message(batch(reading(0, 4, T0, unit="a", recorded=T0 - 30)), received_at=T0 + 4)
    assert ledger.summary({0: 5}).out_of_order == 1


def test_messages_per_second_are_counted_by_wall_clock_second() -> None:
    ledger = ConnectionLedger("b0", devices=[0])
    for seq, at in enumerate((T0 + 0.1, T0 + 0.9, T0 + 1.5)):
        ledger.record_message(batch(reading(0, seq, T0)), received_at=at)
    assert ledger.messages_by_second == Counter({int(T0): 2, int(T0) + 1: 1})
    assert ledger.summary({0: 3}).max_messages_per_second == 2


def test_replays_and_repeats_past_the_client_dedupe_window() -> None:
    ledger = ConnectionLedger("b0", devices=[0], dedupe_capacity=2)
    ledger.record_message(batch(reading(0, 0, T0), reading(0, 1, T0), reading(0, 2, T0)), received_at=T0 + 1)
    # 0.0 was forgotten (capacity 2): the application sees it twice; 0.2 is still known.
    ledger.record_message(batch(reading(0, 0, T0), reading(0, 2, T0), replay=True), received_at=T0 + 2)
    summary = ledger.summary({0: 3})
    assert summary.duplicated == 2
    assert summary.duplicated_after_dedupe == 1
    assert summary.replayed == 2


def test_client_dedupe_forgets_the_oldest_ids_first() -> None:
    dedupe = ClientDedupe(capacity=2)
    assert [dedupe.is_new(v) for v in ("a", "b", "a", "c", "a", "b")] == [True, True, False, True, True, True]


def test_resume_point_is_the_earlier_of_recorded_and_received_of_the_newest_reading() -> None:
    ledger = ConnectionLedger("b0", devices=[0])
    late = {**reading(0, 0, T0 + 10), "recordedAt": iso(T0 + 12), "receivedAt": iso(T0 + 11)}
    ledger.record_message(batch(reading(0, 1, T0 + 5), late), received_at=T0 + 13)
    assert ledger.newest_seen == pytest.approx(T0 + 11)


def test_latency_regrouped_by_second_of_the_flush_period_and_by_window() -> None:
    def at(millis: int) -> LatencyHistogram:
        histogram = LatencyHistogram()
        histogram.add(millis / 1000)
        return histogram

    by_second = {int(T0) + 1: at(100), int(T0) + 15: at(200), int(T0) + 16: at(300), int(T0) + 29: at(400)}
    buckets = latency_by_period_second(by_second, origin=T0 + 0.5, period=15)
    # 0.5, 14.5, 15.5 and 28.5 s after the origin: slots 0, 14, 0, 13.
    assert {slot: h.max for slot, h in buckets.items()} == {0: 0.3, 13: 0.4, 14: 0.2}
    assert buckets[0].count == 2
    windows = latency_by_window(by_second, start=T0, window=10)
    assert [(offset, h.count) for offset, h in windows] == [(0.0, 1), (10.0, 2), (20.0, 1)]


def test_payloads_number_readings_and_record_them_a_millisecond_apart() -> None:
    device = DeviceSpec(3, "dev-3", "org", ("u0", "u1"))
    single = build_payload(device, 7, 1, T0)
    assert single["id"] == reading_id(3, 7, T0)
    assert single["unitId"] == "u1"
    several = build_payload(device, 0, 3, T0, recorded_offset=30)
    assert [r["id"] for r in several["readings"]] == [reading_id(3, s, T0) for s in range(3)]
    assert [r["recordedAt"] for r in several["readings"]] == [
        iso(T0 - 30.002),
        iso(T0 - 30.001),
        iso(T0 - 30),
    ]


def test_devices_split_the_units_of_their_org() -> None:
    specs = device_specs(Workload(rate=10, browsers=2, devices=4, units=8, orgs=2))
    assert [(s.org_id, s.units) for s in specs] == [
        ("bench-org-0", ("unit-0", "unit-2")),
        ("bench-org-1", ("unit-0", "unit-2")),
        ("bench-org-0", ("unit-1", "unit-3")),
        ("bench-org-1", ("unit-1", "unit-3")),
    ]


def _result(design: str, latencies_by_offset: dict[int, float], missing: bool = False) -> RunResult:
    ledger = ConnectionLedger("b0", devices=[0])
    for seq, (offset, latency) in enumerate(sorted(latencies_by_offset.items())):
        sent_at = T0 + offset
        ledger.record_message(batch(reading(0, seq, sent_at)), received_at=sent_at + latency)
    sent = {0: len(latencies_by_offset) + (1 if missing else 0)}
    browsers = BrowserResult(
        summaries=[ledger.summary(sent)],
        latency=ledger.latency,
        to_received=ledger.to_received,
        waiting_for_tick=ledger.waiting_for_tick,
        tick_to_browser=ledger.tick_to_browser,
        latency_by_sent_second=ledger.latency_by_sent_second,
        last_message_at=ledger.last_message_at,
        connect_failures=0,
        server_closes=Counter(),
    )
    return RunResult(
        design=design,
        workload=Workload(rate=1, browsers=1, duration=20),
        start=T0,
        load=LoadReport(sent=sent, messages=sent[0], acked=sent[0]),
        browsers=browsers,
        connected=1,
        flush_period=15.0 if design == "live" else None,
        flush_origin=T0,
        drain_used=3.0,
    )


def test_kept_up_looks_at_missing_readings_and_the_latency_floor() -> None:
    steady = dict.fromkeys(range(20), 1.5) | {13: 6.0}  # a hand-over hole does not count
    assert Figures(_result("live", steady)).kept_up()[0]
    falling_behind = {s: 1.0 + s for s in range(20)}
    ok, why = Figures(_result("live", falling_behind)).kept_up()
    assert not ok
    assert "grew" in why
    ok, why = Figures(_result("live", steady, missing=True)).kept_up()
    assert not ok
    assert "1 deliveries missing" in why


def test_side_by_side_prints_both_designs_and_their_ratio() -> None:
    live = Figures(_result("live", dict.fromkeys(range(20), 2.0)))
    naive = Figures(_result("naive", dict.fromkeys(range(20), 0.5)))
    lines = side_by_side([live, naive])
    assert "naive / live" in lines[0]
    latency = next(line for line in lines if line.lstrip().startswith("latency"))
    assert "1/4 " in latency


def test_soak_drops_five_percent_of_browsers_and_stalls_one_more() -> None:
    behaviour, droppers = behaviour_of(browsers=40, duration=60)
    assert droppers == 2
    assert [behaviour(i) for i in range(4)] == [
        {"drops": (15.0, 36.0), "away_seconds": 5.0},
        {"drops": (15.0, 36.0), "away_seconds": 5.0},
        {"stall": (18.0, 24.0)},
        {},
    ]
    assert behaviour_of(browsers=3, duration=60)[1] == 1


def test_the_flush_is_killed_just_after_a_tick_starts_and_not_in_the_hand_over_gap() -> None:
    faults = AdminApiFaults(flush_period=20, org_id="bench-org-0")
    # Invocations at 1000, 1020, ...; ticks every second from each, until 3 s before the next.
    assert faults._mid_tick(origin=1000.0, after=1033.4) == pytest.approx(1034.1)
    assert faults._mid_tick(origin=1000.0, after=1036.5) == pytest.approx(1041.1)


def test_the_slow_posts_fault_spans_the_first_hand_over_after_the_start() -> None:
    faults = AdminApiFaults(flush_period=20, org_id="bench-org-0")
    assert faults._next_invocation(origin=1000.0, after=1006.0) == pytest.approx(1020.0)
    assert faults._next_invocation(origin=1000.0, after=1020.0) == pytest.approx(1020.0)
    assert faults._next_invocation(origin=1000.0, after=1020.5) == pytest.approx(1040.0)


def test_latency_splits_at_the_readings_received_at_and_the_ticks_server_time():
    ledger = ConnectionLedger("b0", devices=[0])
    stored = reading(0, 0, T0)
    stored["receivedAt"] = iso(T0 + 0.25)
    message = {**batch(stored), "serverTime": iso(T0 + 0.7)}

    ledger.record_message(message, received_at=T0 + 0.8)

    assert ledger.latency.percentile(50) == pytest.approx(0.8, abs=0.002)
    assert ledger.to_received.percentile(50) == pytest.approx(0.25, abs=0.002)
    assert ledger.waiting_for_tick.percentile(50) == pytest.approx(0.45, abs=0.002)
    assert ledger.tick_to_browser.percentile(50) == pytest.approx(0.1, abs=0.002)


# --- a message taken whole (the load driver's fast path) ---------------------------------


class ReadingByReadingLedger(ConnectionLedger):
    """The reference: every message counted one reading at a time."""

    def _all_new(self, fresh: FreshRun) -> bool:
        return False


@st.composite
def server_messages(draw: st.DrawFn) -> tuple[dict[str, Any], float]:
    """A batch as a run's browsers may get it: runs of sequence numbers, gaps, repeats,
    readings of another org's device (2) or not of this run, with or without the server's
    times, replayed or live; received at some time after it was sent."""
    readings = []
    for _ in range(draw(st.integers(1, 4))):
        device = draw(st.sampled_from([0, 1, 2]))
        first = draw(st.integers(0, 12))
        for seq in range(first, first + draw(st.integers(1, 4))):
            sent_at = T0 + seq * 0.25 + device * 0.01
            item = reading(
                device, seq, sent_at, unit=f"u{device}", recorded=sent_at - draw(st.sampled_from([0, 0.3]))
            )
            item["receivedAt"] = iso(sent_at + draw(st.sampled_from([0.05, 0.4])))
            if draw(st.booleans()) and draw(st.booleans()):
                del item["receivedAt"]
            if draw(st.integers(0, 9)) == 0:
                item["id"] = f"r-{seq}"
            readings.append(item)
    if draw(st.booleans()):
        readings.reverse()
    message = batch(*readings, replay=draw(st.booleans()))
    if draw(st.integers(0, 5)) == 0:
        del message["serverTime"]
    return message, T0 + 5 + draw(st.floats(0, 2))


def assert_same_figures(ledger: ConnectionLedger, other: ConnectionLedger, sent: dict[int, int]) -> None:
    assert ledger.summary(sent, examples=40) == other.summary(sent, examples=40)
    for histogram in ("latency", "to_received", "waiting_for_tick", "tick_to_browser"):
        assert getattr(ledger, histogram).counts == getattr(other, histogram).counts, histogram
    assert {s: h.counts for s, h in ledger.latency_by_sent_second.items()} == {
        s: h.counts for s, h in other.latency_by_sent_second.items()
    }
    assert ledger.newest_seen == other.newest_seen


@given(st.lists(server_messages(), max_size=10), st.integers(1, 8))
def test_a_message_taken_whole_counts_as_it_would_reading_by_reading(
    messages: list[tuple[dict[str, Any], float]], dedupe_capacity: int
) -> None:
    whole = ConnectionLedger("b0", devices=[0, 1], dedupe_capacity=dedupe_capacity)
    each = ReadingByReadingLedger("b0", devices=[0, 1], dedupe_capacity=dedupe_capacity)
    for message, received_at in messages:
        digest = digest_of(message)
        assert whole.record(digest, received_at) == each.record(digest, received_at)
    assert_same_figures(whole, each, sent={0: 20, 1: 20})
    # What the client's de-duplication remembers, in the order it forgets it.
    assert list(whole._dedupe._seen) == list(each._dedupe._seen)


@given(st.lists(st.tuples(server_messages(), st.booleans()), max_size=10), st.integers(1, 8))
def test_messages_held_and_counted_later_give_the_figures_of_counting_each_on_arrival(
    messages: list[tuple[tuple[dict[str, Any], float], bool]], dedupe_capacity: int
) -> None:
    held = ConnectionLedger("b0", devices=[0, 1], dedupe_capacity=dedupe_capacity)
    counted = ConnectionLedger("b0", devices=[0, 1], dedupe_capacity=dedupe_capacity)
    sent = {0: 20, 1: 20}
    for (message, received_at), look_now in messages:
        digest = digest_of(message)
        held.hold(digest, received_at)
        counted.record(digest, received_at)
        if look_now:  # the drain asks in between: what is held so far is counted then
            assert held.complete(sent) == counted.complete(sent)
    assert_same_figures(held, counted, sent)
    assert held.messages_by_second == counted.messages_by_second


def test_held_messages_are_not_counted_while_too_few_readings_have_come_to_be_complete() -> None:
    ledger = ConnectionLedger("b0", devices=[0])
    ledger.hold(digest_of(batch(reading(0, 0, T0), reading(0, 1, T0))), received_at=T0 + 1)
    assert not ledger.complete({0: 3})
    assert ledger.latency.count == 0  # still held: two deliveries cannot cover three readings
    ledger.hold(digest_of(batch(reading(0, 1, T0))), received_at=T0 + 2)
    assert not ledger.complete({0: 3})  # three deliveries, one a repeat: counted, 0.2 missing
    assert ledger.latency.count == 2
    ledger.hold(digest_of(batch(reading(0, 2, T0))), received_at=T0 + 3)
    assert ledger.complete({0: 3})
    assert ledger.summary({0: 3}).duplicated == 1


def test_a_message_of_first_arrivals_is_taken_whole_and_one_with_a_repeat_reading_by_reading() -> None:
    runs = digest_of(batch(reading(0, 3, T0), reading(0, 5, T0), reading(1, 0, T0)))
    assert runs.fresh is not None
    assert sorted((device.device, device.seqs) for device in runs.fresh.seqs) == [(0, (3, 5)), (1, (0,))]
    assert digest_of(batch(reading(0, 3, T0), reading(0, 3, T0))).fresh is None
    assert digest_of(batch(reading(0, 3, T0), {**reading(0, 4, T0), "id": "r-4"})).fresh is None
    ledger = ConnectionLedger("b0", devices=[0, 1])
    ledger.record(runs, received_at=T0 + 1)
    assert ledger.summary({0: 6, 1: 1}).missing_examples == [(0, 0), (0, 1), (0, 2), (0, 4)]
    assert ledger.latency.counts == Counter({1000: 3})
    # A repeat among new readings: that message is counted reading by reading.
    ledger.record(digest_of(batch(reading(0, 4, T0), reading(0, 5, T0))), received_at=T0 + 2)
    assert ledger.summary({0: 6, 1: 1}).duplicated == 1
    assert ledger.latency.counts == Counter({1000: 3, 2000: 1})


def test_the_same_message_bytes_are_parsed_once_for_every_browser() -> None:
    raw = orjson.dumps(batch(reading(0, 0, T0)))
    assert digest_message(raw) is digest_message(raw)
    assert digest_message(raw).readings[0].parsed == (0, 0, T0)
