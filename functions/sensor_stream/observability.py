"""The one Logger and Metrics of the project (names from POWERTOOLS_* variables), and the
handlers' tracing decorator (``tracing``: the X-Ray SDK is loaded only where tracing is on)."""

import os

from aws_lambda_powertools import Logger, Metrics

from .tracing import trace_handler

__all__ = ["logger", "metrics", "trace_handler"]

# Deployed stages (prod, staging) share an account and so the metric namespace: each
# metric carries its stage, which infra sets per stack ("local" elsewhere).
STAGE = os.environ.get("SENSOR_STREAM_STAGE", "local")

logger = Logger(service="sensor-stream")
metrics = Metrics(namespace="SensorStream", service="sensor-stream")
metrics.set_default_dimensions(stage=STAGE)
