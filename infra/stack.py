"""``SensorStreamStack``: the whole system of one stage (``SensorStream-<stage>``) in one
stack, one construct per concern."""

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.alerting import AlertTopic
from infra.auth import TokenIssuer
from infra.config import DeployConfig
from infra.data import DataStore
from infra.functions import Functions
from infra.hosting import DashboardHosting
from infra.http_api import HttpApi
from infra.iot import IotIngress
from infra.layer import DependencyLayer
from infra.monitoring import AlarmedFunctions, Monitoring
from infra.scheduling import FlushSchedule
from infra.websocket_api import WebSocketApi
from sensor_stream.iot_rules import TOPIC_RULES

IOT_DATA_ENDPOINT_COMMAND = (
    "aws iot describe-endpoint --endpoint-type iot:Data-ATS --query endpointAddress --output text"
)


class SensorStreamStack(Stack):
    def __init__(
        self,
        scope: Construct,
        *,
        config: DeployConfig,
        dependency_layer: DependencyLayer,
    ) -> None:
        super().__init__(
            scope,
            config.stack_name,
            description=f"sensor-stream ({config.stage}): live sensor readings from IoT devices to browsers",
        )
        self.config = config
        self.data = DataStore(self, "Data")
        self.hosting = DashboardHosting(
            self, "Dashboard", stage=config.stage, log_retention=config.log_retention
        )
        self.token_issuer = TokenIssuer(
            self, "Auth", config=config, dashboard_urls=self.hosting.redirect_urls
        )
        self.functions = Functions(
            self,
            "Functions",
            config=config,
            table=self.data.table,
            token_issuer=self.token_issuer,
            dependency_layer=dependency_layer,
        )
        self.websocket = WebSocketApi(
            self,
            "WebSocket",
            config=config,
            connect_function=self.functions.connect,
            publish_function=self.functions.publish,
            posting_functions=(self.functions.connect, self.functions.flush, self.functions.publish),
        )
        self.http = HttpApi(
            self,
            "Http",
            config=config,
            functions=self.functions.by_name,
            token_issuer=self.token_issuer,
            allowed_origins=[self.hosting.url],
        )
        self.alerts = AlertTopic(self, "Alerts", stage=config.stage, alert_email=config.alert_email)
        self.alerts.grant_publish(self.functions.flush, self.functions.rules)
        self.iot = IotIngress(self, "Iot", stage=config.stage, rule_targets=self.functions.by_name)
        self.iot.grant_command_publish(self.functions.publish)
        self.schedule = FlushSchedule(self, "Schedule", flush_function=self.functions.flush)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            stage=config.stage,
            functions=AlarmedFunctions(
                all=self.functions.all,
                # IoT rules and EventBridge invoke these asynchronously.
                asynchronous=(self.functions.ingest, self.functions.publish, self.functions.flush),
                flush=self.functions.flush,
            ),
            dead_letter_queue=self.iot.dead_letter_queue,
            table=self.data.table,
            websocket_api=self.websocket.api,
            http_api=self.http.api,
            iot_rule_names={spec.suffix: spec.rule_name(config.stage) for spec in TOPIC_RULES},
            alarm_email=config.alarm_email,
        )

        self.hosting.publish(self.dashboard_config())

        CfnOutput(self, "DashboardUrl", value=self.hosting.url, description="The dashboard (sign in there)")
        CfnOutput(
            self, "WebSocketUrl", value=self.websocket.url, description="Browsers connect here (wss://)"
        )
        CfnOutput(self, "HttpApiUrl", value=self.http.url, description="POST /readings is under this URL")
        CfnOutput(
            self,
            "IotDataEndpointCommand",
            value=IOT_DATA_ENDPOINT_COMMAND,
            description="Devices connect (MQTT over TLS, port 8883) to the endpoint this command prints",
        )
        CfnOutput(
            self,
            "DevicePolicyName",
            value=self.iot.device_policy.ref,
            description="Attach to device certificates",
        )
        CfnOutput(self, "TableName", value=self.data.table.table_name)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.iot.dead_letter_queue.queue_url)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(
            self,
            "AlertTopicArn",
            value=self.alerts.topic.topic_arn,
            description="Alerts (warm freezers, silent sensors) are published here: subscribe people to it",
        )
        CfnOutput(
            self,
            "DashboardName",
            value=self.monitoring.dashboard.dashboard_name,
            description="CloudWatch dashboard of this stage",
        )
        CfnOutput(self, "TokenIssuer", value=self.token_issuer.issuer)
        CfnOutput(self, "TokenAudience", value=self.token_issuer.audience)
        if self.token_issuer.user_pool is not None:
            CfnOutput(self, "UserPoolId", value=self.token_issuer.user_pool.user_pool_id)
        if self.token_issuer.domain is not None:
            CfnOutput(self, "SignInDomain", value=self.token_issuer.domain.base_url())

    def dashboard_config(self) -> dict[str, Any]:
        """config.json next to the dashboard (infra/hosting.py): where to connect, where to sign in."""
        config: dict[str, Any] = {"websocketUrl": self.websocket.url, "httpUrl": self.http.base_url}
        if self.token_issuer.sign_in is not None:
            config["auth"] = self.token_issuer.sign_in
        return config
