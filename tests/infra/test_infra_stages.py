"""Two stages (prod and staging) in one account and region: every name that must be unique
there differs between their stacks."""

import json
from typing import Any

from tests.infra.synthesis import STAGING, Synthesized

# Resource types whose name (when the template sets one) is unique per account and region
# (dashboards per account).
UNIQUE_NAME_PROPERTIES = {
    "AWS::IoT::TopicRule": "RuleName",
    "AWS::IoT::Policy": "PolicyName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::Cognito::UserPoolDomain": "Domain",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Events::Rule": "Name",
}


def _names(synthesized: Synthesized) -> dict[str, Any]:
    """Each explicitly named resource's name, as the template spells it."""
    names = {}
    for logical_id, resource in synthesized.resources.items():
        name_property = UNIQUE_NAME_PROPERTIES.get(resource["Type"])
        if name_property and name_property in resource.get("Properties", {}):
            names[logical_id] = resource["Properties"][name_property]
    return names


def test_stages_are_separate_stacks(
    synthesized: Synthesized, synthesized_external_issuer: Synthesized
) -> None:
    assert synthesized.stack.stack_name == "SensorStream-prod"
    assert synthesized_external_issuer.stack.stack_name == f"SensorStream-{STAGING}"


def test_no_explicit_name_is_shared_by_two_stages(
    synthesized: Synthesized, synthesized_external_issuer: Synthesized
) -> None:
    prod, staging = _names(synthesized), _names(synthesized_external_issuer)
    assert prod, "the stack names its IoT rules at least"
    spelled = {json.dumps(name, sort_keys=True) for name in prod.values()}
    assert not spelled & {json.dumps(name, sort_keys=True) for name in staging.values()}
    for name in prod.values():
        assert "prod" in json.dumps(name), f"{name} does not name its stage"
