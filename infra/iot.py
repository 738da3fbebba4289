"""IoT Core: the topic rules of ``sensor_stream.iot_rules`` (the same SQL the local rule
runner evaluates), their dead-letter queue, and the policy that confines each device to
its own org and thing name."""

from collections.abc import Mapping
from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge, nag_resource_name, skip_checkov
from sensor_stream import catalog
from sensor_stream.iot_rules import IOT_SQL_VERSION, TOPIC_RULES, TopicRuleSpec, command_topic

# IoT policy variables: a device is known by its thing name (= MQTT client id, enforced by
# iot:Connect) and the orgId attribute an operator set on the thing.
ORG_ID_ATTRIBUTE = "orgId"
THING_NAME_VARIABLE = "${iot:Connection.Thing.ThingName}"
ORG_ID_VARIABLE = f"${{iot:Connection.Thing.Attributes[{ORG_ID_ATTRIBUTE}]}}"
# Kept long enough for an operator to inspect and redrive after a weekend.
DEAD_LETTER_RETENTION = Duration.days(14)


def device_topic(topic_filter: str) -> str:
    """A rule's topic filter (``orgs/+/devices/+/...``) as one device's own topic: the first
    ``+`` becomes its org, the second its thing name."""
    variables = iter((ORG_ID_VARIABLE, THING_NAME_VARIABLE))
    levels = [next(variables) if level == "+" else level for level in topic_filter.split("/")]
    if next(variables, None) is not None:
        raise ValueError(f"Topic filter {topic_filter!r} must name an org and a device level")
    return "/".join(levels)


class IotIngress(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        rule_targets: Mapping[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self._stack = Stack.of(self)
        self._stage = stage
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DEAD_LETTER_RETENTION,
        )
        acknowledge(
            self.dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue: IoT rule error actions and failed "
            "asynchronous invocations of ingest and publish land here for inspection and redrive.",
        )
        skip_checkov(
            self.dead_letter_queue,
            CKV_AWS_27="Encrypted with SQS-managed keys (SqsManagedSseEnabled); checkov looks for a "
            "KMS key only.",
        )
        error_action_role = iam.Role(
            self,
            "ErrorActionRole",
            assumed_by=iam.ServicePrincipal(
                "iot.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": self._stack.account}},
            ),
            description="Lets the sensor-stream IoT rules keep failed messages in the dead-letter queue",
        )
        self.dead_letter_queue.grant_send_messages(error_action_role)

        self.rules: dict[str, iot.CfnTopicRule] = {}
        for spec in TOPIC_RULES:
            self.rules[spec.name] = self._topic_rule(spec, rule_targets[spec.target], error_action_role)
        # IoT invokes its Lambda actions asynchronously: the error action only sees a failed
        # hand-over, so events whose processing still fails after Lambda's retries are kept too.
        # Ingest raises on a transient failure so that Lambda retries it.
        for target_name in {spec.target for spec in TOPIC_RULES}:
            rule_targets[target_name].configure_async_invoke(
                on_failure=destinations.SqsDestination(self.dead_letter_queue),
                retry_attempts=catalog.function(target_name).async_retry_attempts,
            )
        self.device_policy = self._device_policy()

    def grant_command_publish(self, function: lambda_.Function) -> None:
        """``iot:Publish`` on the command topics only (``orgs/*/devices/*/commands``)."""
        commands_topic_arn = self._topic_arn(command_topic("*", "*"))
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["iot:Publish"], resources=[commands_topic_arn])
        )
        assert function.role is not None
        acknowledge(
            function.role,
            f"AwsSolutions-IAM5[Resource::{nag_resource_name(self, commands_topic_arn)}]",
            "The wildcards stand for orgId and deviceId, known only per request: publish takes "
            "the org from the caller's verified connection record and checks the device is in it.",
        )

    def _topic_rule(
        self, spec: TopicRuleSpec, target: lambda_.IFunction, error_action_role: iam.IRole
    ) -> iot.CfnTopicRule:
        rule = iot.CfnTopicRule(
            self,
            spec.name,
            # A fixed name per stage: devices address the rule by it in Basic Ingest topics.
            rule_name=spec.rule_name(self._stage),
            topic_rule_payload=iot.CfnTopicRule.TopicRulePayloadProperty(
                description=spec.description,
                sql=spec.deployed_sql,
                aws_iot_sql_version=IOT_SQL_VERSION,
                rule_disabled=False,
                actions=[
                    iot.CfnTopicRule.ActionProperty(
                        lambda_=iot.CfnTopicRule.LambdaActionProperty(function_arn=target.function_arn)
                    )
                ],
                error_action=iot.CfnTopicRule.ActionProperty(
                    sqs=iot.CfnTopicRule.SqsActionProperty(
                        queue_url=self.dead_letter_queue.queue_url,
                        role_arn=error_action_role.role_arn,
                        use_base64=False,
                    )
                ),
            ),
        )
        target.add_permission(
            f"InvokeBy-{spec.name}",
            principal=iam.ServicePrincipal("iot.amazonaws.com"),
            source_arn=rule.attr_arn,
            source_account=self._stack.account,
        )
        return rule

    def _device_policy(self) -> iot.CfnPolicy:
        publish_topics = []
        for spec in TOPIC_RULES:
            own_topic = device_topic(spec.topic_filter)
            publish_topics += [own_topic, spec.basic_ingest_prefix(self._stage) + own_topic]
        own_command_topic = command_topic(ORG_ID_VARIABLE, THING_NAME_VARIABLE)
        document: dict[str, Any] = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ConnectAsOwnThingOnly",
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": self._iot_arn("client", THING_NAME_VARIABLE),
                    # The certificate must be attached to the thing whose name is the client id,
                    # otherwise the thing policy variables below would not resolve.
                    "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
                },
                {
                    "Sid": "PublishOwnTelemetryAndAcks",
                    "Effect": "Allow",
                    "Action": "iot:Publish",
                    "Resource": [self._topic_arn(topic) for topic in publish_topics],
                },
                {
                    "Sid": "SubscribeOwnCommands",
                    "Effect": "Allow",
                    "Action": "iot:Subscribe",
                    "Resource": self._iot_arn("topicfilter", own_command_topic),
                },
                {
                    "Sid": "ReceiveOwnCommands",
                    "Effect": "Allow",
                    "Action": "iot:Receive",
                    "Resource": self._topic_arn(own_command_topic),
                },
            ],
        }
        return iot.CfnPolicy(self, "DevicePolicy", policy_document=document)

    def _topic_arn(self, topic: str) -> str:
        return self._iot_arn("topic", topic)

    def _iot_arn(self, resource: str, name: str) -> str:
        return self._stack.format_arn(
            service="iot",
            resource=resource,
            resource_name=name,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
