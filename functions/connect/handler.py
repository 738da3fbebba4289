"""WebSocket session routes: $connect, $disconnect and the client's requests."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from sensor_stream import clients
from sensor_stream.auth import SUBPROTOCOL
from sensor_stream.errors import Unauthorized
from sensor_stream.models import utc_now
from sensor_stream.observability import logger, metrics, trace_handler
from sensor_stream.protocol import answer_websocket_message, invocation_context
from sensor_stream.responses import error_response, header
from sensor_stream.sessions import answer_session_request, close_connection, open_connection
from sensor_stream.settings import get_settings

OK = {"statusCode": 200}


@logger.inject_lambda_context
@trace_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    match event.get("requestContext", {}).get("routeKey"):
        case "$connect":
            return on_connect(parse(event=event, model=APIGatewayWebSocketConnectEventModel))
        case "$disconnect":
            closed = parse(event=event, model=APIGatewayWebSocketDisconnectEventModel)
            close_connection(clients.store(), closed.request_context.connection_id, utc_now())
        case _:
            message = parse(event=event, model=APIGatewayWebSocketMessageEventModel)
            session = invocation_context(utc_now(), verifies_tokens=True)
            answer_websocket_message(session, message, answer_session_request)
    return OK


def on_connect(event: APIGatewayWebSocketConnectEventModel) -> dict[str, Any]:
    try:
        open_connection(
            clients.store(),
            clients.token_verifier(),
            get_settings(),
            event.request_context.connection_id,
            header(event.headers, "Sec-WebSocket-Protocol"),
            utc_now(),
        )
    except Unauthorized as error:
        return error_response(error)
    # The browser closes the socket unless the server selects one of its subprotocols.
    return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": SUBPROTOCOL}}
