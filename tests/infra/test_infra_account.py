"""The account stack: API Gateway's CloudWatch role and AWS IoT logging, once per account
and region, and nothing of the kind in a stage's stack."""

from typing import Any

import pytest
from aws_cdk import App

from infra.account import AccountConfig
from infra.config import ConfigurationError
from tests.infra.synthesis import CDK_JSON_CONTEXT, Synthesized


def _only(synthesized: Synthesized, resource_type: str) -> Any:
    (resource,) = synthesized.account_template.find_resources(resource_type).values()
    return resource


def _role(synthesized: Synthesized, role_arn: dict[str, Any]) -> dict[str, Any]:
    role_id = role_arn["Fn::GetAtt"][0]
    return synthesized.account_template.to_json()["Resources"][role_id]


def test_account_stack_is_one_per_account_and_region(synthesized: Synthesized) -> None:
    assert synthesized.account_stack.stack_name == "SensorStreamAccount"


def test_api_gateway_logs_through_a_retained_role_of_its_own(synthesized: Synthesized) -> None:
    account = _only(synthesized, "AWS::ApiGateway::Account")
    assert account["DeletionPolicy"] == "Retain"  # other APIs of the account may log through it
    role = _role(synthesized, account["Properties"]["CloudWatchRoleArn"])
    assert role["DeletionPolicy"] == "Retain"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    # CloudFormation creates the role first (the account setting refers to it).
    assert account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][1] == "Arn"


def test_iot_logs_errors_into_its_own_log_group_only(synthesized: Synthesized) -> None:
    logging = _only(synthesized, "AWS::IoT::Logging")["Properties"]
    assert logging["DefaultLogLevel"] == "ERROR"
    assert logging["AccountId"] == {"Ref": "AWS::AccountId"}
    role = _role(synthesized, logging["RoleArn"])["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "iot.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Resource"]["Fn::Join"][1][-1] == ":log-group:AWSIotLogsV2:*"
    assert "ManagedPolicyArns" not in role


def test_no_stage_stack_changes_an_account_wide_setting(
    synthesized: Synthesized, synthesized_external_issuer: Synthesized
) -> None:
    for stage in (synthesized, synthesized_external_issuer):
        for account_wide in ("AWS::ApiGateway::Account", "AWS::IoT::Logging"):
            stage.template.resource_count_is(account_wide, 0)


def _account_config(**context: Any) -> AccountConfig:
    return AccountConfig.from_context(App(context={**CDK_JSON_CONTEXT, **context}).node)


def test_an_account_that_has_the_settings_leaves_them_out() -> None:
    assert _account_config() == AccountConfig(api_gateway_role=True, iot_logging=True, iot_log_level="ERROR")
    config = _account_config(accountApiGatewayRole="false", accountIotLogging="false", iotLogLevel="warn")
    assert config == AccountConfig(api_gateway_role=False, iot_logging=False, iot_log_level="WARN")


def test_unknown_iot_log_level_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="ERROR, WARN"):
        _account_config(iotLogLevel="LOUD")
