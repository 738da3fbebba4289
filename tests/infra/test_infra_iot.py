"""IoT Core: the topic rules (same SQL as the local rule runner), their dead-letter queue and
the device policy."""

import re
from typing import Any

import pytest

from infra.iot import device_topic
from sensor_stream.iot_rules import (
    COMMAND_ACK_RULE,
    IOT_SQL_VERSION,
    TELEMETRY_RULE,
    TOPIC_RULES,
    TopicRuleSpec,
)
from tests.infra.synthesis import STAGING, Synthesized, iot_arn

THING = "${iot:Connection.Thing.ThingName}"
ORG = "${iot:Connection.Thing.Attributes[orgId]}"


def _statements_by_action(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    policy = synthesized.resource(synthesized.stack.iot.device_policy)["Properties"]["PolicyDocument"]
    statements = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert isinstance(statement["Action"], str), "one action per statement keeps the scoping readable"
        statements[statement["Action"]] = statement
    return statements


@pytest.mark.parametrize("spec", TOPIC_RULES, ids=lambda spec: spec.name)
def test_topic_rule_runs_the_shared_sql_into_its_function(
    synthesized: Synthesized, spec: TopicRuleSpec
) -> None:
    stack = synthesized.stack
    target_id = synthesized.logical_id(stack.functions.by_name[spec.target])
    rule = synthesized.resource(stack.iot.rules[spec.name])["Properties"]

    # Stage-qualified: staging and prod each have their own rules in one account and region.
    assert rule["RuleName"] == spec.rule_name("prod") == f"sensor_stream_prod_{spec.suffix}"
    payload = rule["TopicRulePayload"]
    assert payload["Sql"] == spec.deployed_sql == f"{spec.sql} WHERE {spec.where}"
    assert payload["AwsIotSqlVersion"] == IOT_SQL_VERSION == "2016-03-23"
    assert payload["RuleDisabled"] is False
    assert payload["Actions"] == [{"Lambda": {"FunctionArn": {"Fn::GetAtt": [target_id, "Arn"]}}}]


def _where_holds(where: str, topic: str) -> bool:
    """The rule's WHERE (``topic(n) = 'level' AND ...``) on a topic as IoT SQL numbers it
    (after a Basic Ingest prefix)."""
    levels = topic.split("/")
    for condition in where.split(" AND "):
        match = re.fullmatch(r"topic\((\d+)\) = '([^']*)'", condition)
        assert match, f"unexpected condition {condition!r}"
        position, expected = int(match[1]), match[2]
        if position > len(levels) or levels[position - 1] != expected:
            return False
    return True


@pytest.mark.parametrize(
    ("spec", "topic", "holds"),
    [
        (TELEMETRY_RULE, "orgs/acme/devices/gw-1/telemetry", True),
        (TELEMETRY_RULE, "x/acme/y/gw-1/telemetry", False),
        (TELEMETRY_RULE, "orgs/acme/devices/gw-1/commands", False),
        (TELEMETRY_RULE, "acme/gw-1/telemetry", False),
        (COMMAND_ACK_RULE, "orgs/acme/devices/gw-1/commands/ack", True),
        (COMMAND_ACK_RULE, "orgs/acme/devices/gw-1/telemetry", False),
        (COMMAND_ACK_RULE, "orgs/acme/devices/gw-1/commands/nack", False),
    ],
)
def test_basic_ingest_topics_must_have_the_rules_shape(spec: TopicRuleSpec, topic: str, holds: bool) -> None:
    # Published as $aws/rules/<rule>/<topic>, the FROM filter is skipped: the WHERE decides.
    assert _where_holds(spec.where, topic) is holds


@pytest.mark.parametrize("spec", TOPIC_RULES, ids=lambda spec: spec.name)
def test_topic_rule_keeps_failed_messages_in_the_dead_letter_queue(
    synthesized: Synthesized, spec: TopicRuleSpec
) -> None:
    iot = synthesized.stack.iot
    error_action = synthesized.resource(iot.rules[spec.name])["Properties"]["TopicRulePayload"]["ErrorAction"]
    assert error_action["Sqs"]["QueueUrl"] == {"Ref": synthesized.logical_id(iot.dead_letter_queue)}

    role_id = error_action["Sqs"]["RoleArn"]["Fn::GetAtt"][0]
    assert synthesized.resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0][
        "Principal"
    ] == {"Service": "iot.amazonaws.com"}


@pytest.mark.parametrize("spec", TOPIC_RULES, ids=lambda spec: spec.name)
def test_only_its_rule_may_invoke_the_target(synthesized: Synthesized, spec: TopicRuleSpec) -> None:
    stack = synthesized.stack
    target_id = synthesized.logical_id(stack.functions.by_name[spec.target])
    rule_id = synthesized.logical_id(stack.iot.rules[spec.name])
    permissions = synthesized.template.find_resources(
        "AWS::Lambda::Permission",
        {
            "Properties": {
                "Principal": "iot.amazonaws.com",
                "FunctionName": {"Fn::GetAtt": [target_id, "Arn"]},
            }
        },
    )
    (permission,) = permissions.values()
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}
    assert permission["Properties"]["SourceAccount"] == {"Ref": "AWS::AccountId"}


@pytest.mark.parametrize("target", sorted({spec.target for spec in TOPIC_RULES}))
def test_failed_asynchronous_invocations_are_kept(synthesized: Synthesized, target: str) -> None:
    stack = synthesized.stack
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": synthesized.logical_id(stack.functions.by_name[target])},
            "DestinationConfig": {
                "OnFailure": {
                    "Destination": {
                        "Fn::GetAtt": [synthesized.logical_id(stack.iot.dead_letter_queue), "Arn"]
                    }
                }
            },
        },
    )


def test_dead_letter_queue_is_encrypted_and_ssl_only(synthesized: Synthesized) -> None:
    queue_id = synthesized.logical_id(synthesized.stack.iot.dead_letter_queue)
    assert synthesized.resources[queue_id]["Properties"]["SqsManagedSseEnabled"] is True
    (queue_policy,) = synthesized.template.find_resources("AWS::SQS::QueuePolicy").values()
    assert queue_policy["Properties"]["Queues"] == [{"Ref": queue_id}]
    (statement,) = queue_policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_device_topic_names_its_own_org_and_thing() -> None:
    assert device_topic("orgs/+/devices/+/telemetry") == f"orgs/{ORG}/devices/{THING}/telemetry"
    with pytest.raises(ValueError, match="org and a device"):
        device_topic("orgs/+/telemetry")


def test_device_connects_only_as_its_own_attached_thing(synthesized: Synthesized) -> None:
    connect = _statements_by_action(synthesized)["iot:Connect"]
    assert connect["Resource"] == iot_arn(f"client/{THING}")
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}


def test_device_publishes_only_its_own_telemetry_and_acks(synthesized: Synthesized) -> None:
    publish = _statements_by_action(synthesized)["iot:Publish"]
    own = f"orgs/{ORG}/devices/{THING}"
    assert publish["Resource"] == [
        iot_arn(f"topic/{own}/telemetry"),
        iot_arn(f"topic/$aws/rules/sensor_stream_prod_telemetry/{own}/telemetry"),
        iot_arn(f"topic/{own}/commands/ack"),
        iot_arn(f"topic/$aws/rules/sensor_stream_prod_command_ack/{own}/commands/ack"),
    ]


def test_staging_devices_use_the_staging_rules(synthesized_external_issuer: Synthesized) -> None:
    assert synthesized_external_issuer.stack.config.stage == STAGING
    publish = _statements_by_action(synthesized_external_issuer)["iot:Publish"]
    own = f"orgs/{ORG}/devices/{THING}"
    assert iot_arn(f"topic/$aws/rules/sensor_stream_staging_telemetry/{own}/telemetry") in publish["Resource"]


def test_rule_names_without_a_stage_are_the_local_stacks() -> None:
    assert [spec.name for spec in TOPIC_RULES] == ["sensor_stream_telemetry", "sensor_stream_command_ack"]
    assert TOPIC_RULES[0].basic_ingest_prefix("prod") == "$aws/rules/sensor_stream_prod_telemetry/"


def test_device_receives_only_its_own_commands(synthesized: Synthesized) -> None:
    statements = _statements_by_action(synthesized)
    own_commands = f"orgs/{ORG}/devices/{THING}/commands"
    assert statements["iot:Subscribe"]["Resource"] == iot_arn(f"topicfilter/{own_commands}")
    assert statements["iot:Receive"]["Resource"] == iot_arn(f"topic/{own_commands}")
    assert set(statements) == {"iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"}
