"""Commands: ``sendCommand`` from a browser, and device acks from the IoT rule."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayWebSocketMessageEventModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from sensor_stream import clients
from sensor_stream.commands import acknowledge, send_command
from sensor_stream.models import IotRuleEvent, utc_now
from sensor_stream.observability import logger, metrics, trace_handler
from sensor_stream.protocol import answer_websocket_message, invocation_context

OK = {"statusCode": 200}


@logger.inject_lambda_context
@trace_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "requestContext" in event:
        return on_send_command(parse(event=event, model=APIGatewayWebSocketMessageEventModel))
    delivered = acknowledge(clients.store(), clients.gateway(), IotRuleEvent.model_validate(event))
    return {"delivered": delivered}


def on_send_command(event: APIGatewayWebSocketMessageEventModel) -> dict[str, Any]:
    answer_websocket_message(
        invocation_context(utc_now()),
        event,
        lambda request_context, record, document: send_command(
            request_context, record, document, clients.iot_data()
        ),
    )
    return OK
