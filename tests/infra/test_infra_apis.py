"""The WebSocket API (routes, integrations, stage) and the HTTP API (JWT-protected ingest)."""

from typing import Any

from aws_cdk.assertions import Match

from infra.websocket_api import STAGE_NAME
from sensor_stream import catalog
from tests.infra.synthesis import EXTERNAL_AUDIENCE, EXTERNAL_ISSUER, Synthesized


def _integration_function(synthesized: Synthesized, integration_target: Any) -> str:
    """Logical id of the Lambda function behind a route's ``integrations/<id>`` target."""
    (join,) = integration_target.values()
    integration_id = join[1][1]["Ref"]
    uri = synthesized.resources[integration_id]["Properties"]["IntegrationUri"]
    if "Fn::GetAtt" in uri:
        return uri["Fn::GetAtt"][0]
    parts = uri["Fn::Join"][1]
    (function_arn,) = [part for part in parts if isinstance(part, dict) and "Fn::GetAtt" in part]
    return function_arn["Fn::GetAtt"][0]


def _routes(synthesized: Synthesized, api_logical_id: str) -> dict[str, dict[str, Any]]:
    return {
        resource["Properties"]["RouteKey"]: resource["Properties"]
        for resource in synthesized.template.find_resources("AWS::ApiGatewayV2::Route").values()
        if resource["Properties"]["ApiId"] == {"Ref": api_logical_id}
    }


def test_websocket_api_selects_routes_by_action(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::ApiGatewayV2::Api",
        {"ProtocolType": "WEBSOCKET", "RouteSelectionExpression": "$request.body.action"},
    )


def test_each_websocket_route_reaches_its_function(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    connect = synthesized.logical_id(stack.functions.connect)
    publish = synthesized.logical_id(stack.functions.publish)
    routes = _routes(synthesized, synthesized.logical_id(stack.websocket.api))

    route_functions = {
        key: _integration_function(synthesized, route["Target"]) for key, route in routes.items()
    }

    assert route_functions == {
        "$connect": connect,
        "$disconnect": connect,
        "$default": connect,
        "hello": connect,
        "subscribe": connect,
        "unsubscribe": connect,
        "getLatest": connect,
        "getHistory": connect,
        "ping": connect,
        "refreshToken": connect,
        "getAlerts": connect,
        "listUnits": connect,
        "sendCommand": publish,
    }


def test_connect_route_has_no_gateway_authorizer(synthesized: Synthesized) -> None:
    # The connect function verifies the JWT offered in Sec-WebSocket-Protocol itself.
    routes = _routes(synthesized, synthesized.logical_id(synthesized.stack.websocket.api))
    assert routes["$connect"]["AuthorizationType"] == "NONE"
    assert "AuthorizerId" not in routes["$connect"]


def test_api_gateway_may_invoke_each_route_function_only_from_this_api(synthesized: Synthesized) -> None:
    api = synthesized.logical_id(synthesized.stack.websocket.api)
    permissions = [
        resource["Properties"]
        for resource in synthesized.template.find_resources(
            "AWS::Lambda::Permission", {"Properties": {"Principal": "apigateway.amazonaws.com"}}
        ).values()
    ]
    websocket_permissions = [p for p in permissions if {"Ref": api} in p["SourceArn"]["Fn::Join"][1]]
    # One per route: $connect, $disconnect, $default and the client actions.
    assert len(websocket_permissions) == 3 + len(catalog.CLIENT_ACTIONS) == 13


def test_websocket_stage_logs_access_and_throttles(synthesized: Synthesized) -> None:
    websocket = synthesized.stack.websocket
    synthesized.template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "ApiId": {"Ref": synthesized.logical_id(websocket.api)},
            "StageName": STAGE_NAME,
            "AutoDeploy": True,
            "AccessLogSettings": {
                "DestinationArn": {"Fn::GetAtt": [synthesized.logical_id(websocket.access_logs), "Arn"]},
                "Format": Match.string_like_regexp(r"\$context\.connectionId"),
            },
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": Match.any_value(),
                "ThrottlingBurstLimit": Match.any_value(),
            },
        },
    )
    access_logs = synthesized.resource(websocket.access_logs)
    assert access_logs["Properties"]["RetentionInDays"] == 30


def test_each_http_route_requires_a_jwt_from_the_user_pool_and_reaches_its_function(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.stack
    http_api = synthesized.logical_id(stack.http.api)
    routes = _routes(synthesized, http_api)
    ingest, rules = (
        synthesized.logical_id(stack.functions.ingest),
        synthesized.logical_id(stack.functions.rules),
    )
    assert {key: _integration_function(synthesized, route["Target"]) for key, route in routes.items()} == {
        "POST /readings": ingest,
        "PUT /alert-rules/{ruleId}": rules,
        "GET /alert-rules": rules,
        "DELETE /alert-rules/{ruleId}": rules,
    }
    assert {route["AuthorizationType"] for route in routes.values()} == {"JWT"}
    assert len({route["AuthorizerId"]["Ref"] for route in routes.values()}) == 1
    route = routes["POST /readings"]

    user_pool = synthesized.logical_id(stack.token_issuer.user_pool)  # type: ignore[arg-type]
    client = synthesized.logical_id(stack.token_issuer.user_pool_client)  # type: ignore[arg-type]
    authorizer = synthesized.resources[route["AuthorizerId"]["Ref"]]["Properties"]
    assert authorizer["AuthorizerType"] == "JWT"
    assert authorizer["IdentitySource"] == ["$request.header.Authorization"]
    assert authorizer["JwtConfiguration"]["Audience"] == [{"Ref": client}]
    assert synthesized.stack.resolve(stack.token_issuer.issuer) == authorizer["JwtConfiguration"]["Issuer"]
    assert {"Ref": user_pool} in authorizer["JwtConfiguration"]["Issuer"]["Fn::Join"][1]


def test_readings_route_trusts_the_configured_external_issuer(
    synthesized_external_issuer: Synthesized,
) -> None:
    synthesized_external_issuer.template.has_resource_properties(
        "AWS::ApiGatewayV2::Authorizer",
        {"JwtConfiguration": {"Issuer": EXTERNAL_ISSUER, "Audience": [EXTERNAL_AUDIENCE]}},
    )
    synthesized_external_issuer.template.resource_count_is("AWS::Cognito::UserPool", 0)


def test_http_stage_logs_access_and_throttles(synthesized: Synthesized) -> None:
    http = synthesized.stack.http
    synthesized.template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "ApiId": {"Ref": synthesized.logical_id(http.api)},
            "StageName": "$default",
            "AutoDeploy": True,
            "AccessLogSettings": {
                "DestinationArn": {"Fn::GetAtt": [synthesized.logical_id(http.access_logs), "Arn"]}
            },
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": Match.any_value(),
                "ThrottlingBurstLimit": Match.any_value(),
            },
        },
    )


def test_the_dashboard_may_call_the_http_api_from_its_own_origin(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    api = synthesized.resource(stack.http.api)["Properties"]
    cors = api["CorsConfiguration"]
    assert cors["AllowOrigins"] == [stack.resolve(stack.hosting.url)]
    assert sorted(cors["AllowMethods"]) == ["DELETE", "GET", "POST", "PUT"]
    assert sorted(cors["AllowHeaders"]) == ["authorization", "content-type"]
