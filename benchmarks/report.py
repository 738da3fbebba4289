"""Figures of a run (benchmarks/harness.RunResult), computed and printed side by side.

Never asserts: a shared 2-core machine makes every figure a range, not a threshold.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.accounting import (
    ConnectionSummary,
    LatencyHistogram,
    latency_by_period_second,
    latency_by_window,
)
from benchmarks.devices import DeviceSpec, build_payload
from benchmarks.harness import RunResult
from benchmarks.naive import stored_reading

TREND_WINDOW_SECONDS = 5.0
# "Kept up": nothing missing after the drain, and the last window of sending no slower
# (p10) than the first by more than this.
KEPT_UP_SLACK_SECONDS = 1.0


# The flush splits a tick's readings for one connection into messages under 32 KB.
MAX_MESSAGE_BYTES = 32_000


def readings_per_message() -> int:
    """How many of the benchmark's readings fit one message of the flush."""
    device = DeviceSpec(0, "bench-dev-0", "bench-org-0", ("unit-0",))
    reading = stored_reading(device.device_id, build_payload(device, 0, 1, 1.8e9), 1.8e9)
    return max(1, MAX_MESSAGE_BYTES // (len(json.dumps(reading)) + 1))


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def compact(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@dataclass
class Figures:
    """The numbers of one design's run, derived once."""

    result: RunResult

    @property
    def summaries(self) -> list[ConnectionSummary]:
        return self.result.browsers.summaries

    @property
    def latency(self) -> LatencyHistogram:
        return self.result.browsers.latency

    @property
    def achieved_rate(self) -> float:
        return self.result.load.readings / self.result.workload.duration

    @property
    def expected(self) -> int:
        return sum(s.expected for s in self.summaries)

    @property
    def missing(self) -> int:
        return sum(s.missing for s in self.summaries)

    @property
    def duplicated(self) -> int:
        return sum(s.duplicated for s in self.summaries)

    @property
    def out_of_order(self) -> int:
        return sum(s.out_of_order for s in self.summaries)

    @property
    def foreign(self) -> int:
        return sum(s.foreign for s in self.summaries)

    @property
    def messages(self) -> int:
        return sum(s.messages for s in self.summaries)

    @property
    def span(self) -> float:
        """From the first send to the last message any browser received."""
        last = self.result.browsers.last_message_at
        run = self.result.workload.duration
        return max(run, (last - self.result.start) if last else run)

    @property
    def posts(self) -> int:
        """Posts to connections: the naive consumer counts its own; the flush's are the
        messages the browsers received."""
        naive = self.result.naive
        return naive.posts if naive else self.messages

    @property
    def posts_per_second(self) -> float:
        naive = self.result.naive
        if naive and naive.first_post_at and naive.last_post_at and naive.last_post_at > naive.first_post_at:
            return naive.posts / (naive.last_post_at - naive.first_post_at)
        return self.posts / self.span

    @property
    def browsers_per_org(self) -> float:
        return len(self.summaries) / self.result.workload.orgs

    @property
    def posts_per_delivered_reading(self) -> float | None:
        """Posts it took to bring one reading to every browser of its org (measured over
        what was delivered)."""
        delivered = self.expected - self.missing
        return self.posts * self.browsers_per_org / delivered if delivered else None

    @property
    def posts_needed_per_second(self) -> float:
        """Posts per second the design needs to keep up with the target rate, by design:
        naive, one per reading and browser of its org; the flush, one per browser and
        tick, more when a tick's readings pass 32 KB."""
        workload = self.result.workload
        per_org = workload.rate / workload.orgs
        if self.result.design == "naive":
            return per_org * self.browsers_per_org
        return len(self.summaries) * max(1, math.ceil(per_org / readings_per_message()))

    @property
    def messages_per_connection_second(self) -> float | None:
        connections = len(self.summaries)
        return self.messages / connections / self.span if connections else None

    @property
    def max_messages_per_second(self) -> int:
        return max((s.max_messages_per_second for s in self.summaries), default=0)

    def trend(self) -> list[tuple[float, LatencyHistogram]]:
        return latency_by_window(
            self.result.browsers.latency_by_sent_second, self.result.start, TREND_WINDOW_SECONDS
        )

    def kept_up(self) -> tuple[bool, str]:
        """Nothing missing after the drain, and the floor of latency (p10 of a window of
        sending) no higher at the end than at the start: a stack that falls behind delays
        every reading, while the flush's hand-over gap delays only a few seconds' worth."""
        windows = self.trend()
        if not windows:
            return False, "nothing delivered"
        first = windows[0][1].percentile(10) or 0.0
        last = windows[-1][1].percentile(10) or 0.0
        reasons = []
        if self.missing:
            drained = self.result.drain_used
            reasons.append(f"{self.missing:,} deliveries missing after a {drained:.0f} s drain")
        if last > first + KEPT_UP_SLACK_SECONDS:
            reasons.append(f"p10 latency grew from {seconds(first)} to {seconds(last)} over the run")
        if reasons:
            return False, "; ".join(reasons)
        window = f"{TREND_WINDOW_SECONDS:g} s"
        return True, f"p10 latency {seconds(first)} in the first {window}, {seconds(last)} in the last"


def _ratio(naive: float | None, live: float | None) -> str:
    if naive is None or live is None or live == 0:
        return "-"
    ratio = naive / live
    if ratio >= 100:
        return f"x{ratio:,.0f}"
    return f"x{ratio:.3g}" if ratio >= 1 else f"1/{1 / ratio:.3g}"


def _spread(values: Sequence[int]) -> str:
    if not values:
        return "-"
    return f"{min(values):,}/{statistics.median(values):,.0f}/{max(values):,}"


def _rows(figures: list[Figures]) -> list[tuple[str, list[str]]]:
    def each(render: Callable[[Figures], str]) -> list[str]:
        return [render(f) for f in figures]

    def percentiles(f: Figures, part: str = "latency") -> str:
        h: LatencyHistogram = getattr(f.result.browsers, part)
        return " / ".join(compact(v) for v in (h.percentile(50), h.percentile(90), h.percentile(99), h.max))

    def load(f: Figures) -> str:
        target = f.result.workload.rate
        return f"{target:g} / {f.achieved_rate:,.1f}"

    def lateness(f: Figures) -> str:
        late = f.result.load.lateness
        return f"{seconds(late.percentile(99))} / {seconds(late.max)}"

    def acked(f: Figures) -> str:
        load = f.result.load
        return f"{load.acked:,} / {load.messages + load.duplicates_published:,}"

    def delivered(f: Figures) -> str:
        return f"{f.expected - f.missing:,} / {f.expected:,}"

    def faults(f: Figures) -> str:
        return f"{f.missing:,} / {f.duplicated:,} / {f.out_of_order:,} / {f.foreign:,}"

    def per_message_rate(f: Figures) -> str:
        mean = f.messages_per_connection_second
        return f"{compact(mean)} / {f.max_messages_per_second}"

    def kept(f: Figures) -> str:
        return "yes" if f.kept_up()[0] else "no"

    return [
        ("readings/s target / achieved", each(load)),
        ("send lateness p99 / max", each(lateness)),
        ("messages acked by broker / published", each(acked)),
        ("browsers connected", each(lambda f: f"{f.result.connected} / {f.result.workload.browsers}")),
        ("latency p50/p90/p99/max (s)", each(percentiles)),
        ("  device -> receivedAt (IoT Core)", each(lambda f: percentiles(f, "to_received"))),
        ("  receivedAt -> tick (serverTime)", each(lambda f: percentiles(f, "waiting_for_tick"))),
        ("  tick -> browser", each(lambda f: percentiles(f, "tick_to_browser"))),
        ("delivered / expected", each(delivered)),
        ("missing/dup/out-of-order/foreign", each(faults)),
        ("posts to connections", each(lambda f: f"{f.posts:,}")),
        ("posts/s", each(lambda f: f"{f.posts_per_second:,.1f}")),
        ("posts per delivered reading", each(lambda f: compact(f.posts_per_delivered_reading))),
        ("posts/s needed (by design)", each(lambda f: f"{f.posts_needed_per_second:,.0f}")),
        ("msgs/connection/s mean / max", each(per_message_rate)),
        ("drain used", each(lambda f: f"{f.result.drain_used:.1f} s")),
        ("kept up", each(kept)),
    ]


def side_by_side(figures: list[Figures]) -> list[str]:
    """The designs as columns; with both, a ratio column naive/live where it means something."""
    headers = [_design_title(f.result.design) for f in figures]
    rows = _rows(figures)
    if len(figures) == 2 and {f.result.design for f in figures} == {"live", "naive"}:
        live, naive = sorted(figures, key=lambda f: f.result.design)
        ratios = {
            "latency p50/p90/p99/max (s)": " / ".join(
                _ratio(naive.latency.percentile(q), live.latency.percentile(q)) for q in (50, 99)
            )
            + " (p50/p99)",
            "posts/s": _ratio(naive.posts_per_second, live.posts_per_second),
            "posts per delivered reading": _ratio(
                naive.posts_per_delivered_reading, live.posts_per_delivered_reading
            ),
            "posts/s needed (by design)": _ratio(naive.posts_needed_per_second, live.posts_needed_per_second),
            "msgs/connection/s mean / max": _ratio(
                naive.messages_per_connection_second, live.messages_per_connection_second
            ),
        }
        headers.append("naive / live")
        rows = [(label, [*values, ratios.get(label, "")]) for label, values in rows]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(h), *(len(values[i]) for _, values in rows)) for i, h in enumerate(headers)]
    head = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    lines = [f"  {' ' * label_width}  {head}".rstrip()]
    for label, values in rows:
        cells = "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))
        lines.append(f"  {label.ljust(label_width)}  {cells}".rstrip())
    return lines


def _design_title(design: str) -> str:
    return {"live": "live (flush, 1-s ticks)", "naive": "naive (post each reading)"}.get(design, design)


def details(figures: Figures, *, per_connection: bool = False, by_period: bool = True) -> list[str]:
    """Per design: whether it kept up, the latency trend, latency by second of the flush
    period, per-connection spread, and notes."""
    result = figures.result
    title = _design_title(result.design)
    ok, why = figures.kept_up()
    lines = [f"  {title}: kept up: {'yes' if ok else 'no'} ({why})"]
    trend = " ".join(f"{compact(h.percentile(10))}/{compact(h.percentile(50))}" for _, h in figures.trend())
    lines.append(f"    p10/p50 latency (s) by {TREND_WINDOW_SECONDS:g} s of sending: {trend or '-'}")
    if by_period:
        lines.extend(_by_period_second(figures))
    if result.flood is not None:
        lines.extend(_flood_effect(figures))
    summaries = figures.summaries
    lines.append(
        "    per connection min/median/max: expected "
        + _spread([s.expected for s in summaries])
        + ", received "
        + _spread([s.received for s in summaries])
        + ", missing "
        + _spread([s.missing for s in summaries])
        + ", duplicated "
        + _spread([s.duplicated for s in summaries])
        + ", messages "
        + _spread([s.messages for s in summaries])
    )
    shown = summaries if per_connection else sorted(summaries, key=lambda s: -s.missing)[:5]
    uneven = len({s.missing for s in summaries}) > 1
    if per_connection or uneven:
        lines.append("    " + ("every connection:" if per_connection else "most missing:"))
        lines.extend("      " + connection_row(s, result.load.late) for s in shown)
    naive = result.naive
    if naive is not None:
        lines.append(
            f"    naive consumer: {naive.messages_in:,} messages / {naive.readings_in:,} readings in, "
            f"{naive.readings_done:,} posted to all, {naive.posts:,} posts "
            f"({naive.posts_gone} gone, {naive.post_errors} failed), post p50 "
            f"{seconds(naive.post_time.percentile(50))}, {naive.backlog_messages:,} messages left unhandled"
        )
    closes = result.browsers.server_closes
    if closes:
        lines.append("    closed by the server: " + ", ".join(f"{n} x {code}" for code, n in closes.items()))
    if result.cpu is not None:
        lines.extend(result.cpu.lines(result.load.messages))
    lines.extend(f"    note: {note}" for note in result.notes)
    return lines


def connection_row(s: ConnectionSummary, late: set[tuple[int, int]] | None = None) -> str:
    row = (
        f"{s.name}: expected {s.expected:,} received {s.received:,} missing {s.missing:,} "
        f"duplicated {s.duplicated:,} (after dedupe {s.duplicated_after_dedupe:,}) "
        f"out-of-order {s.out_of_order:,} replayed {s.replayed:,} messages {s.messages:,} "
        f"max/s {s.max_messages_per_second} reconnects {s.reconnects}"
    )
    if s.missing_examples:
        late = late or set()
        named = [f"{d}.{q}{' (sent late)' if (d, q) in late else ''}" for d, q in s.missing_examples]
        row += f"; missing e.g. {', '.join(named)}"
    return row


def _flood_effect(figures: Figures) -> list[str]:
    """The other orgs' latency while one connection floods (second half) and before."""
    result = figures.result
    assert result.flood is not None
    middle = result.start + result.workload.duration / 2
    quiet, flooded = LatencyHistogram(), LatencyHistogram()
    for second, histogram in result.browsers.latency_by_sent_second.items():
        (quiet if second < middle else flooded).merge(histogram)
    p99_quiet, p99_flooded = quiet.percentile(99), flooded.percentile(99)
    change = f"{p99_flooded - p99_quiet:+.2f} s" if p99_quiet is not None and p99_flooded is not None else "-"
    rate = result.workload.flood_rate
    return [
        f"    flood of {rate:g} requests/s from one connection of another org (second half): "
        + result.flood.line(),
        "    other orgs' latency p50/p99 (s): "
        f"quiet half {compact(quiet.percentile(50))}/{compact(p99_quiet)}, "
        f"flooded half {compact(flooded.percentile(50))}/{compact(p99_flooded)} (p99 {change})",
    ]


def _by_period_second(figures: Figures) -> list[str]:
    result = figures.result
    period = result.flush_period
    if period is None:
        return []
    buckets = latency_by_period_second(result.browsers.latency_by_sent_second, result.flush_origin, period)
    if not buckets:
        return []
    cells = [f"{slot:>2}:{compact(buckets[slot].percentile(99))}" for slot in sorted(buckets)]
    lines = [f"    p99 latency (s) by second of the flush period ({period:g} s; 0 = an invocation starts):"]
    lines.extend("      " + " ".join(cells[i : i + 10]) for i in range(0, len(cells), 10))
    worst = sorted(buckets, key=lambda slot: -(buckets[slot].percentile(99) or 0))[:5]
    lines.append(
        "      worst: " + ", ".join(f"s{slot} {compact(buckets[slot].percentile(99))}" for slot in worst)
    )
    return lines
