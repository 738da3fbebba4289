"""``SensorStreamAccount``: the settings an AWS account has once per region, which every
stage relies on but none may own. Deployed once per account and region
(``make deploy-account``), before the first stage, and left alone afterwards.

- API Gateway's CloudWatch role: WebSocket stages may write access logs only once the
  account names a role API Gateway can assume. Setting it from a stage stack would let
  each stage overwrite a setting other APIs of the account use, and creating the role and
  the setting in one deployment is known to fail intermittently on the first attempt (the
  role is not usable yet): here a failed first attempt is simply deployed again, and no
  stage's resources are involved.
- AWS IoT logging: the rules engine's errors (an action that failed, SQL that could not be
  evaluated) go to the ``AWSIotLogsV2`` log group at the chosen level.

An account that already has either setting leaves it out with
``-c accountApiGatewayRole=false`` or ``-c accountIotLogging=false`` (docs/deploy.md).
"""

from dataclasses import dataclass

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from constructs import Construct, Node

from infra.config import ConfigurationError, context_flag, context_text
from infra.nag import acknowledge

ACCOUNT_STACK_NAME = "SensorStreamAccount"
# AWS IoT writes its logs here (it creates the group on first use).
IOT_LOG_GROUP = "AWSIotLogsV2"
IOT_LOG_LEVELS = ("ERROR", "WARN", "INFO", "DEBUG")
DEFAULT_IOT_LOG_LEVEL = "ERROR"


@dataclass(frozen=True)
class AccountConfig:
    api_gateway_role: bool
    iot_logging: bool
    iot_log_level: str

    @classmethod
    def from_context(cls, node: Node) -> "AccountConfig":
        level = (context_text(node, "iotLogLevel") or DEFAULT_IOT_LOG_LEVEL).upper()
        if level not in IOT_LOG_LEVELS:
            raise ConfigurationError(f"iotLogLevel must be one of {', '.join(IOT_LOG_LEVELS)}; got {level!r}")
        return cls(
            api_gateway_role=context_flag(node, "accountApiGatewayRole", default=True),
            iot_logging=context_flag(node, "accountIotLogging", default=True),
            iot_log_level=level,
        )


class SensorStreamAccountStack(Stack):
    def __init__(self, scope: Construct, *, config: AccountConfig) -> None:
        super().__init__(
            scope,
            ACCOUNT_STACK_NAME,
            description="sensor-stream: account-wide settings (API Gateway logging role, IoT logging)",
        )
        self.config = config
        self.api_gateway_logging = (
            ApiGatewayAccountLogging(self, "ApiGateway") if config.api_gateway_role else None
        )
        self.iot_logging = (
            IotAccountLogging(self, "IotLogging", level=config.iot_log_level) if config.iot_logging else None
        )


class ApiGatewayAccountLogging(Construct):
    """The role through which API Gateway writes WebSocket (and REST) logs, and the account
    setting naming it. Both are kept when the stack is deleted: other APIs may log
    through them."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "CloudWatchRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway writes access and execution logs of this account's APIs",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                )
            ],
        )
        self.role.apply_removal_policy(RemovalPolicy.RETAIN)
        self.account = apigateway.CfnAccount(self, "Account", cloud_watch_role_arn=self.role.role_arn)
        self.account.apply_removal_policy(RemovalPolicy.RETAIN)
        acknowledge(
            self.role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "The AWS-managed policy documented for API Gateway's account logging role; API "
            "Gateway creates its log groups at run time, so no narrower resource is known.",
        )


class IotAccountLogging(Construct):
    """AWS IoT logging at ``level`` into ``AWSIotLogsV2`` (the role may write only there)."""

    def __init__(self, scope: Construct, construct_id: str, *, level: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        log_group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{IOT_LOG_GROUP}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "iot.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="AWS IoT writes its logs to the AWSIotLogsV2 log group",
            inline_policies={
                "WriteIotLogs": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=[
                                "logs:CreateLogGroup",
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:PutMetricFilter",
                                "logs:PutRetentionPolicy",
                            ],
                            resources=[log_group_arn],
                        )
                    ]
                )
            },
        )
        self.logging = iot.CfnLogging(
            self, "Logging", account_id=stack.account, default_log_level=level, role_arn=self.role.role_arn
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
            f"log-group:{IOT_LOG_GROUP}:*]",
            "AWS IoT names its log streams at run time; the grant is scoped to the one log group "
            "AWS IoT writes (AWSIotLogsV2) in this account and region.",
        )
