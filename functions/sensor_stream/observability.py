"""The one Logger, Metrics and Tracer of the project (names from POWERTOOLS_* variables)."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="sensor-stream")
metrics = Metrics(namespace="SensorStream", service="sensor-stream")
tracer = Tracer(service="sensor-stream")
