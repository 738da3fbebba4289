"""The one Logger, Metrics and Tracer of the project (names from POWERTOOLS_* variables)."""

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

# Deployed stages (prod, staging) share an account and so the metric namespace: each
# metric carries its stage, which infra sets per stack ("local" elsewhere).
STAGE = os.environ.get("SENSOR_STREAM_STAGE", "local")

logger = Logger(service="sensor-stream")
metrics = Metrics(namespace="SensorStream", service="sensor-stream")
metrics.set_default_dimensions(stage=STAGE)
tracer = Tracer(service="sensor-stream")
