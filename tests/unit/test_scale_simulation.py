"""``make scale``'s simulation (benchmarks/scale.py) run tiny: the real flushers of two
fan-out shards, started as in AWS (shard 0's coordinator starts shard 1), deliver every
reading of its org to each connection exactly once, and the counts agree. No timing is
asserted (the machine is shared)."""

from __future__ import annotations

import json

import pytest

from benchmarks.scale import Latency, ScaleConfig, Simulation, SizeResult, pick_shards, simulate


@pytest.fixture(scope="module")
def tiny() -> tuple[SizeResult, Simulation]:
    return simulate(
        ScaleConfig(
            connections=50,
            orgs=5,
            warmup_ticks=1,
            ticks=3,
            real_shards=2,
            post_latency=Latency(2, 10),
            dynamo_latency=Latency(0.5, 2),
            readings_per_org=2,
            # 25 connections per shard: shard 0's sizing asks for two.
            settings={"FLUSH_CONNECTIONS_PER_SHARD": "25"},
            record_payloads=True,
        )
    )


def received_ids(frames: list[bytes]) -> list[str]:
    return [
        reading["id"]
        for frame in frames
        for batch in json.loads(frame)["batches"]
        for reading in batch["readings"]
    ]


def test_two_shards_run_and_shard_zero_started_the_other(tiny: tuple[SizeResult, Simulation]):
    result, simulation = tiny

    assert (result.shards, result.real_shards) == (2, [0, 1])
    assert 1 in simulation.started_workers
    assert (result.tick_failures, result.empty_ticks, result.measured_ticks) == (0, 0, 2 * 3)
    assert all(len(simulation.ticks[shard]) == 1 + 3 + 1 for shard in (0, 1))


def test_every_connection_gets_each_reading_of_its_org_once_from_its_own_shard(
    tiny: tuple[SizeResult, Simulation],
):
    _, simulation = tiny
    payloads = simulation.gateway.payloads

    for connection_id, org in simulation.population.items():
        shard = simulation.shard_of[connection_id]
        seconds = [s for tick in simulation.ticks[shard] if tick.report for s in tick.report.seconds]
        expected = [rid for second in seconds for rid in simulation.readings.get((org, second), [])]
        received = received_ids(payloads[connection_id])
        assert expected
        assert sorted(received) == sorted(expected), connection_id


def test_counts_agree(tiny: tuple[SizeResult, Simulation]):
    result, simulation = tiny
    reports = [tick.report for shard in (0, 1) for tick in simulation.ticks[shard] if tick.report]

    assert sum(simulation.gateway.posted.values()) == (
        sum(report.fanout.messages_sent for report in reports) + simulation.leftover_messages
    )
    # One message per connection per tick, nothing throttled or closed.
    assert result.messages_per_connection_tick == pytest.approx(1.0)
    assert (result.throttled_share, result.connections_closed) == (0, 0)
    assert result.posts_per_second > 0
    assert result.dynamo_reads_per_tick > 0


def test_real_shards_are_spread_and_include_shard_zero():
    assert pick_shards(1, 32) == [0]
    assert pick_shards(3, 1) == [0]
    assert pick_shards(2, 10) == [0, 9]
    assert pick_shards(3, 5) == [0, 2, 4]
