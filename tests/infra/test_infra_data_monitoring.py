"""The table, the alarms and the stack outputs."""

from typing import Any

from aws_cdk.assertions import Annotations, Match

from sensor_stream.table import ATTRIBUTE_DEFINITIONS, KEY_SCHEMA, TTL_ATTRIBUTE
from tests.infra.synthesis import ALARM_EMAIL, Synthesized


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


def test_every_alarm_notifies_the_alarm_topic(synthesized: Synthesized) -> None:
    topic = {"Ref": synthesized.logical_id(synthesized.stack.monitoring.topic)}
    alarms = synthesized.template.find_resources("AWS::CloudWatch::Alarm")
    assert set(synthesized.stack.monitoring.alarms) == {
        "ingest-errors",
        "connect-errors",
        "flush-errors",
        "publish-errors",
        "flush-missed-ticks",
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


def test_missed_flush_ticks_alarm_treats_silence_as_failure(synthesized: Synthesized) -> None:
    alarm = _alarm(synthesized, "flush-missed-ticks")
    assert alarm["MetricName"] == "Invocations"
    assert alarm["Dimensions"][0]["Value"] == {
        "Ref": synthesized.logical_id(synthesized.stack.functions.flush)
    }
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["Period"] == 300
    assert 1 <= alarm["Threshold"] <= 5  # five loops start in five minutes
    assert alarm["TreatMissingData"] == "breaching"


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
    assert {"UserPoolId", "TokenIssuer", "TokenAudience", "AlarmTopicArn", "DeadLetterQueueUrl"} <= set(
        outputs
    )
