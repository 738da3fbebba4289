"""The one Logger and Metrics of the project (names from POWERTOOLS_* variables), and the
handlers' tracing decorator (``tracing``: the X-Ray SDK is loaded only where tracing is on)."""

from aws_lambda_powertools import Logger, Metrics

from .tracing import trace_handler

__all__ = ["logger", "metrics", "trace_handler"]

logger = Logger(service="sensor-stream")
metrics = Metrics(namespace="SensorStream", service="sensor-stream")
