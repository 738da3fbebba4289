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
from sensor_stream.protocol import RequestContext, answer_client_message
from sensor_stream.responses import error_response, header
from sensor_stream.sessions import answer_session_request, close_connection, open_connection
from sensor_stream.settings import get_settings

OK = {"statusCode": 200}


@logger.inject_lambda_context
@trace_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    route = event.get("requestContext", {}).get("routeKey")
    if route == "$connect":
        return on_connect(parse(event=event, model=APIGatewayWebSocketConnectEventModel))
    if route == "$disconnect":
        return on_disconnect(parse(event=event, model=APIGatewayWebSocketDisconnectEventModel))
    return on_message(parse(event=event, model=APIGatewayWebSocketMessageEventModel))


def on_connect(event: APIGatewayWebSocketConnectEventModel) -> dict[str, Any]:
    connection_id = event.request_context.connection_id
    try:
        record = open_connection(
            clients.store(),
            clients.token_verifier(),
            get_settings(),
            connection_id,
            header(event.headers, "Sec-WebSocket-Protocol"),
            utc_now(),
        )
    except Unauthorized as error:
        logger.info("connect refused", extra={"connection_id": connection_id, "reason": error.message})
        return error_response(error)
    logger.info("connected", extra={"connection_id": connection_id, "org_id": record.org_id})
    # The browser closes the socket unless the server selects one of its subprotocols.
    return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": SUBPROTOCOL}}


def on_disconnect(event: APIGatewayWebSocketDisconnectEventModel) -> dict[str, Any]:
    close_connection(clients.store(), event.request_context.connection_id, utc_now())
    return OK


def on_message(event: APIGatewayWebSocketMessageEventModel) -> dict[str, Any]:
    context = RequestContext(
        store=clients.store(),
        gateway=clients.gateway(),
        settings=get_settings(),
        now=utc_now(),
        verifier=clients.token_verifier(),
    )
    body = event.body if isinstance(event.body, str) else None
    answer_client_message(context, event.request_context.connection_id, body, answer_session_request)
    return OK
