"""The table, the alarms and the stack outputs."""

import json
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from sensor_stream.iot_rules import TOPIC_RULES, TopicRuleSpec
from sensor_stream.table import ATTRIBUTE_DEFINITIONS, KEY_SCHEMA, TTL_ATTRIBUTE
from tests.infra.synthesis import ALARM_EMAIL, FUNCTION_NAMES, Synthesized


def _alarm(synthesized: Synthesized, name: str) -> dict[str, Any]:
    return synthesized.resource(synthesized.stack.monitoring.alarms[name])["Properties"]


def test_table_matches_the_shared_key_schema(synthesized: Synthesized) -> None:
    table = synthesized.resource(synthesized.stack.data.table)
    properties = table["Properties"]
    assert properties["KeySchema"] == KEY_SCHEMA
    assert properties["AttributeDefinitions"] == ATTRIBUTE_DEFINITIONS
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert "GlobalSecondaryIndexes" not in properties
    assert table["DeletionPolicy"] == "Retain"
    assert properties["DeletionProtectionEnabled"] is True


def test_user_pool_is_retained_and_protected_from_deletion(synthesized: Synthesized) -> None:
    pool = synthesized.resource(synthesized.stack.token_issuer.user_pool)  # type: ignore[arg-type]
    assert pool["DeletionPolicy"] == "Retain"
    assert pool["Properties"]["DeletionProtection"] == "ACTIVE"


def test_every_alarm_notifies_the_alarm_topic(synthesized: Synthesized) -> None:
    topic = {"Ref": synthesized.logical_id(synthesized.stack.monitoring.topic)}
    alarms = synthesized.template.find_resources("AWS::CloudWatch::Alarm")
    assert set(synthesized.stack.monitoring.alarms) == {
        *(f"{name}-errors" for name in FUNCTION_NAMES),
        *(f"{name}-throttles" for name in FUNCTION_NAMES),
        "ingest-async-events-dropped",
        "publish-async-events-dropped",
        "flush-async-events-dropped",
        "flush-missed-ticks",
        "flush-shard-start-failures",
        "end-to-end-lag-p99",
        "quarantine-burst",
        "iot-rule-telemetry-failures",
        "iot-rule-command-ack-failures",
        "dead-letter-queue-not-empty",
        "table-throttles",
        "websocket-execution-errors",
        "http-api-5xx",
    }
    assert len(alarms) == len(synthesized.stack.monitoring.alarms)
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [topic]
        assert alarm["Properties"]["OKActions"] == [topic]


def _topic_statements(synthesized: Synthesized) -> list[dict[str, Any]]:
    topic = {"Ref": synthesized.logical_id(synthesized.stack.monitoring.topic)}
    (policy,) = [
        resource["Properties"]
        for resource in synthesized.template.find_resources("AWS::SNS::TopicPolicy").values()
        if resource["Properties"]["Topics"] == [topic]
    ]
    return policy["PolicyDocument"]["Statement"]


def test_cloudwatch_alarms_of_this_account_may_publish_to_the_alarm_topic(synthesized: Synthesized) -> None:
    # A topic policy replaces SNS's default one: without this, CloudWatch could not notify.
    topic = {"Ref": synthesized.logical_id(synthesized.stack.monitoring.topic)}
    (allow,) = [s for s in _topic_statements(synthesized) if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish"
    assert allow["Resource"] == topic
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = allow["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Join"][1]
    assert source_arn[-1] == ":alarm:*"
    assert {"Ref": "AWS::AccountId"} in source_arn
    assert {"Ref": "AWS::Region"} in source_arn
    # Still TLS only.
    (deny,) = [s for s in _topic_statements(synthesized) if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_alarm_email_is_subscribed(synthesized_external_issuer: Synthesized) -> None:
    synthesized_external_issuer.template.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "email",
            "Endpoint": ALARM_EMAIL,
            "TopicArn": {
                "Ref": synthesized_external_issuer.logical_id(
                    synthesized_external_issuer.stack.monitoring.topic
                )
            },
        },
    )


def test_synthesis_warns_when_nobody_gets_the_alarms(
    synthesized: Synthesized, synthesized_external_issuer: Synthesized
) -> None:
    synthesized.template.resource_count_is("AWS::SNS::Subscription", 0)
    message = Match.string_like_regexp("Nobody is subscribed to the alarm topic")
    assert Annotations.from_stack(synthesized.stack).find_warning("*", message)
    assert not Annotations.from_stack(synthesized_external_issuer.stack).find_warning("*", message)


def test_function_error_alarms_fire_on_any_error(synthesized: Synthesized) -> None:
    for name in ("ingest", "connect", "flush", "publish"):
        alarm = _alarm(synthesized, f"{name}-errors")
        function = getattr(synthesized.stack.functions, name)
        assert alarm["MetricName"] == "Errors"
        assert alarm["Dimensions"] == [
            {"Name": "FunctionName", "Value": {"Ref": synthesized.logical_id(function)}}
        ]
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def _own_dimensions(stage: str = "prod") -> list[dict[str, str]]:
    return [{"Name": "service", "Value": "sensor-stream"}, {"Name": "stage", "Value": stage}]


def test_missed_flush_ticks_alarm_counts_ticks_and_reports_silence_without_firing_at_deploy(
    synthesized: Synthesized,
) -> None:
    alarm = _alarm(synthesized, "flush-missed-ticks")
    topic = {"Ref": synthesized.logical_id(synthesized.stack.monitoring.topic)}
    # One FlushTicks per tick, ~60 a minute (invocations overlap each minute: not a count of ticks).
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "SensorStream",
        "FlushTicks",
        "Sum",
    )
    assert sorted(alarm["Dimensions"], key=lambda d: d["Name"]) == _own_dimensions()
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["Period"] == 300
    assert 200 <= alarm["Threshold"] <= 300  # ~300 ticks in five minutes
    # Before the first tick there is no data: "missing" keeps the new alarm in
    # INSUFFICIENT_DATA instead of ALARM, and a flush that stops altogether makes it
    # INSUFFICIENT_DATA again, which notifies.
    assert alarm["TreatMissingData"] == "missing"
    assert alarm["InsufficientDataActions"] == [topic]


def test_staging_alarms_watch_stagings_metrics(synthesized_external_issuer: Synthesized) -> None:
    alarm = _alarm(synthesized_external_issuer, "flush-missed-ticks")
    assert sorted(alarm["Dimensions"], key=lambda d: d["Name"]) == _own_dimensions("staging")


EXPECTED_MISSING_DATA = {
    # No data is the good case: no error, no throttle, no dropped event, no post (no lag).
    **{f"{name}-errors": "notBreaching" for name in FUNCTION_NAMES},
    **{f"{name}-throttles": "notBreaching" for name in FUNCTION_NAMES},
    **{f"{name}-async-events-dropped": "notBreaching" for name in ("ingest", "publish", "flush")},
    "end-to-end-lag-p99": "notBreaching",
    "quarantine-burst": "notBreaching",
    "iot-rule-telemetry-failures": "notBreaching",
    "iot-rule-command-ack-failures": "notBreaching",
    "dead-letter-queue-not-empty": "notBreaching",
    "table-throttles": "notBreaching",
    "websocket-execution-errors": "notBreaching",
    "http-api-5xx": "notBreaching",
    # No data is the failure, but not before the first tick.
    "flush-missed-ticks": "missing",
    "flush-shard-start-failures": "notBreaching",
}


def test_every_alarm_states_how_it_treats_missing_data(synthesized: Synthesized) -> None:
    assert set(EXPECTED_MISSING_DATA) == set(synthesized.stack.monitoring.alarms)
    for name, expected in EXPECTED_MISSING_DATA.items():
        assert _alarm(synthesized, name)["TreatMissingData"] == expected, name


def test_lag_alarm_watches_the_99th_percentile_minute_by_minute(synthesized: Synthesized) -> None:
    alarm = _alarm(synthesized, "end-to-end-lag-p99")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("SensorStream", "EndToEndLag")
    assert alarm["ExtendedStatistic"] == "p99"
    assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (60, 5, 3)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == 10_000  # ms; ~2,000 expected


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_throttles_of_each_function_alarm(synthesized: Synthesized, name: str) -> None:
    alarm = _alarm(synthesized, f"{name}-throttles")
    function = getattr(synthesized.stack.functions, name)
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "Throttles", "Sum")
    assert alarm["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": synthesized.logical_id(function)}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


@pytest.mark.parametrize("name", ["ingest", "publish", "flush"])
def test_dropped_asynchronous_events_alarm(synthesized: Synthesized, name: str) -> None:
    alarm = _alarm(synthesized, f"{name}-async-events-dropped")
    function = getattr(synthesized.stack.functions, name)
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "AsyncEventsDropped")
    assert alarm["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": synthesized.logical_id(function)}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


@pytest.mark.parametrize("spec", TOPIC_RULES, ids=lambda spec: spec.suffix)
def test_iot_rule_action_failures_alarm(synthesized: Synthesized, spec: TopicRuleSpec) -> None:
    alarm = _alarm(synthesized, f"iot-rule-{spec.suffix.replace('_', '-')}-failures")
    (query,) = alarm["Metrics"]
    # Every action type of the rule, without naming one (Metrics Insights).
    assert query["Expression"] == (
        f"SELECT SUM(Failure) FROM \"AWS/IoT\" WHERE RuleName = '{spec.rule_name('prod')}'"  # noqa: S608
    )
    assert query["Period"] == 300
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_quarantine_burst_alarm(synthesized: Synthesized) -> None:
    alarm = _alarm(synthesized, "quarantine-burst")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "SensorStream",
        "MessagesQuarantined",
        "Sum",
    )
    assert sorted(alarm["Dimensions"], key=lambda d: d["Name"]) == _own_dimensions()
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert 1 <= alarm["Threshold"] <= 100


def _dashboard_body(synthesized: Synthesized) -> str:
    (dashboard,) = synthesized.template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    # A Fn::Join of JSON text and references: the text is enough to find the metrics.
    return "".join(part if isinstance(part, str) else json.dumps(part) for part in body["Fn::Join"][1])


def test_dashboard_is_named_for_its_stage_and_region(synthesized: Synthesized) -> None:
    (dashboard,) = synthesized.template.find_resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == {
        "Fn::Join": ["", ["SensorStream-prod-", {"Ref": "AWS::Region"}]]
    }


def test_dashboard_shows_the_live_path_and_the_services_under_it(synthesized: Synthesized) -> None:
    body = _dashboard_body(synthesized)
    for own in (
        "ReadingsStored",
        "ReadingsDuplicate",
        "MessagesQuarantined",
        "FlushTicks",
        "FlushTickDuration",
        "MessagesSent",
        "PostFailures",
        "ConnectionsGone",
        "Connections",
        "EndToEndLag",
        "AlertsOpened",
        "AlertsResolved",
    ):
        assert f'"{own}"' in body, own
    # The lag's percentiles.
    assert '"stat":"p50"' in body
    assert '"stat":"p99"' in body
    for service_metric in (
        '"AWS/Lambda","Invocations"',
        '"AWS/Lambda","Throttles"',
        '"AWS/Lambda","AsyncEventsDropped"',
        '"AWS/DynamoDB","ConsumedWriteCapacityUnits"',
        '"AWS/ApiGateway","ConnectCount"',
        '"AWS/ApiGateway","5xx"',
        "SELECT SUM(Failure)",
    ):
        assert service_metric in body, service_metric
    assert '"type":"alarm"' in body


def test_dead_letter_queue_alarm_fires_on_the_first_message(synthesized: Synthesized) -> None:
    alarm = _alarm(synthesized, "dead-letter-queue-not-empty")
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    queue_id = synthesized.logical_id(synthesized.stack.iot.dead_letter_queue)
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_table_throttle_alarm_adds_read_and_write_throttles(synthesized: Synthesized) -> None:
    alarm = _alarm(synthesized, "table-throttles")
    table = {"Ref": synthesized.logical_id(synthesized.stack.data.table)}
    metrics = {
        query["MetricStat"]["Metric"]["MetricName"]: query
        for query in alarm["Metrics"]
        if "MetricStat" in query
    }
    assert set(metrics) == {"ReadThrottleEvents", "WriteThrottleEvents"}
    for query in metrics.values():
        assert query["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "TableName", "Value": table}]
    (expression,) = [query for query in alarm["Metrics"] if "Expression" in query]
    assert expression["Expression"] == "readThrottles + writeThrottles"


def test_api_alarms_watch_server_side_failures(synthesized: Synthesized) -> None:
    websocket = _alarm(synthesized, "websocket-execution-errors")
    assert (websocket["Namespace"], websocket["MetricName"]) == ("AWS/ApiGateway", "ExecutionError")
    assert websocket["Dimensions"] == [
        {"Name": "ApiId", "Value": {"Ref": synthesized.logical_id(synthesized.stack.websocket.api)}}
    ]
    http = _alarm(synthesized, "http-api-5xx")
    assert (http["Namespace"], http["MetricName"]) == ("AWS/ApiGateway", "5xx")
    assert http["Dimensions"] == [
        {"Name": "ApiId", "Value": {"Ref": synthesized.logical_id(synthesized.stack.http.api)}}
    ]


def test_outputs_tell_ops_where_to_connect(synthesized: Synthesized) -> None:
    outputs = synthesized.template_json["Outputs"]
    assert outputs["WebSocketUrl"]["Value"]["Fn::Join"][1][0] == "wss://"
    assert outputs["HttpApiUrl"]["Value"]["Fn::Join"][1][0] == "https://"
    assert (
        "aws iot describe-endpoint --endpoint-type iot:Data-ATS" in outputs["IotDataEndpointCommand"]["Value"]
    )
    assert outputs["DevicePolicyName"]["Value"] == {
        "Ref": synthesized.logical_id(synthesized.stack.iot.device_policy)
    }
    assert {
        "UserPoolId",
        "TokenIssuer",
        "TokenAudience",
        "AlarmTopicArn",
        "DeadLetterQueueUrl",
        "DashboardName",
    } <= set(outputs)


def test_smoke_finds_its_metrics_on_the_dashboard(synthesized: Synthesized) -> None:
    # make smoke reads the deployed dashboard (scripts/smoke.py): the same parser on this one.
    from scripts.smoke import own_metric_queries

    (dashboard,) = synthesized.template.find_resources("AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    body = json.loads("".join(part if isinstance(part, str) else "deploy-time value" for part in parts))
    labels = {query["Label"] for query in own_metric_queries(body)}
    assert {"ReadingsStored Sum", "FlushTicks Sum", "EndToEndLag p50", "EndToEndLag p99"} <= labels
