"""Posting each tick's readings to the connections that want them, so that a slow, dead
or throttled connection costs only itself.

Every connection has a lane with at most one post in flight. Readings for a lane whose
post is still in flight wait for the next tick (one message per connection per tick);
a post that fails is retried on the next tick with whatever arrived meanwhile; a lane
that has taken nothing for FLUSH_STALLED_CONNECTION_SECONDS, or whose posts keep
failing, is closed: its browser reconnects and resumes, so nothing is lost to it.
A 410 within CONNECT_GRACE_SECONDS of $connect is a handshake still in progress (API
Gateway answers 410 until it completes), not a gone connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from .gateway import ConnectionGateway
from .models import ConnectionRecord
from .observability import logger
from .packing import PackedMessages, PackedReading, TickPacking
from .settings import Settings
from .store import SensorStore

# Closes of connections (Management API DELETE and the record's deletion) at once: rare.
CLOSING_THREADS = 16
# Posts that failed for reasons other than throttling before the lane is closed.
MAX_POST_FAILURES = 3
# Readings a lane may hold back before it is closed (its browser resumes instead).
MAX_LANE_BACKLOG = 20_000
_THROTTLED = {"LimitExceededException", "TooManyRequestsException", "ThrottlingException", "429"}


class TickSettlement:
    """Counts the posts of one tick still in flight; settled when all have ended."""

    def __init__(self, first_second: int, last_second: int) -> None:
        # The arrival seconds the tick read (first > last: none, only notices).
        self.first_second = first_second
        self.last_second = last_second
        self._open = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._open += 1

    def done(self) -> None:
        with self._lock:
            self._open -= 1

    @property
    def settled(self) -> bool:
        with self._lock:
            return self._open == 0


@dataclass
class FanoutCounts:
    messages_sent: int = 0
    posts_failed: int = 0
    posts_throttled: int = 0
    connections_gone: int = 0
    connections_closed: int = 0
    # End-to-end lag of each post that went out: seconds from the oldest posted reading's
    # receivedAt (ingest) until the post completed.
    lags: list[float] = field(default_factory=list)

    def add(self, other: FanoutCounts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Lane:
    record: ConnectionRecord
    # The readings waiting, as the lists delivered (each a tick's list that the org's other
    # lanes hold too; never changed): lanes behind alike hold the same lists, so their
    # parcels are packed once (TickPacking), however long the backlog.
    waiting: list[list[PackedReading]] = field(default_factory=list)
    # The smallest receivedAt of ``waiting`` (format_time texts sort as times).
    oldest_received: str | None = None
    # Other messages for the next post, as posted (alert:triggered/resolved), in order.
    notices: list[bytes] = field(default_factory=list)
    waiting_for: list[TickSettlement] = field(default_factory=list)
    in_flight: Future[None] | None = None
    # What the post in flight carries.
    parcel: _Parcel | None = None
    # Whether the post in flight has left the flush's own queue (it holds a posting slot).
    posting: bool = False
    # Handed to the successor while its post waited for a slot: that post is not sent.
    recalled: bool = False
    # Since when readings have been waiting on a post in flight or a failed one.
    blocked_since: float | None = None
    failures: int = 0
    closed: bool = False
    # Closed while its post was in flight: the connection is closed once the post ended.
    close_after_post: bool = False


@dataclass
class _Parcel:
    """What one post carries, and the ticks it settles."""

    readings: list[list[PackedReading]]
    oldest_received: str | None
    notices: list[bytes]
    settlements: list[TickSettlement]


class Fanout:
    def __init__(
        self,
        store: SensorStore,
        gateway: ConnectionGateway,
        settings: Settings,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._settings = settings
        self._clock = clock
        assert gateway.posts_async, "the fan-out posts on an event loop"
        # Posts run on one event loop, at most FLUSH_POST_CONCURRENCY at once: no thread a
        # post (a thread each cost ~40 % more CPU a post, docs/posting.md).
        self._loop = asyncio.new_event_loop()
        self._posting_slots = asyncio.Semaphore(settings.flush_post_concurrency)
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="posts", daemon=True)
        self._loop_thread.start()
        # Closes and record deletions block (DynamoDB, a DELETE): off the loop.
        self._pool = ThreadPoolExecutor(max_workers=CLOSING_THREADS, thread_name_prefix="close")
        self._lanes: dict[str, _Lane] = {}
        # Connections whose lanes were handed to a successor (hand_over_lanes).
        self._handed: list[ConnectionRecord] = []
        self._closing: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._counts = FanoutCounts()
        self._packing = TickPacking()
        # Lanes with a post in flight (in_flight() is polled while a tick waits).
        self._posts_in_flight = 0
        # The oldest receivedAt of each readings list delivered since the last dispatch:
        # the lanes of one org's whole-org subscribers share one list.
        self._oldest_of: dict[int, str] = {}

    def close(self) -> None:
        """Every post started or queued ends first (each has its timeout), as do the closes
        of lanes closed while posting: a lane closed at a hand-over still gets what it
        took, then its browser resumes. Then the loop's connections are closed on it (a
        warm environment's next invocation runs another loop), and it stops."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._wind_down(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join()
        self._loop.close()
        self._pool.shutdown(wait=True)

    async def _wind_down(self) -> None:
        posts = asyncio.all_tasks() - {asyncio.current_task()}
        if posts:
            await asyncio.wait(posts)
        self._gateway.close_posting_connections()
        await asyncio.sleep(0)  # the transports' closes run

    def take_counts(self) -> FanoutCounts:
        with self._lock:
            counts, self._counts = self._counts, FanoutCounts()
        return counts

    # --- each tick ------------------------------------------------------------------------

    def deliver(
        self,
        record: ConnectionRecord,
        readings: list[PackedReading],
        tick: TickSettlement,
        notices: list[bytes] | None = None,
    ) -> None:
        """Queue readings (and other messages) for a connection; they go out now unless a
        post is in flight. ``readings`` is not changed afterwards: lanes share it (one
        packing and one scan for the oldest for all of them)."""
        with self._lock:
            lane = self._lanes.get(record.connection_id)
            if lane is None or lane.closed:
                lane = self._lanes[record.connection_id] = _Lane(record)
            lane.record = record
            if readings:
                if id(readings) not in self._oldest_of:
                    self._oldest_of[id(readings)] = min(r.received_at for r in readings)
                oldest = self._oldest_of[id(readings)]
                lane.waiting.append(readings)
                lane.oldest_received = _earliest(lane.oldest_received, oldest)
            lane.notices.extend(notices or ())
            lane.waiting_for.append(tick)
            tick.add()

    def dispatch(self, server_time: datetime) -> None:
        """Start a post on every lane that has readings waiting and none in flight; close
        lanes that stalled."""
        now = self._clock()
        to_close: list[_Lane] = []
        with self._lock:
            for lane in self._lanes.values():
                if lane.closed or not (lane.waiting or lane.notices):
                    continue
                if lane.in_flight is not None and not lane.posting:
                    # Queued behind other connections' posts: the flush is behind, not
                    # this browser (it degrades by falling behind, never by dropping it).
                    lane.blocked_since = None
                elif lane.in_flight is not None and lane.blocked_since is None:
                    lane.blocked_since = now
                blocked_for = now - lane.blocked_since if lane.blocked_since is not None else 0.0
                if blocked_for > self._settings.flush_stalled_connection_seconds or (
                    sum(map(len, lane.waiting)) > MAX_LANE_BACKLOG
                ):
                    to_close.append(lane)
                elif lane.in_flight is None:
                    parcel = _Parcel(lane.waiting, lane.oldest_received, lane.notices, lane.waiting_for)
                    lane.waiting, lane.oldest_received, lane.notices, lane.waiting_for = [], None, [], []
                    lane.parcel = parcel
                    self._posts_in_flight += 1
                    lane.in_flight = asyncio.run_coroutine_threadsafe(
                        self._post(lane, parcel, server_time), self._loop
                    )
            self._oldest_of.clear()
            for lane in to_close:
                self._close_lane(lane, reason="stalled")
            # Lanes with nothing waiting and nothing in flight are forgotten.
            for connection_id in [
                cid
                for cid, lane in self._lanes.items()
                if lane.closed or (not lane.waiting and not lane.notices and not lane.in_flight)
            ]:
                del self._lanes[connection_id]

    def in_flight(self) -> int:
        """Posts, and closes of connections, not ended yet."""
        with self._lock:
            if self._closing:
                self._closing = {future for future in self._closing if not future.done()}
            return self._posts_in_flight + len(self._closing)

    def waiting(self) -> bool:
        """Whether any lane has readings or notices waiting for a post."""
        with self._lock:
            return any(not lane.closed and (lane.waiting or lane.notices) for lane in self._lanes.values())

    def abandon_in_flight(self) -> None:
        """Lanes whose post has not ended are closed (their browsers resume)."""
        with self._lock:
            for lane in list(self._lanes.values()):
                if lane.in_flight is not None or lane.waiting or lane.notices:
                    self._close_lane(lane, reason="hand-over")

    def recall_queued_posts(self) -> None:
        """Hand-over, once the lanes had their time: posts still waiting for a posting slot
        (a flush that is behind) are not sent; what they carry goes back to its lane, to be
        handed over with what waits there (``hand_over_lanes``)."""
        with self._lock:
            for lane in self._lanes.values():
                parcel = lane.parcel
                if lane.in_flight is None or lane.posting or lane.recalled or parcel is None:
                    continue
                lane.recalled = True  # _post lets it go
                lane.waiting[:0] = parcel.readings
                lane.oldest_received = _earliest(lane.oldest_received, parcel.oldest_received)
                lane.notices[:0] = parcel.notices
                lane.waiting_for[:0] = parcel.settlements

    def hand_over_lanes(self, most: int) -> dict[str, int]:
        """Hand-over: the lanes holding readings no post took (a flush that is behind), each
        as the first arrival second it still waits for. The successor posts those seconds'
        readings to them before anything newer, so neither a close nor a resume's bound
        loses any. Lanes whose post has not ended, that hold alert notices (not in the
        outbox to read again), or past ``most`` are closed: their browsers resume."""
        handed: dict[str, int] = {}
        with self._lock:
            for lane in list(self._lanes.values()):
                if lane.closed or not (lane.in_flight is not None or lane.waiting or lane.notices):
                    continue
                # A recalled post ends without sending, whenever it gets its slot.
                posting = lane.in_flight is not None and not lane.recalled
                if posting or lane.notices or not lane.waiting_for or len(handed) >= most:
                    self._close_lane(lane, reason="hand-over")
                    continue
                handed[lane.record.connection_id] = min(t.first_second for t in lane.waiting_for)
                self._handed.append(lane.record)
                lane.closed = True  # forgotten, not closed: the successor posts to it
                for settlement in lane.waiting_for:
                    settlement.done()
                lane.waiting, lane.oldest_received, lane.waiting_for = [], None, []
        return handed

    def close_handed_lanes(self) -> None:
        """The hand-over failed after ``hand_over_lanes``: close those connections (their
        browsers resume)."""
        with self._lock:
            records, self._handed = self._handed, []
            for record in records:
                self._counts.connections_closed += 1
                self._closing.add(self._pool.submit(self._disconnect, record))

    # --- one post (the event loop) ------------------------------------------------------

    async def _post(self, lane: _Lane, parcel: _Parcel, server_time: datetime) -> None:
        outcome, sent = "recalled", 0
        async with self._posting_slots:
            with self._lock:
                # Recalled at a hand-over while it waited for the slot: not sent.
                recalled, lane.recalled = lane.recalled, False
                lane.posting = not recalled
            if not recalled:
                outcome, sent, parcel = await self._send(lane.record, parcel, server_time)
        if outcome != "recalled" and self._finish(lane, parcel, outcome, sent):
            # Blocking (DynamoDB): off the loop; the lane ends once it is done.
            await self._loop.run_in_executor(self._pool, self._delete_record, lane.record)
        if lane.close_after_post:
            await self._loop.run_in_executor(self._pool, self._disconnect, lane.record)
        with self._lock:
            # Last: whoever waits for posts in flight sees this one's effects complete.
            lane.posting = False
            lane.in_flight, lane.parcel = None, None
            self._posts_in_flight -= 1

    async def _send(
        self, record: ConnectionRecord, parcel: _Parcel, server_time: datetime
    ) -> tuple[str, int, _Parcel]:
        """The outcome, the messages posted, and the parcel still owed if it is retried:
        all of it, or, after a failure part-way, what the messages not posted carried
        (posted messages are not posted again)."""
        outcome = "sent"
        sent = 0
        packed = PackedMessages([], [], [])
        try:
            if record.token_expired(self._clock()):
                outcome = "expired"  # the token-expiry timer closes it; it may see nothing more
            else:
                packed = self._packing.pack(parcel.readings, server_time)
                messages = [*packed, *parcel.notices]
                for message in messages:
                    if not await self._gateway.send_async(record.connection_id, message):
                        outcome = "gone"
                        break
                    sent += 1
        except (ClientError, ConnectionError, HTTPClientError) as error:
            outcome = "throttled" if _error_code(error) in _THROTTLED else "failed"
            # Throttling comes in thousands at the account's post rate: the tick's
            # PostsThrottled metric counts them, one log line each would cost more than it says.
            log = logger.debug if outcome == "throttled" else logger.warning
            log(
                "post failed",
                extra={"connection_id": record.connection_id, "error": str(error), "outcome": outcome},
            )
        except Exception:
            outcome = "failed"
            logger.exception("post failed", extra={"connection_id": record.connection_id})
        if sent and outcome not in ("sent", "expired"):
            parcel = _unsent_part(parcel, packed, sent)
        return outcome, sent, parcel

    def _finish(self, lane: _Lane, parcel: _Parcel, outcome: str, sent: int) -> bool:
        """The post's outcome on the lane and the counts; True: the connection is gone
        (its record is to be deleted)."""
        now = self._clock()
        delete_record = False
        settlements = parcel.settlements
        with self._lock:
            self._counts.messages_sent += sent
            if outcome == "sent" and sent and parcel.oldest_received is not None:
                self._counts.lags.append(now - _epoch_seconds(parcel.oldest_received))
            if outcome in ("sent", "expired"):
                lane.failures = 0
                if not lane.waiting:
                    lane.blocked_since = None
                elif outcome == "sent":
                    # It took this post: what waits now has waited only since (not stalled).
                    lane.blocked_since = now
            elif outcome == "gone" and not self._handshake_may_be_open(lane.record, now):
                self._counts.connections_gone += 1
                lane.closed = True
                delete_record = True
            elif not lane.closed:
                # A young connection's 410 (its handshake still in progress) is retried
                # like any failed post, without counting against it: the browser is about
                # to read, and dropping the parcel would lose it to this browser for good.
                # Retried with the next tick's readings (they are older, so they go first).
                lane.waiting[:0] = parcel.readings
                lane.oldest_received = _earliest(lane.oldest_received, parcel.oldest_received)
                lane.notices[:0] = parcel.notices
                lane.waiting_for[:0] = settlements
                settlements = []
                if outcome == "throttled":
                    # The account's post rate, not the browser: API Gateway answered at once,
                    # so the connection is not stalled (MAX_LANE_BACKLOG still bounds the wait).
                    lane.blocked_since = None
                    self._counts.posts_throttled += 1
                elif outcome == "failed":
                    if lane.blocked_since is None:
                        lane.blocked_since = now
                    self._counts.posts_failed += 1
                    lane.failures += 1
                    if lane.failures >= MAX_POST_FAILURES:
                        self._close_lane(lane, reason="failing")
        for settlement in settlements:
            settlement.done()
        return delete_record

    def _handshake_may_be_open(self, record: ConnectionRecord, now: float) -> bool:
        """API Gateway answers 410 to posts until the $connect handshake completes."""
        return now - record.connected_at.timestamp() < self._settings.connect_grace_seconds

    # --- closing --------------------------------------------------------------------------

    def _close_lane(self, lane: _Lane, reason: str) -> None:
        """Caller holds the lock. The readings it held are settled: the browser resumes."""
        if lane.closed:
            return
        lane.closed = True
        self._counts.connections_closed += 1
        settlements, lane.waiting, lane.notices, lane.waiting_for = lane.waiting_for, [], [], []
        lane.oldest_received = None
        for settlement in settlements:
            settlement.done()
        logger.info(
            "closing a connection", extra={"connection_id": lane.record.connection_id, "reason": reason}
        )
        if lane.in_flight is not None:
            # What it took goes out first (its browser then resumes after it).
            lane.close_after_post = True
        else:
            self._closing.add(self._pool.submit(self._disconnect, lane.record))

    def _disconnect(self, record: ConnectionRecord) -> None:
        try:
            self._gateway.disconnect(record.connection_id)
        except Exception:
            logger.exception("closing a connection failed", extra={"connection_id": record.connection_id})
        self._delete_record(record)

    def _delete_record(self, record: ConnectionRecord) -> None:
        try:
            self._store.connections.delete(record.connection_id, record.org_id)
        except Exception:
            logger.exception(
                "deleting a connection record failed", extra={"connection_id": record.connection_id}
            )


def _earliest(first: str | None, second: str | None) -> str | None:
    return second if first is None else first if second is None else min(first, second)


def _unsent_part(parcel: _Parcel, packed: PackedMessages, sent: int) -> _Parcel:
    """What a parcel whose first ``sent`` messages went out still owes: the readings of its
    packed messages not posted, and the notices not posted; the same ticks to settle."""
    readings = packed.readings_after(min(sent, len(packed)))
    oldest = min((r.received_at for r in readings), default=None)
    notices = parcel.notices[max(0, sent - len(packed)) :]
    return _Parcel([readings] if readings else [], oldest, notices, parcel.settlements)


def _error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def _epoch_seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def server_time_of(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)
