"""The one Logger and Metrics of the project (names from POWERTOOLS_* variables), and the
handlers' tracing decorator (``tracing``: the X-Ray SDK is loaded only where tracing is on)."""

import os
import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.metric_properties import (
    MetricResolution,
    MetricUnit,
)

from .tracing import trace_handler

__all__ = ["logger", "metrics", "trace_handler"]

# Deployed stages (prod, staging) share an account and so the metric namespace: each
# metric carries its stage, which infra sets per stack ("local" elsewhere).
STAGE = os.environ.get("SENSOR_STREAM_STAGE", "local")


class _Metrics(Metrics):
    """Powertools' Metrics, off under POWERTOOLS_METRICS_DISABLED also where Powertools
    flushes a metric's 100th value by itself (it prints that set whatever the setting: the
    end-to-end lag of a busy tick filled the local stack's log with EMF blobs)."""

    def add_metric(
        self, name: str, unit: MetricUnit | str, value: float, resolution: MetricResolution | int = 60
    ) -> None:
        if not is_metrics_disabled():
            super().add_metric(name, unit, value, resolution)


# Powertools warns at the end of every invocation that added no metric (an idle tick, a
# failed parse, any invocation with metrics off): noise in every log, no information.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

logger = Logger(service="sensor-stream")
metrics = _Metrics(namespace="SensorStream", service="sensor-stream")
metrics.set_default_dimensions(stage=STAGE)
