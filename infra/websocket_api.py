"""The browsers' WebSocket API: every client action goes to the connect function except
``sendCommand`` (publish). Answers are posted through the @connections management API,
which only the three functions that post may call."""

from collections.abc import Iterable

from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.access_logs import json_access_logs
from infra.config import DeployConfig
from infra.nag import acknowledge, nag_resource_name
from sensor_stream import catalog
from sensor_stream.api_limits import WEBSOCKET_THROTTLE_BURST_LIMIT, WEBSOCKET_THROTTLE_RATE_LIMIT

STAGE_NAME = "live"
ROUTE_SELECTION_EXPRESSION = "$request.body.action"
# Stage-wide limits per second across all clients, shared with the local stack's emulator.
THROTTLE_RATE_LIMIT = WEBSOCKET_THROTTLE_RATE_LIMIT
THROTTLE_BURST_LIMIT = WEBSOCKET_THROTTLE_BURST_LIMIT

ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTimeEpoch": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "connectionId": "$context.connectionId",
    "eventType": "$context.eventType",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "error": "$context.error.message",
}


class WebSocketApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        connect_function: lambda_.IFunction,
        publish_function: lambda_.IFunction,
        posting_functions: Iterable[lambda_.Function],
    ) -> None:
        super().__init__(scope, construct_id)
        connect_integration = integrations.WebSocketLambdaIntegration("Connect", connect_function)
        publish_integration = integrations.WebSocketLambdaIntegration("Publish", publish_function)
        self.api = apigwv2.WebSocketApi(
            self,
            "Api",
            description="sensor-stream live readings for browsers",
            route_selection_expression=ROUTE_SELECTION_EXPRESSION,
            # No API Gateway authorizer: browsers cannot send headers, so the token rides in
            # Sec-WebSocket-Protocol and the connect function verifies it (JWKS) at $connect.
            connect_route_options=apigwv2.WebSocketRouteOptions(integration=connect_integration),
            disconnect_route_options=apigwv2.WebSocketRouteOptions(integration=connect_integration),
            default_route_options=apigwv2.WebSocketRouteOptions(integration=connect_integration),
        )
        # Client actions (CONTRACT.md section 3) as sensor_stream.catalog routes them.
        for action in catalog.CONNECT.client_actions:
            self.api.add_route(action, integration=connect_integration)
        for action in catalog.PUBLISH.client_actions:
            self.api.add_route(action, integration=publish_integration)

        self.access_logs, access_log_settings = json_access_logs(
            self, "AccessLogs", fields=ACCESS_LOG_FIELDS, retention=config.log_retention
        )
        self.stage = apigwv2.WebSocketStage(
            self,
            "Stage",
            web_socket_api=self.api,
            stage_name=STAGE_NAME,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=THROTTLE_RATE_LIMIT, burst_limit=THROTTLE_BURST_LIMIT
            ),
            access_log_settings=access_log_settings,
        )
        # Access logging needs the account's API Gateway CloudWatch role: the account stack
        # (infra/account.py) sets it once per account and region, before any stage.

        for function in posting_functions:
            function.add_environment("WEBSOCKET_CALLBACK_URL", self.stage.callback_url)
            grant = self.stage.grant_management_api_access(function)
            assert function.role is not None
            for statement in grant.principal_statements:
                for resource in statement.resources:
                    acknowledge(
                        function.role,
                        f"AwsSolutions-IAM5[Resource::{nag_resource_name(self, resource)}]",
                        "Posting to a browser needs @connections/{connectionId}, and connection ids "
                        "exist only at run time; the grant is scoped to this API and stage.",
                    )

        for route in self.api.node.find_all():
            if isinstance(route, apigwv2.CfnRoute):
                acknowledge(
                    route,
                    "AwsSolutions-APIG4",
                    "WebSocket routes cannot carry an authorizer except on $connect, and $connect "
                    "has none by design: the connect function verifies the JWT from "
                    "Sec-WebSocket-Protocol (browsers cannot set headers) and refuses with 401; "
                    "later messages only reach connections it accepted.",
                )

    @property
    def url(self) -> str:
        return self.stage.url
