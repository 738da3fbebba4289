"""The alert topic (contract section 5): every alert that opens or resolves is published here
for the people who are not watching a browser; operators subscribe e-mail, SMS or chat.

Messages are JSON (the alert with its ``orgId``) with the attributes ``orgId``, ``type`` and
``severity``, so a subscription can filter to one org or to critical alerts only.
"""

from aws_cdk import Annotations, Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.nag import acknowledge, nag_resource_name
from sensor_stream.settings import Settings

SNS_KEY_ALIAS = "alias/aws/sns"
# SNS's AWS managed key is known by its alias only: any key of the account, narrowed by alias.
KEY_ARN_PATTERN = f"arn:{Aws.PARTITION}:kms:{Aws.REGION}:{Aws.ACCOUNT_ID}:key/*"

# The functions' setting that names the topic (declared once, in Settings).
ALERT_TOPIC_ARN_VARIABLE = Settings.model_fields["alert_topic_arn"].alias or "ALERT_TOPIC_ARN"


class AlertTopic(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stage: str, alert_email: str) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=f"sensor-stream {stage} alerts",
            enforce_ssl=True,
            # Alert messages name units and values: encrypted at rest with SNS's AWS managed
            # key, which the publishing functions may use through SNS (only they publish).
            master_key=kms.Alias.from_alias_name(self, "SnsKey", SNS_KEY_ALIAS),
        )
        if alert_email:
            topic_subscription = subscriptions.EmailSubscription(alert_email)
            self.topic.add_subscription(topic_subscription)
        else:
            Annotations.of(self.topic).add_warning_v2(
                "sensor-stream:NoAlertSubscriber",
                "Nobody is subscribed to the alert topic: deploy with -c alertEmail=oncall@example.com "
                "or subscribe to the AlertTopicArn output (docs/deploy.md, Alerts).",
            )

    def grant_publish(self, *functions: lambda_.Function) -> None:
        """Let these functions publish alerts, and tell them where."""
        for function in functions:
            function.add_to_role_policy(
                iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn])
            )
            # SNS encrypts what the function publishes with a data key of the topic's key.
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[KEY_ARN_PATTERN],
                    conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": SNS_KEY_ALIAS}},
                )
            )
            function.add_environment(ALERT_TOPIC_ARN_VARIABLE, self.topic.topic_arn)
            assert function.role is not None
            role_policy = function.role.node.find_child("DefaultPolicy")
            acknowledge(
                role_policy,
                f"AwsSolutions-IAM5[Resource::{nag_resource_name(self, KEY_ARN_PATTERN)}]",
                "SNS's AWS managed key has a different id in each account and is known only by its "
                "alias: the statement holds for keys whose alias is alias/aws/sns (kms:ResourceAliases).",
            )
