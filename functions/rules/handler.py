"""Alert rules over the HTTP API (payload v2): PUT, GET and DELETE /alert-rules."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model
from aws_lambda_powertools.utilities.typing import LambdaContext

from sensor_stream import clients, http_requests
from sensor_stream.errors import AppError, NotFound
from sensor_stream.models import RulesMessage, utc_now
from sensor_stream.observability import logger, metrics, tracer
from sensor_stream.responses import error_response, json_response
from sensor_stream.rules import RuleBook
from sensor_stream.settings import get_settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(event=event, model=APIGatewayProxyEventV2Model)
    settings = get_settings()
    try:
        book = RuleBook(
            clients.store(),
            http_requests.caller(request, settings),
            utc_now(),
            clients.alert_publisher(),
            max_rules=settings.max_rules_per_org,
        )
        rule_id = (request.pathParameters or {}).get("ruleId")
        match request.routeKey:
            case "PUT /alert-rules/{ruleId}":
                return json_response(200, book.put(rule_id, http_requests.body(request)).to_wire())
            case "GET /alert-rules":
                return json_response(200, RulesMessage(rules=book.list()).to_wire())
            case "DELETE /alert-rules/{ruleId}":
                book.delete(rule_id)
                return {"statusCode": 204}
        raise NotFound(f"no route {request.routeKey}")
    except AppError as error:
        logger.info("rules request refused", extra={"code": error.code, "error_message": error.message})
        return error_response(error)
