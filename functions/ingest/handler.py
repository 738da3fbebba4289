"""Ingest: IoT topic-rule events and ``POST /readings`` (HTTP API payload v2)."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model
from aws_lambda_powertools.utilities.typing import LambdaContext

from sensor_stream import clients, http_requests
from sensor_stream.errors import AppError
from sensor_stream.ingestion import ingest_http, ingest_iot_event
from sensor_stream.models import utc_now
from sensor_stream.observability import logger, metrics, tracer
from sensor_stream.responses import error_response, json_response
from sensor_stream.settings import get_settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" in event:
        return handle_http(parse(event=event, model=APIGatewayProxyEventV2Model))
    return handle_iot(event)


def handle_iot(event: dict[str, Any]) -> dict[str, Any]:
    outcome = ingest_iot_event(clients.store(), event, utc_now())
    logger.info(
        "iot message ingested",
        extra={
            "stored": outcome.stored,
            "duplicates": outcome.duplicates,
            "quarantined": outcome.quarantined,
        },
    )
    return {
        "stored": outcome.stored,
        "duplicates": outcome.duplicates,
        "quarantined": len(outcome.quarantined),
    }


def handle_http(event: APIGatewayProxyEventV2Model) -> dict[str, Any]:
    try:
        principal = http_requests.caller(event, get_settings())
        result = ingest_http(clients.store(), principal, http_requests.body(event), utc_now())
    except AppError as error:
        logger.info("ingest request refused", extra={"code": error.code, "error_message": error.message})
        return error_response(error)
    return json_response(200, result.to_wire())
