"""Fan-out shards in-process: the flushers of every shard ticking in lockstep on the fake
clock, started the way the flush function starts them in AWS.

Each ``Flusher`` here stands for one invocation of the flush function. Shard 0's is built
with a WorkerStarter that records the shard to start; the next round invokes it (as
Lambda's asynchronous invoke would, a moment later): a new Flusher that takes the lease
or waits as the successor, exactly as ``Flusher.run`` does before its loop. A round lets
a second pass, lets waiting successors look for the lease, ticks every running flusher
(shard 0 first), and does with each report what ``Flusher.run`` does: stop when the lease
is lost, finish when the shard retired, hand over to a successor that rang.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import count

from sensor_stream import clients
from sensor_stream.delivery import Flusher, TickReport
from sensor_stream.sharding import shard_of

from .stack import InProcessStack, settle


@dataclass
class Round:
    """What one round did: each flusher's report (by owner) and the frames each connection
    was posted."""

    reports: dict[str, TickReport] = field(default_factory=dict)
    frames: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)


class ShardCluster:
    def __init__(self, stack: InProcessStack) -> None:
        self.stack = stack
        self.running: list[Flusher] = []
        self.waiting: list[Flusher] = []
        # Stopped without a word (crashed): never ticked, closed, or released again.
        self.crashed: list[Flusher] = []
        # Shards the WorkerStarter was asked to start, in order (every call).
        self.started: list[int] = []
        self._to_start: list[int] = []
        self._every: list[Flusher] = []
        self._numbers = count(1)

    # --- invocations ----------------------------------------------------------------------

    def start_worker(self, shard: int) -> None:
        """The WorkerStarter: an asynchronous invoke, run at the start of the next round."""
        self.started.append(shard)
        self._to_start.append(shard)

    def invoke(self, shard: int) -> Flusher | None:
        """One invocation of the flush function for ``shard`` (0: the schedule's), up to
        where ``Flusher.run`` starts ticking; None when it left at once (a successor waits)."""
        stack = self.stack
        flusher = Flusher(
            stack.store,
            clients.fanout_gateway(),
            stack.settings,
            clock=stack.clock.time,
            sleep=stack.clock.sleep,
            owner=f"shard{shard}-{next(self._numbers)}",
            shard=shard,
            start_worker=self.start_worker if shard == 0 else None,
        )
        self._every.append(flusher)
        if flusher.coordinator is not None:
            flusher.coordinator.start_successors(stack.store.flush_state.read().layout)
        if flusher.try_lease() is not None:
            self.running.append(flusher)
        elif flusher.wait_as_successor():
            self.waiting.append(flusher)
        else:
            return None
        return flusher

    def crash(self, shard: int) -> Flusher:
        """The running flusher of ``shard`` dies: it stops ticking and tells nobody."""
        [flusher] = [f for f in self.running if f.shard == shard]
        self.running.remove(flusher)
        self.crashed.append(flusher)
        return flusher

    def of_shard(self, shard: int) -> list[Flusher]:
        return [f for f in self.running if f.shard == shard]

    # --- rounds ---------------------------------------------------------------------------

    def round(self, seconds: float = 1.0) -> Round:
        """Let ``seconds`` pass, then one tick of every running flusher; each tick's posts
        end before the next flusher ticks."""
        stack = self.stack
        stack.clock.advance(seconds)
        to_start, self._to_start = self._to_start, []
        for shard in to_start:
            self.invoke(shard)
        for flusher in list(self.waiting):
            if flusher.poll_for_lease() is not None:
                self.waiting.remove(flusher)
                self.running.append(flusher)
        posted, refused = len(stack.recorder.posts), len(stack.recorder.refused)
        now = stack.clock.time()
        outcome = Round()
        for flusher in sorted(self.running, key=lambda f: f.shard):
            report = flusher.tick(now)
            outcome.reports[flusher.owner] = report
            # Its posts end before anything else happens (a healthy network), so that a
            # hand-over never finds one in flight on a slow machine.
            settle(flusher)
            if report.lease_lost:
                self.running.remove(flusher)
            elif report.retired:
                flusher.finish()
                self.running.remove(flusher)
            elif report.successor not in (None, flusher.owner) and flusher.hand_over(str(report.successor)):
                self.running.remove(flusher)
        outcome.frames.update(post.connection_id for post in stack.recorder.posts[posted:])
        outcome.refused.update(post.connection_id for post in stack.recorder.refused[refused:])
        return outcome

    def layout_shards(self) -> int:
        return self.stack.store.flush_state.read().layout.shards

    def close(self) -> None:
        for flusher in self._every:
            flusher.close()


def by_shard(connection_ids: list[str], shards: int) -> dict[int, list[str]]:
    """The connections of each shard of ``shards``."""
    owned: dict[int, list[str]] = {shard: [] for shard in range(shards)}
    for connection_id in connection_ids:
        owned[shard_of(connection_id, shards)].append(connection_id)
    return owned
