"""The functions: runtime, settings, environment, permissions and the flush schedule."""

from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra.functions import TABLE_ACTIONS
from sensor_stream import catalog
from tests.infra.synthesis import EXTERNAL_AUDIENCE, EXTERNAL_ISSUER, FUNCTION_NAMES, Synthesized, iot_arn

COMMON_ENVIRONMENT = {
    "TABLE_NAME",
    "SENSOR_STREAM_STAGE",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
}
CLAIM_NAMES = {"JWT_ORG_CLAIM", "JWT_UNITS_CLAIM", "JWT_TOKEN_USE"}
EXPECTED_ENVIRONMENT = {
    "ingest": COMMON_ENVIRONMENT | CLAIM_NAMES,
    "connect": COMMON_ENVIRONMENT
    | CLAIM_NAMES
    | {"JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE", "WEBSOCKET_CALLBACK_URL"},
    "flush": COMMON_ENVIRONMENT | {"WEBSOCKET_CALLBACK_URL", "FLUSH_POST_CONCURRENCY", "ALERT_TOPIC_ARN"},
    "publish": COMMON_ENVIRONMENT | {"WEBSOCKET_CALLBACK_URL"},
    "rules": COMMON_ENVIRONMENT | CLAIM_NAMES | {"ALERT_TOPIC_ARN"},
}
ALERT_PUBLISHERS = ("flush", "rules")
ALERT_ACTIONS = {"sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"}
POSTING_FUNCTIONS = ("connect", "flush", "publish")
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
TRACE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
DEAD_LETTER_ACTIONS = {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}


def _function(synthesized: Synthesized, name: str) -> dict[str, Any]:
    return synthesized.resource(getattr(synthesized.stack.functions, name))["Properties"]


def _statements(synthesized: Synthesized, name: str) -> list[dict[str, Any]]:
    role = getattr(synthesized.stack.functions, name).role
    role_id = synthesized.logical_id(role)
    policies = synthesized.template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_id}]}}
    ).values()
    return [
        statement for policy in policies for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def _granted(synthesized: Synthesized, name: str) -> dict[str, list[Any]]:
    """Every action the function's role allows, with the resources it is allowed on."""
    granted: dict[str, list[Any]] = {}
    for statement in _statements(synthesized, name):
        assert statement["Effect"] == "Allow"
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for action in _actions(statement):
            granted.setdefault(action, []).extend(resources)
    return granted


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_function_runs_its_handler_on_the_latest_python_for_arm(synthesized: Synthesized, name: str) -> None:
    function = _function(synthesized, name)
    assert function["Handler"] == f"{name}.handler.lambda_handler"
    assert function["Runtime"] == "python3.14"
    assert function["Architectures"] == ["arm64"]
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["Layers"] == [
        {"Ref": synthesized.logical_id(synthesized.stack.functions.dependency_layer)}
    ]


def test_all_functions_share_one_code_asset(synthesized: Synthesized) -> None:
    keys = {_function(synthesized, name)["Code"]["S3Key"] for name in FUNCTION_NAMES}
    assert len(keys) == 1


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_function_logs_to_its_own_group_with_retention(synthesized: Synthesized, name: str) -> None:
    log_group_id = _function(synthesized, name)["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = synthesized.resources[log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == 30


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_function_gets_exactly_the_environment_it_reads(synthesized: Synthesized, name: str) -> None:
    environment = _function(synthesized, name)["Environment"]["Variables"]
    assert set(environment) == EXPECTED_ENVIRONMENT[name]
    assert environment["TABLE_NAME"] == {"Ref": synthesized.logical_id(synthesized.stack.data.table)}
    assert environment["POWERTOOLS_SERVICE_NAME"] == "sensor-stream"
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "SensorStream"
    assert environment["SENSOR_STREAM_STAGE"] == "prod"  # a dimension of every metric


@pytest.mark.parametrize("name", POSTING_FUNCTIONS)
def test_posting_functions_know_the_stage_callback_url(synthesized: Synthesized, name: str) -> None:
    api = synthesized.logical_id(synthesized.stack.websocket.api)
    callback_url = _function(synthesized, name)["Environment"]["Variables"]["WEBSOCKET_CALLBACK_URL"]
    assert callback_url == {
        "Fn::Join": [
            "",
            [
                "https://",
                {"Ref": api},
                ".execute-api.",
                {"Ref": "AWS::Region"},
                ".",
                {"Ref": "AWS::URLSuffix"},
                "/live",
            ],
        ]
    }


def test_connect_verifies_tokens_of_the_user_pool(synthesized: Synthesized) -> None:
    token_issuer = synthesized.stack.token_issuer
    environment = _function(synthesized, "connect")["Environment"]["Variables"]
    issuer = synthesized.stack.resolve(token_issuer.issuer)
    assert environment["JWT_ISSUER"] == issuer
    assert environment["JWT_AUDIENCE"] == {"Ref": synthesized.logical_id(token_issuer.user_pool_client)}  # type: ignore[arg-type]
    assert environment["JWT_JWKS_URL"] == {
        "Fn::Join": ["", [*issuer["Fn::Join"][1], "/.well-known/jwks.json"]]
    }
    assert environment["JWT_ORG_CLAIM"] == "custom:org"
    assert environment["JWT_UNITS_CLAIM"] == "custom:units"
    # Only Cognito ID tokens carry custom:org; access tokens are refused by name.
    assert environment["JWT_TOKEN_USE"] == "id"
    assert _function(synthesized, "ingest")["Environment"]["Variables"]["JWT_TOKEN_USE"] == "id"


def test_connect_verifies_tokens_of_an_external_issuer(synthesized_external_issuer: Synthesized) -> None:
    environment = _function(synthesized_external_issuer, "connect")["Environment"]["Variables"]
    assert environment["JWT_ISSUER"] == EXTERNAL_ISSUER
    assert environment["JWT_AUDIENCE"] == EXTERNAL_AUDIENCE
    assert environment["JWT_JWKS_URL"] == f"{EXTERNAL_ISSUER}/.well-known/jwks.json"
    assert environment["JWT_ORG_CLAIM"] == "org"
    assert environment["JWT_UNITS_CLAIM"] == "units"
    assert "JWT_TOKEN_USE" not in environment  # other issuers need not have the claim


def test_no_function_environment_holds_a_secret(synthesized: Synthesized) -> None:
    for name in FUNCTION_NAMES:
        environment = _function(synthesized, name)["Environment"]["Variables"]
        assert not {key for key in environment if "SECRET" in key or "PASSWORD" in key}


def test_no_role_allows_a_wildcard_action(synthesized: Synthesized) -> None:
    # Except CDK's own BucketDeployment handler (s3:GetObject* etc., acknowledged with reasons).
    deployment_roles = [
        {"Ref": role_id}
        for role_id in synthesized.template.find_resources("AWS::IAM::Role")
        if role_id.startswith("CustomCDKBucketDeployment")
    ]
    assert len(deployment_roles) == 1
    for policy in synthesized.template.find_resources("AWS::IAM::Policy").values():
        if policy["Properties"]["Roles"] == deployment_roles:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert not any("*" in action for action in _actions(statement)), statement


def test_function_roles_carry_no_managed_policy(synthesized: Synthesized) -> None:
    for name in FUNCTION_NAMES:
        role = synthesized.resource(getattr(synthesized.stack.functions, name).role)
        assert "ManagedPolicyArns" not in role["Properties"]


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_function_is_granted_only_what_it_needs(synthesized: Synthesized, name: str) -> None:
    functions = synthesized.stack.functions
    table_arn = {"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.data.table), "Arn"]}
    granted = _granted(synthesized, name)

    table_actions = set(TABLE_ACTIONS[name])  # which ones: tests/infra/test_infra_table_access.py
    expected = LOG_ACTIONS | TRACE_ACTIONS | table_actions
    if name in POSTING_FUNCTIONS:
        expected |= {"execute-api:ManageConnections"}
    if name in ("ingest", "publish"):
        expected |= DEAD_LETTER_ACTIONS  # on-failure destination of asynchronous (IoT) invocations
    if name == "publish":
        expected |= {"iot:Publish"}
    if name in ALERT_PUBLISHERS:
        expected |= ALERT_ACTIONS
    if name == "flush":
        expected |= {"lambda:InvokeFunction"}  # shard 0 starts the other fan-out shards
    assert set(granted) == expected

    own_log_group = {"Fn::GetAtt": [synthesized.logical_id(functions.log_groups[name]), "Arn"]}
    for action in LOG_ACTIONS:
        assert granted[action] == [own_log_group]
    for action in TRACE_ACTIONS:
        assert granted[action] == ["*"]  # X-Ray has no resource-level permissions
    for action in table_actions:
        assert set(map(str, granted[action])) == {str(table_arn)}


@pytest.mark.parametrize("name", POSTING_FUNCTIONS)
def test_manage_connections_is_scoped_to_this_api_stage(synthesized: Synthesized, name: str) -> None:
    api = synthesized.logical_id(synthesized.stack.websocket.api)
    (resource,) = _granted(synthesized, name)["execute-api:ManageConnections"]
    assert resource == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":execute-api:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                ":",
                {"Ref": api},
                "/live/*/@connections/*",
            ],
        ]
    }


def test_publish_may_publish_only_device_commands(synthesized: Synthesized) -> None:
    (resource,) = _granted(synthesized, "publish")["iot:Publish"]
    assert resource == iot_arn("topic/orgs/*/devices/*/commands")


def test_flush_may_overlap_its_successor_and_outlasts_the_schedule(synthesized: Synthesized) -> None:
    flush = _function(synthesized, "flush")
    # The lease serialises delivery; reserved concurrency would throttle the successor that
    # must start while the running invocation ticks (and cannot even deploy on a new account).
    assert "ReservedConcurrentExecutions" not in flush
    # The running invocation ticks until the next minute's takes over: a late schedule
    # must not leave seconds without a tick.
    assert flush["Timeout"] == catalog.FLUSH.timeout_seconds >= 90


def test_flush_may_invoke_itself_alone_to_start_fan_out_shards(synthesized: Synthesized) -> None:
    flush_id = synthesized.logical_id(synthesized.stack.functions.flush)
    for name in FUNCTION_NAMES:
        invocable = _granted(synthesized, name).get("lambda:InvokeFunction", [])
        assert invocable == ([{"Fn::GetAtt": [flush_id, "Arn"]}] if name == "flush" else [])


def test_eventbridge_starts_flush_every_minute(synthesized: Synthesized) -> None:
    flush_id = synthesized.logical_id(synthesized.stack.functions.flush)
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(1 minute)",
            "State": "ENABLED",
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [flush_id, "Arn"]}})],
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"FunctionName": {"Fn::GetAtt": [flush_id, "Arn"]}, "Principal": "events.amazonaws.com"},
    )
    # A failed or late loop is not retried: the next minute starts a fresh one.
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {"FunctionName": {"Ref": flush_id}, "MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
    )


@pytest.mark.parametrize("name", ALERT_PUBLISHERS)
def test_alert_publishers_may_publish_to_the_alert_topic_alone(synthesized: Synthesized, name: str) -> None:
    topic = {"Ref": synthesized.logical_id(synthesized.stack.alerts.topic)}
    granted = _granted(synthesized, name)
    environment = _function(synthesized, name)["Environment"]["Variables"]

    assert granted["sns:Publish"] == [topic]
    assert environment["ALERT_TOPIC_ARN"] == topic
    (key_statement,) = [s for s in _statements(synthesized, name) if "kms:Decrypt" in _actions(s)]
    assert key_statement["Condition"] == {
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/aws/sns"}
    }


def test_the_alert_topic_is_encrypted_and_refuses_plain_http(synthesized: Synthesized) -> None:
    topic = synthesized.resource(synthesized.stack.alerts.topic)["Properties"]
    # SNS's AWS managed key, named by its alias ARN.
    assert topic["KmsMasterKeyId"]["Fn::Join"][1][-1].endswith(":alias/aws/sns")
    policies = synthesized.template.find_resources("AWS::SNS::TopicPolicy").values()
    statements = [
        statement
        for policy in policies
        if {"Ref": synthesized.logical_id(synthesized.stack.alerts.topic)} in policy["Properties"]["Topics"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )
