"""A controllable clock for the handlers' ``utc_now`` and the flusher's clock/sleep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sensor_stream.models import format_time


class FakeClock:
    """Time stands still until a test advances it; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        # Millisecond precision, like sensor_stream.models.utc_now.
        return self._now.replace(microsecond=self._now.microsecond // 1000 * 1000)

    def time(self) -> float:
        return self._now.timestamp()

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self.now()

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def iso(self, offset_seconds: float = 0) -> str:
        """The clock's time (plus an offset) as the wire format writes it."""
        return format_time(self.now() + timedelta(seconds=offset_seconds))
