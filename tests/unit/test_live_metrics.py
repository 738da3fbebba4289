"""The live path's metrics as the flush publishes them: one EMF record per tick with its
tick count and duration, and the end-to-end lag of each post (receivedAt -> post) as a
high-resolution metric."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sensor_stream.delivery import LAG_SAMPLES_PER_TICK, spread
from tests.support.clock import FakeClock
from tests.support.readings import reading
from tests.support.stack import InProcessStack


def emf_records(output: str) -> list[dict[str, Any]]:
    records = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            records.append(json.loads(line))
    return records


def metric(records: list[dict[str, Any]], name: str) -> tuple[list[float], dict[str, Any]]:
    """Every value of ``name`` across the records, and its definition."""
    values: list[float] = []
    definition: dict[str, Any] = {}
    for record in records:
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for found in directive["Metrics"]:
                if found["Name"] == name:
                    definition = {
                        **found,
                        "Namespace": directive["Namespace"],
                        "Dimensions": directive["Dimensions"],
                    }
                    value = record[name]
                    values += value if isinstance(value, list) else [value]
    return values, definition


def test_each_tick_publishes_its_count_duration_and_the_lag_of_its_posts(
    stack: InProcessStack, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = stack.open("acme"), stack.open("acme")
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    clock.advance(0.5)
    stack.publish_telemetry("acme", "dev-1", reading("u2", clock.iso()))
    capsys.readouterr()

    stack.deliver()  # 1 s + grace after the second reading: 1.6 s after the first

    records = emf_records(capsys.readouterr().out)
    assert len(records) == 1, "one record per tick, stamped with the tick's time"
    ticks, _ = metric(records, "FlushTicks")
    assert ticks == [1.0]
    durations, duration = metric(records, "FlushTickDuration")
    (tick_duration,) = durations
    assert tick_duration >= 0
    assert duration["Unit"] == "Milliseconds"
    lags, lag = metric(records, "EndToEndLag")
    # One post per connection; each carries both readings, the oldest arrived 1.6 s ago.
    assert sorted(lags) == pytest.approx([1600.0, 1600.0], abs=5)
    assert (lag["Unit"], lag["StorageResolution"]) == ("Milliseconds", 1)
    assert (lag["Namespace"], lag["Dimensions"]) == ("SensorStream", [["stage", "service"]])
    assert {first, second} <= stack.recorder.connection_ids()


def test_posts_that_fail_have_no_lag(
    stack: InProcessStack, clock: FakeClock, capsys: pytest.CaptureFixture[str]
):
    broken = stack.open("acme")
    stack.recorder.failing.add(broken)
    stack.publish_telemetry("acme", "dev-1", reading("u1", clock.iso()))
    capsys.readouterr()

    stack.deliver()
    stack.deliver()  # the failed post's outcome is counted by the tick after it ended

    records = emf_records(capsys.readouterr().out)
    assert metric(records, "EndToEndLag")[0] == []
    assert sum(metric(records, "PostsThrottled")[0]) >= 1


def test_an_idle_tick_still_counts_and_times_itself(
    stack: InProcessStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.deliver()

    records = emf_records(capsys.readouterr().out)
    assert metric(records, "FlushTicks")[0] == [1.0]
    assert len(metric(records, "FlushTickDuration")[0]) == 1
    assert metric(records, "EndToEndLag")[0] == []


def test_many_lags_are_spread_over_their_range() -> None:
    lags = [float(value) for value in range(1000, 0, -1)]

    sample = spread(lags, LAG_SAMPLES_PER_TICK)

    assert len(sample) == LAG_SAMPLES_PER_TICK == 100
    assert (min(sample), max(sample)) == (1.0, 1000.0)
    assert sample == sorted(sample)
    assert sample[49] == pytest.approx(500, abs=10)  # the median survives
    assert spread([3.0, 1.0], 100) == [3.0, 1.0]


@pytest.mark.parametrize("disabled", [False, True], ids=["published", "disabled"])
def test_a_hundred_lag_values_print_only_when_metrics_are_on(
    disabled: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from sensor_stream.observability import metrics

    if disabled:  # as the local stack runs its functions
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for lag in range(150):
        metrics.add_metric(name="EndToEndLag", unit="Milliseconds", value=lag, resolution=1)
    metrics.clear_metrics()

    values, _ = metric(emf_records(capsys.readouterr().out), "EndToEndLag")
    assert values == ([] if disabled else [float(lag) for lag in range(100)])
