"""Fault injection for soak and failure tests of the local stack, and the small admin
HTTP API that sets it (``LOCAL_ADMIN_PORT``, shown in the banner on stderr).

    GET    /faults                                 what is set now
    PUT    /faults/dynamodb     {"throttleRate": 0.1, "serverErrorRate": 0.05}
    PUT    /faults/gateway      {"goneRate": 0.2, "goneConnectionIds": ["..."],
                                 "postLatencyMs": {"median": 20, "p99": 150}}
    PUT    /faults/connections/{connectionId}      {"bytesPerSecond": 2000}  (null: full speed)
    GET    /functions                              environments, running and queued invocations
    POST   /functions/{name}/kill                  SIGKILL its running environments
    DELETE /faults                                 back to no faults

DynamoDB faults act inside the Lambda environments (a botocore hook of the local runtime,
see devstack/lambda_worker.py), per attempt, so the SDK's retries behave as in AWS.
Gateway faults act in the Management API emulator: a post answered 410 Gone as if the
connection had vanished (the connection itself stays open), the answer of every post
held back by a lognormal latency (the emulator itself answers in well under a
millisecond; API Gateway in AWS takes milliseconds to tens of them, so posting clients
are measured with their waits), and a connection whose socket drains at a given byte
rate, as a browser on a slow link or one that stops reading (0 bytes/s) would.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devstack.http_server import HttpRequest, HttpResponse
from devstack.lambda_worker import DYNAMODB_SERVER_ERROR_RATE, DYNAMODB_THROTTLE_RATE, FAULT_SLOTS


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DynamoDbFaults(_Document):
    throttle_rate: float = Field(0.0, ge=0.0, le=1.0, alias="throttleRate")
    server_error_rate: float = Field(0.0, ge=0.0, le=1.0, alias="serverErrorRate")


class PostLatency(_Document):
    """A lognormal latency given by its median and 99th percentile, in milliseconds."""

    median: float = Field(gt=0.0, le=60_000.0)
    p99: float = Field(gt=0.0, le=60_000.0)

    @model_validator(mode="after")
    def _p99_not_below_median(self) -> PostLatency:
        if self.p99 < self.median:
            raise ValueError("p99 must not be below the median")
        return self

    def seconds(self, quantile: float) -> float:
        """The latency at ``quantile`` (a uniform draw in (0, 1))."""
        sigma = math.log(self.p99 / self.median) / _Z99
        # inv_cdf refuses 0 and 1, which random.random() can return (0.0 at least).
        quantile = min(max(quantile, 1e-12), 1 - 1e-12)
        return self.median * math.exp(sigma * _STANDARD_NORMAL.inv_cdf(quantile)) / 1000


_STANDARD_NORMAL = NormalDist()
_Z99 = _STANDARD_NORMAL.inv_cdf(0.99)


class GatewayFaultSettings(_Document):
    gone_rate: float = Field(0.0, ge=0.0, le=1.0, alias="goneRate")
    gone_connection_ids: list[str] = Field(default_factory=list, alias="goneConnectionIds")
    post_latency_ms: PostLatency | None = Field(None, alias="postLatencyMs")


class SlowConnection(_Document):
    bytes_per_second: float | None = Field(None, ge=0.0, alias="bytesPerSecond")


class GatewayFaults:
    """What the WebSocket gateway asks before answering a post and while writing."""

    def __init__(self, chance: Callable[[], float] = random.random) -> None:
        self._chance = chance
        self._lock = threading.Lock()
        self.settings = GatewayFaultSettings()
        self.slow: dict[str, float] = {}

    def post_is_gone(self, connection_id: str) -> bool:
        settings = self.settings
        if connection_id in settings.gone_connection_ids:
            return True
        return settings.gone_rate > 0 and self._chance() < settings.gone_rate

    @property
    def holds_posts(self) -> bool:
        """Whether a post latency is set (each post's answer may then be held back)."""
        return self.settings.post_latency_ms is not None

    def post_latency_seconds(self) -> float:
        """How long the answer of the next post is held back (0 without a latency set)."""
        latency = self.settings.post_latency_ms
        return latency.seconds(self._chance()) if latency is not None else 0.0

    def bytes_per_second(self, connection_id: str) -> float | None:
        return self.slow.get(connection_id)

    def set_slow(self, connection_id: str, bytes_per_second: float | None) -> None:
        with self._lock:
            if bytes_per_second is None:
                self.slow.pop(connection_id, None)
            else:
                self.slow[connection_id] = bytes_per_second

    def reset(self) -> None:
        with self._lock:
            self.settings = GatewayFaultSettings()
            self.slow = {}


class ManagedFunction(Protocol):
    def kill_running(self) -> list[int]: ...

    def stats(self) -> dict[str, int]: ...


class FaultState:
    """All faults of one stack. ``dynamodb_rates`` is shared memory that every Lambda
    environment reads (created from the stack's process context, so children inherit it)."""

    def __init__(self, dynamodb_rates: Sequence[float] | None = None) -> None:
        self.dynamodb_rates: Any = dynamodb_rates if dynamodb_rates is not None else [0.0] * FAULT_SLOTS
        self.gateway = GatewayFaults()

    @property
    def dynamodb(self) -> DynamoDbFaults:
        return DynamoDbFaults(
            throttle_rate=self.dynamodb_rates[DYNAMODB_THROTTLE_RATE],
            server_error_rate=self.dynamodb_rates[DYNAMODB_SERVER_ERROR_RATE],
        )

    def set_dynamodb(self, faults: DynamoDbFaults) -> None:
        self.dynamodb_rates[DYNAMODB_THROTTLE_RATE] = faults.throttle_rate
        self.dynamodb_rates[DYNAMODB_SERVER_ERROR_RATE] = faults.server_error_rate

    def reset(self) -> None:
        self.set_dynamodb(DynamoDbFaults())
        self.gateway.reset()

    def describe(self) -> dict[str, Any]:
        return {
            "dynamodb": self.dynamodb.model_dump(by_alias=True),
            "gateway": self.gateway.settings.model_dump(by_alias=True),
            "slowConnections": dict(self.gateway.slow),
        }


def _bad_request(message: str) -> HttpResponse:
    return HttpResponse.json(400, {"message": message})


class NotificationSource(Protocol):
    def notifications(self) -> list[dict[str, Any]]: ...


class AdminApi:
    """The admin endpoint: an ``HttpRequest -> HttpResponse`` function for LoopbackHttpServer."""

    def __init__(
        self,
        faults: FaultState,
        functions: Mapping[str, ManagedFunction],
        notifications: NotificationSource | None = None,
    ) -> None:
        self._faults = faults
        self._functions = functions
        self._notifications = notifications

    def __call__(self, request: HttpRequest) -> HttpResponse:
        segments = [segment for segment in request.raw_path.split("/") if segment]
        try:
            return self._route(request.method, segments, request.body)
        except ValidationError as error:
            return _bad_request(error.errors(include_url=False)[0]["msg"])
        except ValueError as error:
            return _bad_request(f"invalid JSON: {error}")

    def _route(self, method: str, segments: list[str], body: bytes) -> HttpResponse:
        faults = self._faults
        match method, segments:
            case "GET", ["faults"]:
                return HttpResponse.json(200, faults.describe())
            case "DELETE", ["faults"]:
                faults.reset()
                return HttpResponse.json(200, faults.describe())
            case "PUT", ["faults", "dynamodb"]:
                faults.set_dynamodb(DynamoDbFaults.model_validate_json(body or b"{}"))
                return HttpResponse.json(200, faults.describe())
            case "PUT", ["faults", "gateway"]:
                faults.gateway.settings = GatewayFaultSettings.model_validate_json(body or b"{}")
                return HttpResponse.json(200, faults.describe())
            case "PUT", ["faults", "connections", connection_id]:
                slow = SlowConnection.model_validate_json(body or b"{}")
                faults.gateway.set_slow(connection_id, slow.bytes_per_second)
                return HttpResponse.json(200, faults.describe())
            case "GET", ["notifications"] if self._notifications is not None:
                return HttpResponse.json(200, self._notifications.notifications())
            case "GET", ["functions"]:
                return HttpResponse.json(200, {name: f.stats() for name, f in self._functions.items()})
            case "POST", ["functions", name, "kill"]:
                function = self._functions.get(name)
                if function is None:
                    known = sorted(self._functions)
                    return HttpResponse.json(404, {"message": f"no function {name!r}; known: {known}"})
                return HttpResponse.json(200, {"killed": function.kill_running()})
        return HttpResponse.json(404, {"message": "Not Found"})
