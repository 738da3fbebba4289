"""The cost model (benchmarks/cost.py) against the requests the real handlers make: a
small run of benchmarks/request_counts.py in-process, the same counting as `make cost`."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace

import boto3
import pytest

from benchmarks import cost
from benchmarks.request_counts import ENVIRONMENT, CountedRun, Usage, UsageMeter, Workload, measure

RECORDED = cost.Measured()


@pytest.fixture(scope="module")
def runs() -> dict[int, CountedRun]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in ENVIRONMENT.items():
            monkeypatch.setenv(name, value)  # restored after the runs
        return {
            1: measure(Workload("single", 40, 1, units=2, browsers=3, messages_per_second=20, devices=2)),
            10: measure(Workload("ten", 8, 10, units=2, browsers=3, messages_per_second=4, devices=2)),
        }


def registry_items(usage: Usage) -> int:
    return cost.registry_items(usage)


@pytest.mark.parametrize("per_message", [1, 10])
def test_write_requests_per_reading_are_the_models(runs: dict[int, CountedRun], per_message: int):
    run = runs[per_message]

    assert run.ingest.writes / run.workload.readings == pytest.approx(
        cost.write_requests_per_reading(per_message)
    )
    assert run.ingest.reads == 0


def test_the_recorded_request_counts_are_the_models():
    assert RECORDED.write_requests_single == cost.write_requests_per_reading(1) <= 2.0
    assert RECORDED.write_requests_batch10 == pytest.approx(cost.write_requests_per_reading(10))
    assert cost.write_requests_per_reading(10) <= 1.15


@pytest.mark.parametrize("per_message", [1, 10])
def test_write_units_per_reading_are_the_models(runs: dict[int, CountedRun], per_message: int):
    run = runs[per_message]
    readings = run.workload.readings
    measured = (run.ingest.write_units - registry_items(run.ingest)) / readings

    assert measured == pytest.approx(cost.write_units_per_reading(RECORDED, per_message, registry=False))


@pytest.mark.parametrize("per_message", [1, 10])
def test_each_message_rewrites_the_registry_item_of_its_units(runs: dict[int, CountedRun], per_message: int):
    run = runs[per_message]
    units_per_message = min(per_message, run.workload.units)

    assert run.ingest.items_put["UNITS"] == run.workload.messages * units_per_message
    assert run.ingest.item_bytes("UNITS") == pytest.approx(RECORDED.unit_registry_item_bytes, rel=0.05)


def test_item_sizes_are_the_recorded_ones(runs: dict[int, CountedRun]):
    single, ten = runs[1], runs[10]

    assert single.ingest.item_bytes("UNIT") == pytest.approx(RECORDED.history_item_bytes, rel=0.05)
    assert single.ingest.item_bytes("OUTBOX") == pytest.approx(RECORDED.entry_bytes_first_reading, rel=0.05)
    assert ten.ingest.item_bytes("OUTBOX") == pytest.approx(cost.entry_bytes(RECORDED, 10), rel=0.05)
    assert single.connect.item_bytes("ORGCONNS") == pytest.approx(RECORDED.connection_item_bytes, rel=0.05)
    per_reading = single.posted_bytes / (single.workload.readings * single.workload.browsers)
    assert per_reading == pytest.approx(RECORDED.posted_bytes_per_reading, rel=0.1)


def test_an_idle_tick_costs_what_the_model_says(runs: dict[int, CountedRun]):
    run = runs[1]

    assert (run.idle.reads + run.idle.writes) / run.idle_ticks == pytest.approx(
        RECORDED.flush_idle_requests_per_tick
    )
    # The outbox query (one shard), or every tenth tick the lease renewal instead.
    assert run.idle.requests == {"Query": 27, "UpdateItem": 3}


def test_the_scenarios_price_this_design_below_both_others():
    for inputs in cost.SCENARIOS.values():
        ours, naive, appsync = cost.bills(inputs)
        assert ours.total < naive.total
        assert ours.total < appsync.total


def test_the_meter_counts_every_request_sent_from_many_threads():
    """The store's thread pool sends a message's history puts at once; no count is lost."""
    meter = UsageMeter(boto3.client("dynamodb", region_name="eu-west-1"))
    history_item = {"pk": {"S": "UNIT#acme#unit-1"}, "sk": {"S": "t"}, "data": {"S": "x" * 1500}}
    put_item = SimpleNamespace(name="PutItem")
    threads, puts = 8, 500

    def send() -> None:
        for _ in range(puts):
            meter.count(model=put_item, parsed={}, context={"cost_params": {"Item": history_item}})

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        workers = [threading.Thread(target=send) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)

    usage = meter.usage("other")
    assert usage.requests["PutItem"] == threads * puts
    assert usage.items_put["UNIT"] == threads * puts
    assert usage.write_units == 2 * threads * puts  # 1.5 KB items: 2 write units each
