"""A Lambda context object for invoking handlers in-process."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from .events import ACCOUNT_ID, REGION


@dataclass
class FakeLambdaContext:
    """What Powertools' ``inject_lambda_context`` reads, plus the remaining time, which
    ``remaining_ms`` computes (a fixed budget by default)."""

    function_name: str = "sensor-stream-function"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: Callable[[], int] = lambda: 30_000
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/sensor-stream-function"
    log_stream_name: str = "2026/03/01/[$LATEST]0123456789abcdef"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms()


def countdown(*remaining_ms: int) -> Callable[[], int]:
    """Remaining times returned call after call; the last one repeats."""
    values = list(remaining_ms)

    def next_value() -> int:
        return values.pop(0) if len(values) > 1 else values[0]

    return next_value
