"""Alarms on what breaks live delivery, all notifying one SNS topic (docs/deploy.md says what
each one means and what to look at)."""

from collections.abc import Iterable

from aws_cdk import Annotations, ArnFormat, Duration, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

PERIOD = Duration.minutes(5)
# EventBridge starts flush once a minute, so five are expected per period; fewer than three
# means ticks are being missed (schedule disabled, throttled or failing to start).
FLUSH_MIN_INVOCATIONS_PER_PERIOD = 3

Comparison = cloudwatch.ComparisonOperator
Missing = cloudwatch.TreatMissingData


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Iterable[lambda_.Function],
        flush_function: lambda_.Function,
        dead_letter_queue: sqs.IQueue,
        table: dynamodb.Table,
        websocket_api: apigwv2.WebSocketApi,
        http_api: apigwv2.HttpApi,
        alarm_email: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.topic = sns.Topic(self, "AlarmTopic", display_name="sensor-stream alarms", enforce_ssl=True)
        # The topic's policy replaces SNS's default one, which let the account's services
        # publish: without this statement CloudWatch could not notify (the alarm history says
        # "not authorized to perform: SNS:Publish"). Only alarms of this account and region.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsOfThisAccountPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        else:
            Annotations.of(self.topic).add_warning_v2(
                "sensor-stream:NoAlarmSubscriber",
                "Nobody is subscribed to the alarm topic: deploy with -c alarmEmail=ops@example.com "
                "or subscribe to the AlarmTopicArn output (docs/deploy.md, Alarms).",
            )
        self._action = cloudwatch_actions.SnsAction(self.topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        for function in functions:
            name = function.node.id
            self._alarm(
                f"{name}-errors",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                threshold=0,
                comparison=Comparison.GREATER_THAN_THRESHOLD,
                description=f"The {name} function raised errors (or timed out) in the last 5 minutes.",
            )
        self._alarm(
            "flush-missed-ticks",
            flush_function.metric_invocations(period=PERIOD, statistic="Sum"),
            threshold=FLUSH_MIN_INVOCATIONS_PER_PERIOD,
            comparison=Comparison.LESS_THAN_THRESHOLD,
            # No data at all means flush never ran: that is the failure this alarm is for.
            missing=Missing.BREACHING,
            description="Flush started fewer than 3 tick loops in 5 minutes (expected 5): "
            "browsers are not receiving readings.",
        )
        self._alarm(
            "dead-letter-queue-not-empty",
            dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=PERIOD, statistic="Maximum"
            ),
            threshold=0,
            comparison=Comparison.GREATER_THAN_THRESHOLD,
            description="Device messages or asynchronous invocations that could not be processed "
            "wait in the dead-letter queue.",
        )
        self._alarm(
            "table-throttles",
            cloudwatch.MathExpression(
                expression="readThrottles + writeThrottles",
                using_metrics={
                    "readThrottles": table.metric("ReadThrottleEvents", period=PERIOD, statistic="Sum"),
                    "writeThrottles": table.metric("WriteThrottleEvents", period=PERIOD, statistic="Sum"),
                },
                period=PERIOD,
                label="DynamoDB throttle events",
            ),
            threshold=0,
            comparison=Comparison.GREATER_THAN_THRESHOLD,
            description="DynamoDB throttled reads or writes of the table (a hot partition or the "
            "account's on-demand limits).",
        )
        self._alarm(
            "websocket-execution-errors",
            # IntegrationError also counts the 401s of refused connections; ExecutionError only
            # counts failures to run the integration, which the browser sees as a 5xx.
            websocket_api.metric("ExecutionError", period=PERIOD, statistic="Sum"),
            threshold=0,
            comparison=Comparison.GREATER_THAN_THRESHOLD,
            description="The WebSocket API failed to call its functions (5xx to browsers).",
        )
        self._alarm(
            "http-api-5xx",
            http_api.metric_server_error(period=PERIOD, statistic="Sum"),
            threshold=0,
            comparison=Comparison.GREATER_THAN_THRESHOLD,
            description="POST /readings answered 5xx.",
        )

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        description: str,
        missing: cloudwatch.TreatMissingData = Missing.NOT_BREACHING,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=1,
            treat_missing_data=missing,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms[construct_id] = alarm
