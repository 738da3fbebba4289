"""The AWS half of ``make smoke`` (scripts/smoke.py) on moto: the stage's outputs, a
temporary Cognito user and IoT device (and their removal), the dashboard's metrics, and an
alarm's notification read from the topic through a temporary queue. moto's CloudWatch does
not notify SNS, so the test stands in for that one hop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from scripts.smoke import Stage, own_metric_queries

STACK = "SensorStream-prod"
ALARM = "SensorStream-prod-Monitoringquarantineburst1A2B3C4D-ABCDEF123456"
OWN = ["service", "sensor-stream", "stage", "prod"]
DASHBOARD_BODY = {
    "widgets": [
        {"type": "text", "properties": {"markdown": "# Live path"}},
        {
            "type": "metric",
            "properties": {
                "metrics": [
                    ["SensorStream", "EndToEndLag", *OWN, {"label": "p50", "period": 60, "stat": "p50"}],
                    ["SensorStream", "EndToEndLag", *OWN, {"label": "p99", "period": 60, "stat": "p99"}],
                    ["SensorStream", "ReadingsStored", *OWN, {"period": 60, "stat": "Sum"}],
                    ["SensorStream", "FlushTicks", *OWN, {"period": 60, "stat": "Sum"}],
                    ["AWS/Lambda", "Errors", "FunctionName", "f", {"period": 60, "stat": "Sum"}],
                ]
            },
        },
    ]
}


@pytest.fixture
def aws() -> Iterator[tuple[Stage, dict[str, Any]]]:
    with mock_aws():
        session = boto3.session.Session(region_name="eu-west-1")
        topic = session.client("sns").create_topic(Name="alarms")["TopicArn"]
        cloudwatch = session.client("cloudwatch")
        cloudwatch.put_dashboard(
            DashboardName="SensorStream-prod-eu-west-1", DashboardBody=json.dumps(DASHBOARD_BODY)
        )
        cloudwatch.put_metric_alarm(
            AlarmName=ALARM,
            Namespace="SensorStream",
            MetricName="MessagesQuarantined",
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=10,
            ComparisonOperator="GreaterThanThreshold",
            AlarmActions=[topic],
        )
        cognito = session.client("cognito-idp")
        pool = cognito.create_user_pool(PoolName="users")["UserPool"]["Id"]
        client = cognito.create_user_pool_client(
            UserPoolId=pool, ClientName="dashboard", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"]
        )["UserPoolClient"]["ClientId"]
        session.client("iot").create_policy(
            policyName="devices", policyDocument=json.dumps({"Statement": []})
        )
        outputs = {
            "AlarmTopicArn": topic,
            "DashboardName": "SensorStream-prod-eu-west-1",
            "UserPoolId": pool,
            "TokenAudience": client,
            "DevicePolicyName": "devices",
            "WebSocketUrl": "wss://example.execute-api.eu-west-1.amazonaws.com/live",
        }
        template = {
            "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
        yield Stage(STACK, session), outputs


def test_the_stage_is_read_from_its_stack_outputs(aws: tuple[Stage, dict[str, Any]]) -> None:
    stage, outputs = aws
    assert stage.outputs == outputs


def test_a_temporary_user_of_the_org_gets_an_id_token_and_is_removed(
    aws: tuple[Stage, dict[str, Any]],
) -> None:
    stage, outputs = aws
    cognito = stage.client("cognito-idp")
    with ExitStack() as cleanup:
        token = stage.token("smoke-abc", cleanup)
        user = cognito.admin_get_user(UserPoolId=outputs["UserPoolId"], Username="smoke-abc-user")
        assert {"Name": "custom:org", "Value": "smoke-abc"} in user["UserAttributes"]
    assert token.count(".") == 2  # a JWT
    assert cognito.list_users(UserPoolId=outputs["UserPoolId"])["Users"] == []


def test_a_temporary_device_gets_a_certificate_with_the_device_policy_and_is_removed(
    aws: tuple[Stage, dict[str, Any]],
) -> None:
    stage, _ = aws
    iot = stage.client("iot")
    with ExitStack() as cleanup:
        identity = stage.device("smoke-abc", "smoke-abc-device", cleanup)
        assert identity.client_id == "smoke-abc-device"
        assert Path(identity.certificate_file or "").read_text().startswith("-----BEGIN CERTIFICATE-----")
        thing = iot.describe_thing(thingName="smoke-abc-device")
        assert thing["attributes"] == {"orgId": "smoke-abc"}
        (principal,) = iot.list_thing_principals(thingName="smoke-abc-device")["principals"]
        assert [p["policyName"] for p in iot.list_attached_policies(target=principal)["policies"]] == [
            "devices"
        ]
    assert iot.list_things()["things"] == []
    assert iot.list_certificates()["certificates"] == []
    assert not Path(identity.certificate_file or "").exists()


def test_dashboard_metrics_are_queried_with_their_statistics(aws: tuple[Stage, dict[str, Any]]) -> None:
    stage, _ = aws
    stage.client("cloudwatch").put_metric_data(
        Namespace="SensorStream",
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [
                    {"Name": "service", "Value": "sensor-stream"},
                    {"Name": "stage", "Value": "prod"},
                ],
                "Value": value,
                "Timestamp": datetime.now(UTC),
            }
            for name, value in (("FlushTicks", 60.0), ("ReadingsStored", 2.0))
        ],
    )

    queries = stage.dashboard_metrics()
    values = stage.metric_values(queries)

    assert [query["Label"] for query in queries] == [
        "EndToEndLag p50",
        "EndToEndLag p99",
        "ReadingsStored Sum",
        "FlushTicks Sum",
    ]
    assert sum(values["FlushTicks Sum"]) == 60
    assert sum(values["ReadingsStored Sum"]) == 2


def test_an_alarm_set_to_alarm_is_seen_on_the_topic_and_everything_is_removed(
    aws: tuple[Stage, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    stage, outputs = aws
    cloudwatch, sns, sqs = stage.client("cloudwatch"), stage.client("sns"), stage.client("sqs")

    class NotifyingCloudWatch:
        """moto's CloudWatch, plus the notification AWS's would publish to the alarm's topic."""

        def __getattr__(self, name: str) -> Any:
            return getattr(cloudwatch, name)

        def set_alarm_state(self, AlarmName: str, StateValue: str, StateReason: str) -> None:
            cloudwatch.set_alarm_state(AlarmName=AlarmName, StateValue=StateValue, StateReason=StateReason)
            if StateValue == "ALARM":
                sns.publish(
                    TopicArn=outputs["AlarmTopicArn"],
                    Message=json.dumps({"AlarmName": AlarmName, "NewStateValue": StateValue}),
                )

    clients = {"cloudwatch": NotifyingCloudWatch(), "sns": sns, "sqs": sqs}
    monkeypatch.setattr(stage, "client", lambda service: clients[service])

    detail = stage.alarm_reaches_topic(timeout=5)

    assert detail == f"{ALARM} -> ALARM reached {outputs['AlarmTopicArn']}"
    assert cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["StateValue"] == "OK"
    assert sqs.list_queues().get("QueueUrls", []) == []
    assert sns.list_subscriptions_by_topic(TopicArn=outputs["AlarmTopicArn"])["Subscriptions"] == []


def test_metrics_of_other_namespaces_are_left_out() -> None:
    queries = own_metric_queries(DASHBOARD_BODY)
    assert all(query["MetricStat"]["Metric"]["Namespace"] == "SensorStream" for query in queries)
    assert queries[1]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "service", "Value": "sensor-stream"},
        {"Name": "stage", "Value": "prod"},
    ]
