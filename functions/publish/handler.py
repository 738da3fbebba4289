"""Commands: ``sendCommand`` from a browser, and device acks from the IoT rule."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayWebSocketMessageEventModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from sensor_stream import clients
from sensor_stream.commands import acknowledge, send_command
from sensor_stream.errors import AppError, ValidationFailed
from sensor_stream.ingestion import describe_errors
from sensor_stream.models import IotRuleEvent, SendCommandRequest, utc_now
from sensor_stream.observability import logger, metrics, tracer
from sensor_stream.sessions import error_message, parse_client_message
from sensor_stream.settings import get_settings

OK = {"statusCode": 200}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" in event:
        return on_send_command(parse(event=event, model=APIGatewayWebSocketMessageEventModel))
    delivered = acknowledge(clients.store(), clients.gateway(), IotRuleEvent.model_validate(event))
    return {"delivered": delivered}


def on_send_command(event: APIGatewayWebSocketMessageEventModel) -> dict[str, Any]:
    connection_id = event.request_context.connection_id
    request_id = None
    try:
        document, request_id = parse_client_message(event.body if isinstance(event.body, str) else None)
        try:
            request = SendCommandRequest.model_validate(document)
        except ValidationError as error:
            raise ValidationFailed("invalid 'sendCommand' request", details=describe_errors(error)) from error
        send_command(
            clients.store(),
            clients.gateway(),
            clients.iot_data(),
            get_settings(),
            connection_id,
            request,
            utc_now(),
        )
    except AppError as error:
        logger.info("command refused", extra={"code": error.code, "error_message": error.message})
        clients.gateway().send(connection_id, error_message(error, request_id))
    return OK
