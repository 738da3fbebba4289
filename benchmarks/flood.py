"""A tenant that floods: one WebSocket connection of an org of its own sends requests as
fast as asked (``getLatest`` of a unit) during the second half of a run, and counts the
answers by kind. The benchmark compares the other orgs' latency in the quiet first half
with the flooded second half (issue: a flood must not move another org's p99 by more
than 0.5 s)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

FLOOD_ORG = "bench-flooder"


@dataclass(frozen=True)
class FloodPlan:
    websocket_url: str
    token: str
    rate: float  # requests per second
    duration: float  # seconds of the run; the flood fills its second half


@dataclass
class FloodReport:
    sent: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    closed_by_server: int | None = None

    def line(self) -> str:
        kinds = ", ".join(f"{count:,} {kind}" for kind, count in self.answers.most_common()) or "none"
        closed = f"; the server closed it ({self.closed_by_server})" if self.closed_by_server else ""
        return f"{self.sent:,} requests sent; answers: {kinds}{closed}"


async def _flood(plan: FloodPlan, start: float, report: FloodReport) -> None:
    offer = [Subprotocol("sensor-stream.v1"), Subprotocol(f"bearer.{plan.token}")]
    async with connect(plan.websocket_url, subprotocols=offer, max_size=None, ping_interval=None) as ws:

        async def read() -> None:
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type", "?")
                if kind == "error":
                    kind = f"error:{message['error']['code']}"
                report.answers[kind] += 1

        reader = asyncio.create_task(read())
        flood_from = start + plan.duration / 2
        flood_until = start + plan.duration
        await asyncio.sleep(max(0.0, flood_from - time.time()))
        interval = 1 / plan.rate
        try:
            while (now := time.time()) < flood_until:
                await ws.send(
                    json.dumps({"action": "getLatest", "unitId": "unit-0", "requestId": str(report.sent)})
                )
                report.sent += 1
                await asyncio.sleep(max(0.0, flood_from + report.sent * interval - now))
        except ConnectionClosed as closed:
            report.closed_by_server = closed.rcvd.code if closed.rcvd else 1006
        await asyncio.sleep(2)  # the last answers
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await reader


def run_flooder(plan: FloodPlan, control: Connection) -> None:
    """Process entry: says ("ready",), waits for ("start", t0), floods the second half of
    the run, then answers ("done", FloodReport)."""
    control.send(("ready",))
    command, start = control.recv()
    assert command == "start"
    report = FloodReport()
    with contextlib.suppress(OSError, ConnectionClosed):
        asyncio.run(_flood(plan, start, report))
    control.send(("done", report))
