"""Sharded fan-out (issue #14): which shard a connection belongs to (jump consistent hash:
stable, balanced, minimal movement), the layout's seconds and the shard count's
hysteresis; then the real flushers of several shards ticking together against the store
(tests/support/shards.py): every reading reaches every connection exactly once, in one
message a tick, across a change 1 -> 3 and 3 -> 1; a crashed shard's flusher (also a
retiring one's, and shard 0's) is replaced and nothing is lost; hand-overs lose and repeat
nothing; a throttled shard's connections are retried a tick later while the other shards
deliver on time; and under the minute schedule the shards are sized and stay sized."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import pairwise

import pytest
from hypothesis import assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from sensor_stream.roster import ConnectionRoster
from sensor_stream.sharding import ShardLayout, desired_shards, jump_hash, shard_of
from tests.support.clock import FakeClock
from tests.support.readings import reading
from tests.support.shards import Round, ShardCluster, by_shard
from tests.support.stack import InProcessStack
from tests.support.websocket import PostRecorder, unit_readings, wire

pytestmark = pytest.mark.usefixtures("stack")

keys_64 = st.integers(min_value=0, max_value=2**64 - 1)
bucket_counts = st.integers(min_value=1, max_value=5000)
connection_ids = st.text(min_size=1, max_size=24)


# --- jump consistent hash ---------------------------------------------------------------


def test_jump_hash_gives_the_reference_implementations_buckets():
    # Lamping and Veach's C++ as ported by Go's jump package, and its test vectors.
    vectors = [(1, 1, 0), (42, 57, 43), (0xDEAD10CC, 1, 0), (0xDEAD10CC, 666, 361), (256, 1024, 520)]
    vectors += [(128, 100_000_000, 38_172_097), (2**64 - 1, 128, 92)]
    assert [jump_hash(key, buckets) for key, buckets, _ in vectors] == [bucket for *_, bucket in vectors]


@given(st.integers(min_value=-(2**70), max_value=2**70), bucket_counts)
def test_jump_hash_is_a_bucket_in_range_and_the_same_every_time(key: int, buckets: int):
    bucket = jump_hash(key, buckets)

    assert 0 <= bucket < buckets
    assert jump_hash(key, buckets) == bucket
    assert jump_hash(key + 2**64, buckets) == bucket  # keys are taken as 64 bits


@given(keys_64, st.integers(min_value=1, max_value=1000))
def test_one_more_bucket_moves_a_key_only_into_the_new_bucket(key: int, buckets: int):
    before, after = jump_hash(key, buckets), jump_hash(key, buckets + 1)

    assert after in (before, buckets)


@hypothesis_settings(max_examples=25)
@given(st.integers(min_value=1, max_value=40))
def test_one_more_shard_moves_about_one_connection_in_n_plus_one(shards: int):
    ids = [f"Cx{number:09d}Q=" for number in range(4000)]

    moved = [cid for cid in ids if shard_of(cid, shards + 1) != shard_of(cid, shards)]

    expected = len(ids) / (shards + 1)
    spread = math.sqrt(len(ids) * (1 / (shards + 1)) * (shards / (shards + 1)))
    assert abs(len(moved) - expected) < 5 * spread
    assert {shard_of(cid, shards + 1) for cid in moved} <= {shards}


@hypothesis_settings(max_examples=20)
@given(st.integers(min_value=2, max_value=32))
def test_connections_spread_evenly_over_the_shards(shards: int):
    ids = [f"Cx{number:09d}Q=" for number in range(200 * shards)]

    counts = Counter(shard_of(cid, shards) for cid in ids)

    assert set(counts) == set(range(shards))
    assert max(counts.values()) < 1.4 * 200
    assert min(counts.values()) > 0.6 * 200


@given(
    st.lists(connection_ids, min_size=1, max_size=30, unique=True),
    st.lists(connection_ids, max_size=30),
    st.integers(min_value=1, max_value=32),
)
def test_a_connections_shard_depends_on_nobody_else(ids: list[str], others: list[str], shards: int):
    alone = {cid: shard_of(cid, shards) for cid in ids}
    crowd = {cid: shard_of(cid, shards) for cid in [*others, *ids, *reversed(others)]}
    # Removing connections: every other one gone.
    fewer = {cid: shard_of(cid, shards) for cid in ids[::2]}

    assert all(0 <= shard < shards for shard in alone.values())
    assert {cid: crowd[cid] for cid in ids} == alone
    assert fewer == {cid: alone[cid] for cid in ids[::2]}
    assert shard_of(ids[0], 1) == 0


def test_each_shards_roster_keeps_its_connections_as_others_come_and_go(
    stack: InProcessStack, clock: FakeClock
):
    """Every connection is in exactly one shard's roster (none beyond the shard count),
    and stays in it while other connections of its org connect and disconnect."""
    connections = {org: [stack.open(org) for _ in range(12)] for org in ("acme", "globex")}
    rosters = [ConnectionRoster(stack.store) for _ in range(4)]

    def assignment() -> dict[int, dict[str, int]]:
        placed: dict[int, dict[str, int]] = {}
        for shards in (1, 2, 3):
            placed[shards] = {}
            for shard, roster in enumerate(rosters):
                for records in roster.of_orgs(sorted(connections), clock.time(), shard, shards):
                    for record in records:
                        assert record.connection_id not in placed[shards], "in two shards"
                        placed[shards][record.connection_id] = shard
        return placed

    before = assignment()
    for org, ids in connections.items():
        for gone in ids[::3]:
            stack.disconnect(gone)
        ids[:] = [cid for cid in ids if cid not in ids[::3]] + [stack.open(org) for _ in range(5)]
    after = assignment()

    live = {cid for ids in connections.values() for cid in ids}
    for shards in (1, 2, 3):
        assert set(after[shards]) == live  # all of them, each in one shard of the count
        assert all(shard < shards for shard in after[shards].values())
        kept = set(before[shards]) & live
        assert {cid: after[shards][cid] for cid in kept} == {cid: before[shards][cid] for cid in kept}


# --- the layout and the shard count --------------------------------------------------------


layouts = st.builds(
    ShardLayout,
    shards=st.integers(min_value=1, max_value=32),
    since=st.integers(min_value=0, max_value=10_000),
    previous=st.integers(min_value=1, max_value=32),
)


@given(layouts, st.integers(min_value=-100, max_value=10_100))
def test_a_layout_counts_the_previous_shards_before_since_and_the_new_ones_from_it(
    layout: ShardLayout, second: int
):
    expected = layout.shards if second >= layout.since else layout.previous

    assert layout.count_at(second) == expected


@given(layouts, st.integers(min_value=-100, max_value=10_100), st.integers(min_value=0, max_value=50))
def test_a_range_straddles_the_change_exactly_when_it_holds_seconds_of_both_counts(
    layout: ShardLayout, first: int, length: int
):
    last = first + length
    counts = {layout.count_at(second) for second in range(first, last + 1)}

    assert layout.changes_within(first, last) == (len(counts) == 2)
    if layout.changes_within(first, last):
        # A tick that stops before the change delivers under one count.
        assert not layout.changes_within(first, layout.since - 1)
        assert layout.count_at(first) == layout.previous
        assert layout.count_at(last) == layout.shards


per_shard_values = st.integers(min_value=1, max_value=5000)
most_values = st.integers(min_value=1, max_value=64)


@st.composite
def sizings(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """(connections, current shards, per shard, most shards) with current <= most."""
    per_shard, most = draw(per_shard_values), draw(most_values)
    current = draw(st.integers(min_value=1, max_value=most))
    connections = draw(st.integers(min_value=0, max_value=per_shard * (most + 2)))
    return connections, current, per_shard, most


@given(sizings())
def test_shards_grow_at_once_to_carry_the_connections(sizing: tuple[int, int, int, int]):
    connections, current, per_shard, most = sizing
    needed = min(most, max(1, math.ceil(connections / per_shard)))

    wanted = desired_shards(connections, current, per_shard, most)

    assert 1 <= wanted <= most
    assert wanted >= needed  # no shard carries more than its share (unless at the most)
    if needed > current:
        assert wanted == needed


@given(sizings())
def test_shards_shrink_only_to_a_count_that_stays_below_seventy_percent(sizing: tuple[int, int, int, int]):
    connections, current, per_shard, most = sizing

    wanted = desired_shards(connections, current, per_shard, most)

    if wanted < current:
        assert connections < 0.7 * per_shard * (current - 1)
        assert connections < 0.7 * per_shard * wanted  # so a few more do not grow them again
    elif connections >= 0.7 * per_shard * (current - 1) and connections <= per_shard * current:
        assert wanted == current


@given(sizings(), st.floats(min_value=0, max_value=0.1))
def test_the_shard_count_does_not_flap_when_connections_hover_at_a_boundary(
    sizing: tuple[int, int, int, int], noise: float
):
    connections, current, per_shard, most = sizing
    wobble = max(1, round(noise * per_shard))  # up to 10 % of a shard's share, at least one
    assume(wobble <= per_shard / 10)
    counts = [current]
    for round_ in range(12):
        hovering = connections + (wobble if round_ % 2 else 0)
        counts.append(desired_shards(hovering, counts[-1], per_shard, most))

    changes = [later - earlier for earlier, later in pairwise(counts) if later != earlier]
    # Never back and forth: every change goes the same way, and it settles at once.
    assert all(change > 0 for change in changes) or all(change < 0 for change in changes)
    assert counts[-1] == counts[-3]
    assert len(set(counts[4:])) == 1


# --- several shards' flushers against the store -----------------------------------------

ORGS = ("acme", "globex", "initech")
# Small enough for a few dozen connections to need three shards, and a quick rhythm: the
# lease renewed every 2 s, held 6 s, the shards sized every 4 s. A restarted shard's
# flusher must reach back over the seconds its dead predecessor left (as the 900 s in AWS).
SHARDED = {
    "FLUSH_CONNECTIONS_PER_SHARD": "10",
    "FLUSH_SIZING_SECONDS": "4",
    "FLUSH_RENEW_SECONDS": "2",
    "FLUSH_LEASE_SECONDS": "6",
    "FLUSH_MAX_CATCH_UP_SECONDS": "120",
}


@pytest.fixture
def cluster(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShardCluster]:
    stack.reconfigure(monkeypatch, **SHARDED)
    system = ShardCluster(stack)
    yield system
    system.close()


class Feed:
    """Each org's devices send a reading a second; connections open per org."""

    def __init__(self, stack: InProcessStack) -> None:
        self.stack = stack
        self.sent: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.org_of: dict[str, str] = {}

    def open(self, per_org: int) -> list[str]:
        opened = []
        for org in ORGS:
            for _ in range(per_org):
                connection_id = self.stack.open(org)
                self.org_of[connection_id] = org
                opened.append(connection_id)
        return opened

    def publish(self) -> None:
        clock = self.stack.clock
        for org in ORGS:
            sent = (f"{org}-{len(self.sent[org])}", clock.iso())
            self.stack.publish_telemetry(org, f"{org}-dev", reading(*sent))
            self.sent[org].append(sent)

    def publish_bulk(self, org: str, count: int) -> None:
        """``count`` readings of ``org``, as devices send them: up to 100 a message."""
        clock = self.stack.clock
        for start in range(0, count, 100):
            batch = []
            for _ in range(min(100, count - start)):
                sent = (f"{org}-{len(self.sent[org])}", clock.iso())
                batch.append(reading(*sent))
                self.sent[org].append(sent)
            self.stack.publish_telemetry(org, f"{org}-dev", {"readings": batch})

    def received(self, connection_id: str) -> Counter[tuple[str, str]]:
        return Counter(unit_readings(self.stack.recorder.received(connection_id)))

    def missing_or_repeated(self, connection_ids: list[str]) -> dict[str, dict[str, list[tuple[str, str]]]]:
        """Per connection, what it never got and what it got more than once (empty: each
        reading of its org exactly once)."""
        faults = {}
        for connection_id in connection_ids:
            got = self.received(connection_id)
            sent = self.sent[self.org_of[connection_id]]
            missing = [pair for pair in sent if pair not in got]
            repeated = [pair for pair, times in got.items() if times > 1]
            unexpected = [pair for pair in got if pair not in sent]
            if missing or repeated or unexpected:
                faults[connection_id] = {"missing": missing, "repeated": repeated, "unexpected": unexpected}
        return faults


def assert_at_least_once(feed: Feed, connection_ids: list[str], *, after: int) -> None:
    """After a flusher crashed: nothing lost, and only what it may have posted after the
    progress it recorded (second ``after``) comes twice; a browser drops the copy by id."""
    faults = feed.missing_or_repeated(connection_ids)
    assert all(not fault["missing"] and not fault["unexpected"] for fault in faults.values())
    repeated = {_second(recorded_at) for fault in faults.values() for _, recorded_at in fault["repeated"]}
    assert all(second > after for second in repeated)


def run(
    cluster: ShardCluster, feed: Feed, rounds: int, *, publish: bool = True, one_message: bool = True
) -> list[Round]:
    """Rounds with (or without) a reading per org each second; unless told otherwise, no
    connection gets more than one message in a round."""
    done = []
    for _ in range(rounds):
        if publish:
            feed.publish()
        done.append(cluster.round())
        assert not one_message or max(done[-1].frames.values(), default=0) <= 1, "two messages in a tick"
    return done


def grow_to_three_shards(cluster: ShardCluster, feed: Feed) -> None:
    cluster.invoke(0)
    run_until(cluster, feed, lambda: cluster.layout_shards() == 3 and len(cluster.running) == 3)
    assert sorted(f.shard for f in cluster.running) == [0, 1, 2]


def three_shards(cluster: ShardCluster, stack: InProcessStack) -> tuple[Feed, list[str]]:
    """24 connections in three orgs, grown to three shards, each of which has delivered
    and recorded its progress since."""
    feed = Feed(stack)
    connections = feed.open(per_org=8)  # three shards of at most 10
    grow_to_three_shards(cluster, feed)
    run(cluster, feed, 8)
    return feed, connections


def run_until(
    cluster: ShardCluster, feed: Feed, done: Callable[[], bool], *, one_message: bool = True
) -> None:
    for _ in range(30):
        run(cluster, feed, 1, one_message=one_message)
        if done():
            return
    raise AssertionError("not within 30 rounds")


def drain(cluster: ShardCluster, feed: Feed, *, one_message: bool = True) -> None:
    """No more readings; rounds until every flusher delivered what came."""
    run(cluster, feed, 8, publish=False, one_message=one_message)


def shrink_to_one_shard(
    cluster: ShardCluster, stack: InProcessStack, feed: Feed, connections: list[str]
) -> list[str]:
    """Most browsers leave: two of each of three shards stay, few enough for one shard,
    and shard 0 changes the layout (shards 1 and 2 still deliver the seconds before)."""
    staying = [cid for ids in by_shard(connections, 3).values() for cid in ids[:2]]
    for connection_id in connections:
        if connection_id not in staying:
            stack.disconnect(connection_id)
    run_until(cluster, feed, lambda: cluster.layout_shards() == 1)
    return staying


def test_growing_from_one_shard_to_three_delivers_each_reading_once_to_each_connection(
    cluster: ShardCluster, stack: InProcessStack
):
    feed, connections = three_shards(cluster, stack)  # readings keep coming all along

    rounds = run(cluster, feed, 3)
    drain(cluster, feed)

    assert sorted(set(cluster.started)) == [1, 2]  # by shard 0, through the WorkerStarter
    assert feed.missing_or_repeated(connections) == {}
    # Once grown, each shard's flusher posts to its own connections only.
    served = {f.shard: sum(r.reports[f.owner].connections for r in rounds[-3:]) for f in cluster.running}
    owned = by_shard(connections, 3)
    assert served == {shard: 3 * len(owned[shard]) for shard in range(3)}


def test_connections_that_get_several_messages_a_tick_weigh_as_many_in_sizing(
    cluster: ShardCluster, stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
):
    """Three connections fit one shard of five, but 150 readings a second are two messages
    a tick each: six posts a second, the posting time of six connections, so two shards;
    once the readings stop, their connections alone fit one shard again."""
    stack.reconfigure(monkeypatch, FLUSH_CONNECTIONS_PER_SHARD="5")
    feed = Feed(stack)
    connections = [stack.open("acme") for _ in range(3)]
    feed.org_of.update(dict.fromkeys(connections, "acme"))
    cluster.invoke(0)
    layouts = []
    for _ in range(20):
        feed.publish_bulk("acme", 150)
        posts = cluster.round().frames
        layouts.append(cluster.layout_shards())
        if layouts[-1] == 2 and len(cluster.running) == 2:
            break
    loads = [stack.store.flush_state.for_shard(shard).read().load for shard in (0, 1)]
    drain(cluster, feed, one_message=False)
    run_until(cluster, feed, lambda: len(cluster.running) == 1)

    assert layouts[-1] == 2, f"{layouts} {loads}"
    assert max(posts.values()) == 2  # messages a tick to a connection
    assert sum(loads) >= 6  # posts a second, not the three connections
    assert cluster.layout_shards() == 1
    assert feed.missing_or_repeated(connections) == {}


def test_a_shard_catching_up_on_several_seconds_in_one_tick_is_not_sized_up(
    cluster: ShardCluster, stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
):
    """Four seconds read in one tick (the flush was held up) post many messages at once;
    per second read that is one message a connection, so one shard of five still fits."""
    stack.reconfigure(monkeypatch, FLUSH_CONNECTIONS_PER_SHARD="5")
    feed = Feed(stack)
    connections = [stack.open("acme") for _ in range(3)]
    feed.org_of.update(dict.fromkeys(connections, "acme"))
    cluster.invoke(0)
    run_until(cluster, feed, lambda: bool(feed.received(connections[0])))
    for _ in range(4):  # held up within its lease: nothing ticks, readings keep coming
        stack.clock.advance(1)
        feed.publish_bulk("acme", 100)
    layouts, loads, most_messages = [], [], 0
    for _ in range(6):  # past the next sizing (every 4 s)
        [done] = run(cluster, feed, 1, one_message=False)
        most_messages = max(most_messages, *done.frames.values())
        layouts.append(cluster.layout_shards())
        loads.append(stack.store.flush_state.read().load)
    drain(cluster, feed, one_message=False)

    assert most_messages >= 3  # several messages to a connection in the catching-up tick
    assert layouts == [1] * 6
    assert max(loads) <= 5, loads
    assert feed.missing_or_repeated(connections) == {}


def test_shrinking_from_three_shards_to_one_delivers_each_reading_once_to_each_connection(
    cluster: ShardCluster, stack: InProcessStack
):
    feed, connections = three_shards(cluster, stack)

    staying = shrink_to_one_shard(cluster, stack, feed, connections)
    run_until(cluster, feed, lambda: len(cluster.running) == 1)
    run(cluster, feed, 4)
    drain(cluster, feed)

    assert cluster.layout_shards() == 1
    assert [f.shard for f in cluster.running] == [0]  # shards 1 and 2 retired
    assert feed.missing_or_repeated(staying) == {}
    # Those that left got nothing twice (and what came after they left, not at all).
    for connection_id in set(connections) - set(staying):
        assert max(feed.received(connection_id).values(), default=1) == 1


def test_a_crashed_shard_is_restarted_by_shard_zero_and_its_connections_lose_nothing(
    cluster: ShardCluster, stack: InProcessStack
):
    feed, connections = three_shards(cluster, stack)
    started_before = len(cluster.started)

    crashed = cluster.crash(2)  # stops ticking, never releases its lease
    recorded = stack.store.flush_state.for_shard(2).read().delivered_through
    assert recorded is not None
    run_until(cluster, feed, lambda: bool(cluster.of_shard(2)))
    run(cluster, feed, 4)
    drain(cluster, feed)

    assert cluster.started[started_before:] == [2]  # shard 0 noticed the expired lease
    [successor] = cluster.of_shard(2)
    assert successor is not crashed
    owned = by_shard(connections, 3)
    others = [*owned[0], *owned[1]]
    assert feed.missing_or_repeated(others) == {}
    assert_at_least_once(feed, owned[2], after=recorded)


def test_hand_over_of_every_shard_to_the_next_invocation_loses_and_repeats_nothing(
    cluster: ShardCluster, stack: InProcessStack
):
    feed, connections = three_shards(cluster, stack)
    first_generation = {f.shard: f.owner for f in cluster.running}

    started_before = len(cluster.started)
    cluster.invoke(0)  # the schedule's next invocation: it starts a successor for every shard
    assert [f.shard for f in cluster.waiting] == [0]
    assert cluster.started[started_before:] == [1, 2]
    run_until(cluster, feed, lambda: not cluster.waiting and len(cluster.running) == 3)
    run(cluster, feed, 4)
    drain(cluster, feed)

    assert cluster.waiting == []
    assert sorted(f.shard for f in cluster.running) == [0, 1, 2]
    assert not {f.owner for f in cluster.running} & set(first_generation.values())
    assert feed.missing_or_repeated(connections) == {}
    assert stack.recorder.deleted == []  # no connection closed by the hand-over


@pytest.mark.parametrize("throttled_shard", [0, 1, 2])
def test_throttled_posts_of_one_shard_are_retried_a_tick_later_while_other_shards_deliver_on_time(
    cluster: ShardCluster, stack: InProcessStack, posts: PostRecorder, throttled_shard: int
):
    feed, connections = three_shards(cluster, stack)
    owned = by_shard(connections, 3)
    throttled = owned[throttled_shard]
    on_time = [cid for cid in connections if cid not in throttled]
    posts.failure = ("LimitExceededException", 429)
    posts.failing.update(throttled)  # API Gateway answers 429 to this shard's posts

    during = run(cluster, feed, 3)
    posts.failing.clear()
    after = run(cluster, feed, 2)
    drain(cluster, feed)

    for round_ in during:
        # Every other connection had the round's readings in the round itself ...
        assert all(round_.frames[cid] == 1 for cid in on_time)
        # ... and each throttled one was tried once a tick, not hammered.
        assert all(round_.frames[cid] == 0 and round_.refused[cid] == 1 for cid in throttled)
    throttled_reports = [
        report
        for round_ in during
        for owner, report in round_.reports.items()
        if owner.startswith(f"shard{throttled_shard}-")
    ]
    assert sum(report.fanout.posts_throttled for report in throttled_reports) == 3 * len(throttled)
    # The next tick after the throttling ended: one message with all they waited for.
    assert all(after[0].frames[cid] == 1 for cid in connections)
    assert feed.missing_or_repeated(connections) == {}
    assert posts.deleted == []


def test_under_the_schedule_shard_zero_sizes_the_shards_and_hand_overs_do_not_shrink_them(
    cluster: ShardCluster, stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
):
    # As in AWS, scaled down: a new shard 0 invocation each "minute" (20 s) takes over from
    # the running one, and the sizing period is as long (lease and renewal as 30 s : 10 s).
    minute = 20
    stack.reconfigure(
        monkeypatch, FLUSH_SIZING_SECONDS=str(minute), FLUSH_RENEW_SECONDS="5", FLUSH_LEASE_SECONDS="15"
    )
    feed = Feed(stack)
    connections = feed.open(per_org=8)

    counts = []
    for _ in range(3):
        cluster.invoke(0)  # the schedule (it also starts a successor for every other shard)
        for _ in range(minute):
            run(cluster, feed, 1)
            counts.append(cluster.layout_shards())
    drain(cluster, feed)

    assert 3 in counts[: 2 * minute], counts  # sized at each invocation, not never
    grown = counts.index(3)
    assert set(counts[grown:]) == {3}  # not sized down by successors that knew no connections yet
    assert feed.missing_or_repeated(connections) == {}


def test_a_retiring_shard_retries_its_throttled_posts_before_it_stops(
    cluster: ShardCluster, stack: InProcessStack, posts: PostRecorder
):
    feed, connections = three_shards(cluster, stack)
    staying = shrink_to_one_shard(cluster, stack, feed, connections)
    since = stack.store.flush_state.read().layout.since
    # API Gateway throttles shard 2's posts of its last seconds before the change ...
    posts.failing.update(cid for cid in staying if shard_of(cid, 3) == 2)
    run_until(cluster, feed, lambda: stack.clock.time() > since + 2, one_message=False)
    assert cluster.of_shard(2)  # ... so it does not stop yet, though its seconds are done
    posts.failing.clear()
    run_until(cluster, feed, lambda: not cluster.of_shard(2), one_message=False)
    drain(cluster, feed, one_message=False)

    assert posts.deleted == []  # not closed for a throttled post when the shard retired
    assert feed.missing_or_repeated(staying) == {}
    assert stack.store.flush_state.for_shard(2).read().delivered_through == since - 1


def test_a_crashed_retiring_shard_is_restarted_to_finish_its_seconds(
    cluster: ShardCluster, stack: InProcessStack
):
    feed, connections = three_shards(cluster, stack)
    staying = shrink_to_one_shard(cluster, stack, feed, connections)
    layout = stack.store.flush_state.read().layout
    cluster.crash(2)  # before it delivered the seconds before the change
    recorded = stack.store.flush_state.for_shard(2).read().delivered_through
    assert recorded is not None
    assert recorded < layout.since - 1

    # The restarted shard 2 catches up while shard 0 already posts the later seconds to
    # its former connections: a tick may then bring them two messages.
    run_until(
        cluster, feed, lambda: cluster.started[-1:] == [2] and not cluster.of_shard(2), one_message=False
    )
    drain(cluster, feed)

    assert feed.missing_or_repeated([cid for cid in staying if shard_of(cid, 3) != 2]) == {}
    assert_at_least_once(feed, [cid for cid in staying if shard_of(cid, 3) == 2], after=recorded)
    assert stack.store.flush_state.for_shard(2).read().delivered_through == layout.since - 1


def test_when_shard_zero_dies_the_others_wait_at_what_it_announced_and_nothing_is_lost(
    cluster: ShardCluster, stack: InProcessStack
):
    feed, connections = three_shards(cluster, stack)

    cluster.crash(0)
    zero = stack.store.flush_state.read()
    announced, recorded = zero.read_through, zero.delivered_through
    assert announced is not None
    assert recorded is not None
    stalled = run(cluster, feed, 10)
    cluster.invoke(0)  # the schedule's next invocation takes over once the lease expired
    run_until(cluster, feed, lambda: not cluster.waiting and len(cluster.running) == 3)
    run(cluster, feed, 3)
    drain(cluster, feed)

    assert (
        max(second for r in stalled for report in r.reports.values() for second in report.seconds)
        <= announced
    )
    owned = by_shard(connections, 3)
    assert feed.missing_or_repeated([*owned[1], *owned[2]]) == {}
    assert_at_least_once(feed, owned[0], after=recorded)


def _second(recorded_at: str) -> int:
    """The arrival second of a reading the Feed sent (recorded when it was sent)."""
    return math.floor(datetime.fromisoformat(recorded_at).timestamp())


# --- alerts with several shards ------------------------------------------------------------

WARM_FREEZER = {"metric": "temperature", "max": -15, "unitId": "freezer-9", "severity": "critical"}


def alert_notices(stack: InProcessStack, connection_id: str) -> list[dict[str, object]]:
    return [m for m in wire(stack.recorder.received(connection_id)) if m["type"].startswith("alert:")]


@pytest.mark.parametrize("write_lands_late", [False, True], ids=["in time", "late"])
def test_an_alert_that_shard_0_evaluates_reaches_the_org_browsers_of_every_shard(
    cluster: ShardCluster, stack: InProcessStack, monkeypatch: pytest.MonkeyPatch, write_lands_late: bool
):
    feed, connections = three_shards(cluster, stack)
    stack.put_rule("acme", "warm", **WARM_FREEZER)
    run(cluster, feed, 2)
    if write_lands_late:
        # The alert entry's write completes after the other shards may have read its second
        # (shard 0's tick ran long): the flush writes it again into the current second.
        queue_alerts = stack.store.readings.queue_alerts
        written: list[int] = []

        def slow_write(lines_by_org: dict[str, list[str]], second: int, entry_id: str) -> None:
            queue_alerts(lines_by_org, second, entry_id)
            written.append(second)
            if len(written) == 1:
                stack.clock.advance(1.5)

        monkeypatch.setattr(stack.store.readings, "queue_alerts", slow_write)

    stack.publish_telemetry("acme", "acme-dev", reading("freezer-9", stack.clock.iso(), temperature=-2.0))
    run(cluster, feed, 4, one_message=False)

    acme = [cid for cid in connections if feed.org_of[cid] == "acme"]
    assert {shard_of(cid, 3) for cid in acme} == {0, 1, 2}, "the org's browsers are on every shard"
    for connection_id in connections:
        triggered = [n for n in alert_notices(stack, connection_id) if n["type"] == "alert:triggered"]
        if connection_id in acme:
            assert {n["ruleId"] for n in triggered} == {"warm"}, connection_id
        else:
            assert triggered == [], "another org's alert"
    if write_lands_late:
        assert len(written) == 2
        assert written[1] > written[0]
