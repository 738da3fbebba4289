"""The one DynamoDB table (key schema from ``sensor_stream.table``, shared with the local stack)."""

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from infra.nag import skip_checkov
from sensor_stream.table import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE


class DataStore(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # Readings and device history outlive the stack: `cdk destroy` leaves the table,
            # and nobody deletes it by accident (turn the protection off first).
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,
        )
        skip_checkov(
            self.table,
            CKV_AWS_119="Encrypted at rest with the AWS owned key (DynamoDB's default); a customer managed "
            "key would add cost and a key every function's role must be granted, for sensor readings.",
        )
