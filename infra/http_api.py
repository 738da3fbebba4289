"""The HTTP API: ``POST /readings`` (gateways, backfill) and the alert rules, each route of
``sensor_stream.catalog`` to its function. API Gateway's native JWT authorizer checks the
token's signature, issuer, audience and expiry before a function runs; CORS lets the
dashboard call it from its own origin."""

from collections.abc import Mapping, Sequence

from aws_cdk import Aws, Duration
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.access_logs import json_access_logs
from infra.auth import TokenIssuer
from infra.config import DeployConfig
from sensor_stream import catalog
from sensor_stream.api_limits import HTTP_THROTTLE_BURST_LIMIT, HTTP_THROTTLE_RATE_LIMIT

# Shared with the local stack's emulator.
THROTTLE_RATE_LIMIT = HTTP_THROTTLE_RATE_LIMIT
THROTTLE_BURST_LIMIT = HTTP_THROTTLE_BURST_LIMIT

ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTimeEpoch": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "subject": "$context.authorizer.claims.sub",
    "authorizerError": "$context.authorizer.error",
    "integrationStatus": "$context.integrationStatus",
    "integrationLatency": "$context.integrationLatency",
    "error": "$context.error.message",
}


class HttpApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        functions: Mapping[str, lambda_.IFunction],
        token_issuer: TokenIssuer,
        allowed_origins: Sequence[str],
    ) -> None:
        """``functions``: by catalog name, the function behind each of its HTTP routes;
        ``allowed_origins``: where the dashboard is served (CORS)."""
        super().__init__(scope, construct_id)
        routes = catalog.http_routes()
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            description="sensor-stream HTTP API (POST /readings, alert rules)",
            create_default_stage=False,
            # Browsers preflight the dashboard's calls (Authorization header); API Gateway
            # answers OPTIONS itself, before the authorizer.
            cors_preflight=apigwv2.CorsPreflightOptions(
                allow_origins=list(allowed_origins),
                allow_methods=sorted({apigwv2.CorsHttpMethod(key.split(" ")[0]) for key in routes}, key=str),
                allow_headers=["authorization", "content-type"],
                max_age=Duration.minutes(10),
            ),
        )
        authorizer = authorizers.HttpJwtAuthorizer(
            "Jwt",
            jwt_issuer=token_issuer.issuer,
            jwt_audience=[token_issuer.audience],
        )
        integrations_by_function = {
            name: integrations.HttpLambdaIntegration(name.capitalize(), function)
            for name, function in functions.items()
        }
        for route_key, spec in routes.items():
            method, path = route_key.split(" ", 1)
            self.api.add_routes(
                path=path,
                methods=[apigwv2.HttpMethod(method)],
                integration=integrations_by_function[spec.name],
                authorizer=authorizer,
            )
        self.access_logs, access_log_settings = json_access_logs(
            self, "AccessLogs", fields=ACCESS_LOG_FIELDS, retention=config.log_retention
        )
        self.stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=THROTTLE_RATE_LIMIT, burst_limit=THROTTLE_BURST_LIMIT
            ),
            access_log_settings=access_log_settings,
        )

    @property
    def url(self) -> str:
        """``https://{apiId}.execute-api.{region}.amazonaws.com/`` (the routes below it)."""
        return self.stage.url

    @property
    def base_url(self) -> str:
        """The same without the trailing slash, as the dashboard's config.json names it."""
        return f"https://{self.api.api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}"
