"""What tells the live path's health: alarms on what breaks it, all notifying one SNS topic,
and a dashboard with the system's own metrics next to Lambda's, DynamoDB's and API
Gateway's (docs/deploy.md says what each alarm means and what to look at).

Every alarm states how it treats missing data, because for most metrics here no data is
the good case (no errors, no throttles) while for the flush's ticks it is the failure."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Annotations, ArnFormat, Aws, Duration, Stack
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

from infra.nag import skip_checkov

# The functions' own metrics (functions/sensor_stream/observability.py).
NAMESPACE = "SensorStream"
SERVICE = "sensor-stream"

PERIOD = Duration.minutes(5)
MINUTE = Duration.minutes(1)
# The flush ticks once a second: ~300 ticks in 5 minutes. Fewer than 240 means more than
# a minute of them went missing (schedule disabled, throttled, failing, lease lost).
FLUSH_MIN_TICKS_PER_PERIOD = 240
# Delivery lag (reading received -> posted): ~2 s by design, ~6 s around a hand-over. A p99
# above this for 3 of 5 minutes means browsers see readings late.
LAG_P99_THRESHOLD_MS = 10_000
# Quarantined messages in 5 minutes before it is a burst (a device sending garbage) rather
# than the odd malformed message.
QUARANTINE_BURST = 10

Comparison = cloudwatch.ComparisonOperator
Missing = cloudwatch.TreatMissingData


@dataclass(frozen=True)
class AlarmedFunctions:
    """The functions, and those Lambda invokes asynchronously (IoT rules, EventBridge),
    whose events can be dropped."""

    all: Sequence[lambda_.Function]
    asynchronous: Sequence[lambda_.Function]
    flush: lambda_.Function


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        functions: AlarmedFunctions,
        dead_letter_queue: sqs.IQueue,
        table: dynamodb.Table,
        websocket_api: apigwv2.WebSocketApi,
        http_api: apigwv2.HttpApi,
        iot_rule_names: Mapping[str, str],
        alarm_email: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.stage = stage
        self.topic = self._alarm_topic(alarm_email)
        self._action = cloudwatch_actions.SnsAction(self.topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        for function in functions.all:
            name = function.node.id
            self._alarm(
                f"{name}-errors",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                threshold=0,
                comparison=Comparison.GREATER_THAN_THRESHOLD,
                missing=Missing.NOT_BREACHING,  # no invocation, no error
                description=f"The {name} function raised errors (or timed out) in the last 5 minutes.",
            )
            self._alarm(
                f"{name}-throttles",
                function.metric_throttles(period=PERIOD, statistic="Sum"),
                threshold=0,
                comparison=Comparison.GREATER_THAN_THRESHOLD,
                missing=Missing.NOT_BREACHING,
                description=f"Lambda throttled the {name} function: the account's concurrency is used up.",
            )
        for function in functions.asynchronous:
            name = function.node.id
            self._alarm(
                f"{name}-async-events-dropped",
                function.metric("AsyncEventsDropped", period=PERIOD, statistic="Sum"),
                threshold=0,
                comparison=Comparison.GREATER_THAN_THRESHOLD,
                missing=Missing.NOT_BREACHING,
                description=f"Lambda dropped events for {name} without running it (too old, or throttled "
                "past the retries): device messages or flush starts were lost.",
            )

        ticks = self._own_metric("FlushTicks", "Sum", PERIOD)
        self._alarm(
            "flush-missed-ticks",
            ticks,
            threshold=FLUSH_MIN_TICKS_PER_PERIOD,
            comparison=Comparison.LESS_THAN_THRESHOLD,
            # Until the first flush runs there are no ticks yet: that must not fire at deploy.
            # No ticks at all later is INSUFFICIENT_DATA, which notifies too (see below).
            missing=Missing.MISSING,
            notify_insufficient_data=True,
            description="The flush ticked fewer than 240 times in 5 minutes (one a second expected), "
            "or not at all: browsers are not receiving readings.",
        )
        self._alarm(
            "flush-shard-start-failures",
            self._own_metric("FlushShardStartFailures", "Sum", PERIOD),
            threshold=0,
            comparison=Comparison.GREATER_THAN_THRESHOLD,
            missing=Missing.NOT_BREACHING,  # one fan-out shard: nothing to start
            description="The flush could not start a fan-out shard's flusher (Lambda Invoke failed, "
            "e.g. throttled): that shard's browsers wait until a start succeeds (docs/scaling.md).",
        )
        self.lag = self._own_metric("EndToEndLag", "p99", MINUTE)
        self._alarm(
            "end-to-end-lag-p99",
            self.lag,
            threshold=LAG_P99_THRESHOLD_MS,
            comparison=Comparison.GREATER_THAN_THRESHOLD,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            missing=Missing.NOT_BREACHING,  # no browser, no post, no lag
            description="99% of posts reached browsers within 10 s of their oldest reading's arrival "
            "in 3 of the last 5 minutes (about 2 s expected).",
        )
        self._alarm(
            "quarantine-burst",
            self._own_metric("MessagesQuarantined", "Sum", PERIOD),
            threshold=QUARANTINE_BURST,
            comparison=Comparison.GREATER_THAN_THRESHOLD,
            missing=Missing.NOT_BREACHING,
            description="More than 10 device messages were quarantined in 5 minutes: a device or "
            "gateway sends messages that are not valid readings.",
        )
        self.rule_failures: dict[str, cloudwatch.IMetric] = {}
        for suffix, rule_name in iot_rule_names.items():
            self.rule_failures[rule_name] = _rule_failures(rule_name)
            self._alarm(
                f"iot-rule-{suffix.replace('_', '-')}-failures",
                self.rule_failures[rule_name],
                threshold=0,
                comparison=Comparison.GREATER_THAN_THRESHOLD,
                missing=Missing.NOT_BREACHING,
                description=f"IoT rule {rule_name} could not hand messages to its function; they went "
                "to the dead-letter queue.",
            )
        self._alarm(
            "dead-letter-queue-not-empty",
            dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=PERIOD, statistic="Maximum"
            ),
            threshold=0,
            comparison=Comparison.GREATER_THAN_THRESHOLD,
            missing=Missing.NOT_BREACHING,
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
            # CloudWatch ignores missing data for AWS/DynamoDB alarms whatever is set.
            missing=Missing.NOT_BREACHING,
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
            missing=Missing.NOT_BREACHING,
            description="The WebSocket API failed to call its functions (5xx to browsers).",
        )
        self._alarm(
            "http-api-5xx",
            http_api.metric_server_error(period=PERIOD, statistic="Sum"),
            threshold=0,
            comparison=Comparison.GREATER_THAN_THRESHOLD,
            missing=Missing.NOT_BREACHING,
            description="POST /readings answered 5xx.",
        )

        self.dashboard = _Dashboard(
            self,
            "Dashboard",
            monitoring=self,
            functions=functions.all,
            table=table,
            websocket_api=websocket_api,
            http_api=http_api,
            dead_letter_queue=dead_letter_queue,
        ).dashboard

    def own_metric(self, name: str, statistic: str, period: Duration = MINUTE) -> cloudwatch.Metric:
        """One of the functions' metrics, of this stage."""
        return self._own_metric(name, statistic, period)

    def _own_metric(self, name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=name,
            dimensions_map={"service": SERVICE, "stage": self.stage},
            statistic=statistic,
            period=period,
        )

    def _alarm_topic(self, alarm_email: str) -> sns.Topic:
        stack = Stack.of(self)
        topic = sns.Topic(
            self, "AlarmTopic", display_name=f"sensor-stream {self.stage} alarms", enforce_ssl=True
        )
        # The topic's policy replaces SNS's default one, which let the account's services
        # publish: without this statement CloudWatch could not notify (the alarm history says
        # "not authorized to perform: SNS:Publish"). Only alarms of this account and region.
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsOfThisAccountPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
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
        skip_checkov(
            topic,
            CKV_AWS_26="Alarm notifications hold alarm names and states only; encrypting the topic needs a "
            "customer managed key whose policy lets CloudWatch use it (AWS managed keys do not).",
        )
        if alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        else:
            Annotations.of(topic).add_warning_v2(
                "sensor-stream:NoAlarmSubscriber",
                "Nobody is subscribed to the alarm topic: deploy with -c alarmEmail=ops@example.com "
                "or subscribe to the AlarmTopicArn output (docs/deploy.md, Alarms).",
            )
        return topic

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        missing: cloudwatch.TreatMissingData,
        description: str,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        notify_insufficient_data: bool = False,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=missing,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        if notify_insufficient_data:
            alarm.add_insufficient_data_action(self._action)
        self.alarms[construct_id] = alarm


def _rule_failures(rule_name: str) -> cloudwatch.MathExpression:
    """Failed actions of one IoT rule. AWS/IoT publishes Failure per rule and action type; a
    Metrics Insights query over the namespace sums them without naming the action type."""
    return cloudwatch.MathExpression(
        expression=f"SELECT SUM(Failure) FROM \"AWS/IoT\" WHERE RuleName = '{rule_name}'",  # noqa: S608 - our rule name
        using_metrics={},
        period=PERIOD,
        label=f"{rule_name} action failures",
    )


class _Dashboard(Construct):
    """``SensorStream-<stage>-<region>``: the live path first, then each service under it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        monitoring: Monitoring,
        functions: Iterable[lambda_.Function],
        table: dynamodb.Table,
        websocket_api: apigwv2.WebSocketApi,
        http_api: apigwv2.HttpApi,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        own = monitoring.own_metric
        functions = list(functions)
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"SensorStream-{monitoring.stage}-{Aws.REGION}",
            default_interval=Duration.hours(3),
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown="# Live path\nDevices → ingest → table → flush (a tick a second) → browsers. "
                "Alarms and what to do: docs/deploy.md, *Alarms*.",
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="End-to-end lag (reading received → posted), ms",
                left=[
                    own("EndToEndLag", "p50").with_(label="p50"),
                    own("EndToEndLag", "p99").with_(label="p99"),
                ],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=LAG_P99_THRESHOLD_MS, label="p99 alarm")
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Readings per minute",
                left=[
                    own("ReadingsStored", "Sum").with_(label="stored"),
                    own("ReadingsDuplicate", "Sum").with_(label="duplicates"),
                    own("ReadingsDelivered", "Sum").with_(label="delivered"),
                ],
                right=[own("MessagesQuarantined", "Sum").with_(label="messages quarantined")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Flush ticks per minute and tick duration (ms)",
                left=[own("FlushTicks", "Sum").with_(label="ticks (60 expected)")],
                right=[
                    own("FlushTickDuration", "p50").with_(label="duration p50"),
                    own("FlushTickDuration", "Maximum").with_(label="duration max"),
                ],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Posts to browsers per minute",
                left=[
                    own("MessagesSent", "Sum").with_(label="posted"),
                    own("PostFailures", "Sum").with_(label="failed"),
                    own("PostsThrottled", "Sum").with_(label="throttled"),
                    own("ConnectionsGone", "Sum").with_(label="gone (410)"),
                    own("ConnectionsClosed", "Sum").with_(label="closed (stalled/failing)"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Connections per minute",
                left=[
                    own("Connections", "Sum").with_(label="accepted"),
                    websocket_api.metric("ConnectCount", period=MINUTE, statistic="Sum").with_(
                        label="connect attempts"
                    ),
                    websocket_api.metric("MessageCount", period=MINUTE, statistic="Sum").with_(
                        label="WebSocket messages"
                    ),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Alerts per minute",
                left=[
                    own("AlertsOpened", "Sum").with_(label="opened"),
                    own("AlertsResolved", "Sum").with_(label="resolved"),
                ],
                right=[own("AlertPublishFailures", "Sum").with_(label="not published to SNS")],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown="# Lambda", width=24, height=1),
        )
        self.dashboard.add_widgets(
            _per_function("Invocations", "Sum", functions),
            _per_function("Errors", "Sum", functions),
            _per_function("Throttles", "Sum", functions),
            _per_function("Duration", "p99", functions),
        )
        self.dashboard.add_widgets(
            _per_function("ConcurrentExecutions", "Maximum", functions),
            _per_function("AsyncEventsDropped", "Sum", functions),
            _per_function("AsyncEventAge", "Maximum", functions),
            cloudwatch.GraphWidget(
                title="Dead-letter queue (messages)",
                left=[dead_letter_queue.metric_approximate_number_of_messages_visible(period=MINUTE)],
                width=6,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown="# DynamoDB, API Gateway, IoT", width=24, height=1),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Table capacity consumed per minute",
                left=[
                    table.metric_consumed_read_capacity_units(period=MINUTE, statistic="Sum"),
                    table.metric_consumed_write_capacity_units(period=MINUTE, statistic="Sum"),
                ],
                right=[
                    table.metric("ReadThrottleEvents", period=MINUTE, statistic="Sum"),
                    table.metric("WriteThrottleEvents", period=MINUTE, statistic="Sum"),
                ],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title="WebSocket API",
                left=[
                    websocket_api.metric("IntegrationError", period=MINUTE, statistic="Sum"),
                    websocket_api.metric("ExecutionError", period=MINUTE, statistic="Sum"),
                    websocket_api.metric("ClientError", period=MINUTE, statistic="Sum"),
                ],
                right=[websocket_api.metric("IntegrationLatency", period=MINUTE, statistic="p99")],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title="HTTP API (POST /readings)",
                left=[
                    http_api.metric_count(period=MINUTE),
                    http_api.metric_client_error(period=MINUTE),
                    http_api.metric_server_error(period=MINUTE),
                ],
                right=[http_api.metric_latency(period=MINUTE, statistic="p99")],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title="IoT rule action failures",
                left=list(monitoring.rule_failures.values()),
                width=6,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=list(monitoring.alarms.values()), width=24, height=4
            )
        )


def _per_function(
    metric_name: str, statistic: str, functions: Sequence[lambda_.Function]
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=f"{metric_name} ({statistic})",
        left=[
            function.metric(metric_name, period=MINUTE, statistic=statistic).with_(label=function.node.id)
            for function in functions
        ],
        width=6,
    )
