"""The HTTP API ``POST /readings`` (gateways, backfill): API Gateway's native JWT
authorizer checks the token's signature, issuer, audience and expiry before ingest runs."""

from aws_cdk import Aws
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.access_logs import json_access_logs
from infra.auth import TokenIssuer
from infra.config import DeployConfig
from sensor_stream.api_limits import HTTP_THROTTLE_BURST_LIMIT, HTTP_THROTTLE_RATE_LIMIT

READINGS_PATH = "/readings"
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


class HttpIngestApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        ingest_function: lambda_.IFunction,
        token_issuer: TokenIssuer,
    ) -> None:
        super().__init__(scope, construct_id)
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            description="sensor-stream HTTP ingest (POST /readings)",
            create_default_stage=False,
        )
        authorizer = authorizers.HttpJwtAuthorizer(
            "Jwt",
            jwt_issuer=token_issuer.issuer,
            jwt_audience=[token_issuer.audience],
        )
        self.api.add_routes(
            path=READINGS_PATH,
            methods=[apigwv2.HttpMethod.POST],
            integration=integrations.HttpLambdaIntegration("Ingest", ingest_function),
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
        """``https://{apiId}.execute-api.{region}.amazonaws.com/`` (POST ``readings`` below it)."""
        return self.stage.url

    @property
    def base_url(self) -> str:
        """The same without the trailing slash, as the dashboard's config.json names it."""
        return f"https://{self.api.api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}"
