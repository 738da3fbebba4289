"""Browsers for the live benchmark and the soak: WebSocket clients in one asyncio process
(:func:`run_browsers`, started through multiprocessing), connected as the browser client
connects (subprotocols ``sensor-stream.v1`` and ``bearer.<JWT>``, then ``hello``),
subscribed to their whole org (a new connection's default).

Each browser counts what it receives in a ConnectionLedger; the receive time is taken as
soon as a message is read, before it is parsed, and the counting waits until the devices
have stopped (the ledger holds the messages until the drain finds all readings arrived),
so that it does not take the CPU of the stack it measures. A browser that loses its connection
reconnects after a second and resumes as web/sensor-stream-client.js does: ``hello`` with
``resume: {"since": newest reading seen - 5 s}``. Like that client it sends a ``ping``
every ``heartbeat_seconds`` (25 s) and, told ``unauthorized`` (the server no longer knows
the connection, e.g. after a 410 for it), closes the socket and reconnects the same way.

Soak behaviour per browser: ``drops`` (cut the TCP connection without a close frame at
these seconds into the run, then reconnect ``away_seconds`` later and resume) and ``stall`` (stop reading the
socket for a while, on a small receive buffer so that the server's sends back up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from benchmarks.accounting import (
    ConnectionLedger,
    ConnectionSummary,
    LatencyHistogram,
    digest_message,
    merge_by_second,
    merge_histograms,
)
from benchmarks.devices import iso

SUBPROTOCOL = "sensor-stream.v1"
OPEN_TIMEOUT_SECONDS = 30.0
READY_TIMEOUT_SECONDS = 120.0
# A stalled browser's receive buffer: small, so the server's sends back up within seconds.
STALLED_RECEIVE_BUFFER_BYTES = 4096


@dataclass(frozen=True)
class BrowserSpec:
    name: str
    org_id: str
    token: str
    devices: tuple[int, ...]  # device indices of its org: what it expects
    drops: tuple[float, ...] = ()  # seconds after start: cut the connection, then resume
    away_seconds: float = 1.0  # after a drop, how long before reconnecting
    stall: tuple[float, float] | None = None  # (seconds after start, for how long): stop reading


@dataclass(frozen=True)
class BrowserPlan:
    websocket_url: str
    browsers: tuple[BrowserSpec, ...]
    connect_concurrency: int = 16
    resume_overlap_seconds: float = 5.0
    reconnect_delay_seconds: float = 1.0
    heartbeat_seconds: float = 25.0


@dataclass
class BrowserResult:
    summaries: list[ConnectionSummary]
    latency: LatencyHistogram
    to_received: LatencyHistogram
    waiting_for_tick: LatencyHistogram
    tick_to_browser: LatencyHistogram
    latency_by_sent_second: dict[int, LatencyHistogram]
    last_message_at: float | None
    connect_failures: int
    # Close codes of connections the server (not the test) ended.
    server_closes: Counter[int] = field(default_factory=Counter)


class _Browser:
    def __init__(self, spec: BrowserSpec, plan: BrowserPlan, fleet: _Fleet) -> None:
        self.spec = spec
        self.plan = plan
        self.fleet = fleet
        self.ledger = ConnectionLedger(spec.name, spec.devices)
        self.said_hello = asyncio.Event()
        self.socket: ClientConnection | None = None
        self._dropping = False
        self._stalled = False

    async def _open(self) -> ClientConnection:
        offer = [Subprotocol(SUBPROTOCOL), Subprotocol(f"bearer.{self.spec.token}")]
        options: dict[str, Any] = {
            "subprotocols": offer,
            "open_timeout": OPEN_TIMEOUT_SECONDS,
            "ping_interval": None,
            "compression": None,
            "max_size": None,
        }
        if self.spec.stall is not None:
            parts = urlsplit(self.plan.websocket_url)
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RECEIVE_BUFFER_BYTES)
            raw.setblocking(False)
            await asyncio.get_running_loop().sock_connect(raw, (parts.hostname, parts.port))
            options.update(sock=raw, max_queue=1)
        async with self.fleet.connecting:
            return await connect(self.plan.websocket_url, **options)

    async def run(self) -> None:
        while not self.fleet.finishing:
            try:
                ws = await self._open()
            except Exception:
                self.fleet.connect_failures += 1
                await asyncio.sleep(self.plan.reconnect_delay_seconds)
                continue
            self.socket = ws
            hello: dict[str, Any] = {"action": "hello", "requestId": f"hello-{self.spec.name}"}
            self.ledger.settle()  # where the resume starts: the newest reading seen
            if self.ledger.newest_seen is not None:
                since = self.ledger.newest_seen - self.plan.resume_overlap_seconds
                hello["resume"] = {"since": iso(since)}
            self._schedule_drop(ws)
            heartbeat = asyncio.create_task(self._heartbeat(ws))
            try:
                await ws.send(json.dumps(hello))
                await self._read(ws)
            except ConnectionClosed as closed:
                if not self._dropping and not self.fleet.finishing and closed.sent is None:
                    code = closed.rcvd.code if closed.rcvd else 1006
                    self.fleet.server_closes[code] += 1
            finally:
                heartbeat.cancel()
            if self.fleet.finishing:
                return
            delay = self.spec.away_seconds if self._dropping else self.plan.reconnect_delay_seconds
            self._dropping = False
            self.ledger.reconnects += 1
            await asyncio.sleep(delay)

    async def _read(self, ws: ClientConnection) -> None:
        while True:
            raw = await ws.recv()
            received_at = time.time()
            # Parsed once per distinct message for all browsers: they share the stack's cores.
            digest = digest_message(raw)
            if digest.type == "connection":
                self.said_hello.set()
            if digest.type == "error" and digest.error_code == "unauthorized":
                # As the browser client: the server no longer knows this connection.
                await ws.close(4001, "connection unknown to the server")
                return
            self.ledger.hold(digest, received_at)
            stall = self.spec.stall
            start = self.fleet.start
            if stall and not self._stalled and start is not None and received_at >= start + stall[0]:
                self._stalled = True
                await asyncio.sleep(stall[1])

    async def _heartbeat(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.plan.heartbeat_seconds)
                await ws.send(json.dumps({"action": "ping", "requestId": f"ping-{self.spec.name}"}))

    def _schedule_drop(self, ws: ClientConnection) -> None:
        start = self.fleet.start
        if start is None:
            return
        now = time.time()
        upcoming = [start + offset for offset in self.spec.drops if start + offset > now]
        if upcoming:
            asyncio.get_running_loop().call_later(min(upcoming) - now, self._drop, ws)

    def _drop(self, ws: ClientConnection) -> None:
        """Vanish as a browser on a dead network does: no close frame, the TCP socket just goes."""
        if self.socket is ws and not self.fleet.finishing:
            self._dropping = True
            ws.transport.abort()


class _Fleet:
    def __init__(self, plan: BrowserPlan) -> None:
        self.connecting = asyncio.Semaphore(plan.connect_concurrency)
        self.finishing = False
        self.start: float | None = None
        self.connect_failures = 0
        self.server_closes: Counter[int] = Counter()
        self.browsers = [_Browser(spec, plan, self) for spec in plan.browsers]

    def result(self, sent: dict[int, int]) -> BrowserResult:
        ledgers = [browser.ledger for browser in self.browsers]
        for ledger in ledgers:
            ledger.settle()
        last = [ledger.last_message_at for ledger in ledgers if ledger.last_message_at is not None]
        return BrowserResult(
            summaries=[ledger.summary(sent) for ledger in ledgers],
            latency=merge_histograms(ledger.latency for ledger in ledgers),
            to_received=merge_histograms(ledger.to_received for ledger in ledgers),
            waiting_for_tick=merge_histograms(ledger.waiting_for_tick for ledger in ledgers),
            tick_to_browser=merge_histograms(ledger.tick_to_browser for ledger in ledgers),
            latency_by_sent_second=merge_by_second(ledger.latency_by_sent_second for ledger in ledgers),
            last_message_at=max(last, default=None),
            connect_failures=self.connect_failures,
            server_closes=self.server_closes,
        )


async def _serve(plan: BrowserPlan, control: Connection) -> None:
    loop = asyncio.get_running_loop()
    fleet = _Fleet(plan)
    tasks = [asyncio.create_task(browser.run()) for browser in fleet.browsers]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await asyncio.gather(*(browser.said_hello.wait() for browser in fleet.browsers))
    ready = sum(browser.said_hello.is_set() for browser in fleet.browsers)
    control.send(("ready", ready, fleet.connect_failures))
    while True:
        command, argument = await loop.run_in_executor(None, control.recv)
        if command == "start":
            fleet.start = argument
            for browser in fleet.browsers:
                if browser.socket is not None:
                    browser._schedule_drop(browser.socket)
        elif command == "progress":
            # Browsers whose every reading has arrived (counting what they hold only once
            # enough deliveries have come for that to be possible).
            complete = sum(browser.ledger.complete(argument) for browser in fleet.browsers)
            control.send(("progress", complete))
        elif command == "finish":
            fleet.finishing = True
            for task in tasks:
                task.cancel()
            for browser in fleet.browsers:
                if browser.socket is not None:
                    browser.socket.transport.abort()
            await asyncio.gather(*tasks, return_exceptions=True)
            control.send(("result", fleet.result(argument)))
            return


def run_browsers(plan: BrowserPlan, control: Connection) -> None:
    """Process entry: connect every browser and say ("ready", n, failures); then answer
    ("start", t0), ("progress", sent) and ("finish", sent), the last with a BrowserResult."""
    asyncio.run(_serve(plan, control))
