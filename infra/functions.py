"""The Lambda functions of ``sensor_stream.catalog``, all made by one helper from the
``functions/`` asset and the shared dependency layer.

Each function gets its own role (no managed policy: it may write to its own log group,
and every other permission is granted by the construct that owns the resource), its own
log group with retention, X-Ray active tracing and the Powertools settings.
"""

from collections.abc import Mapping

import jsii
from aws_cdk import CfnResource, Duration, IStableListProducer, Lazy, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.auth import TokenIssuer
from infra.config import DeployConfig
from infra.layer import REPOSITORY_ROOT, DependencyLayer
from infra.nag import LOG_GROUP_KMS_REASON, acknowledge, skip_checkov
from sensor_stream import catalog

FUNCTIONS_SOURCE_DIRECTORY = REPOSITORY_ROOT / "functions"
# The dependencies come from the layer; compiled files are this machine's, not the runtime's.
ASSET_EXCLUDES = ["__pycache__", "*.pyc", "requirements.txt", "requirements.lock"]
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64

POWERTOOLS_SERVICE_NAME = "sensor-stream"
POWERTOOLS_METRICS_NAMESPACE = "SensorStream"
LOG_LEVEL = "INFO"

# Posts to @connections in flight at once (on the fan-out's event loop); they wait on the network.
FLUSH_POST_CONCURRENCY = 32

# The DynamoDB calls each function makes through sensor_stream.store, and nothing else (no
# Scan, no transactions, no stream reads, of PartiQL INSERTs only).
# tests/infra/test_infra_table_access.py runs the handlers and fails when a function calls
# something it is not granted, or is granted something it no longer calls.
TABLE_ACTIONS: dict[str, tuple[str, ...]] = {
    # Conditional puts (history, quarantine, markers), a message's history items as PartiQL
    # INSERTs (BatchExecuteStatement), outbox and registry batches, the history items a
    # batch found taken and the first attempt's outbox entries read back on a redelivery,
    # the flush's progress read.
    catalog.INGEST.name: (
        "dynamodb:PutItem",
        "dynamodb:PartiQLInsert",
        "dynamodb:BatchWriteItem",
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
    ),
    # Connection records (put, versioned; deleted at $disconnect), the request counter
    # (update), the record read per request, history/latest/units/resume queries.
    catalog.CONNECT.name: (
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
    ),
    # The lease (update), the hand-over item and the doorbell (put), the state read, the
    # outbox and each org's connections (query), the orgs' connection list versions (batch
    # get), gone connections and timed-out commands (delete), alert states (put, delete).
    catalog.FLUSH.name: (
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:DeleteItem",
    ),
    # The request counter (update), the connection and device read, the pending command and
    # its timer (put), the command taken on its ack (delete).
    catalog.PUBLISH.name: (
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
    ),
    # Rules (get, query, put, delete), the rules version on the flush state (update), the
    # doorbell timer (put), alert states a change ends (query, conditional delete) and the
    # outbox entry that tells browsers (batch write).
    catalog.RULES.name: (
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
    ),
}


class Functions(Construct):
    """``ingest``, ``connect``, ``flush``, ``publish`` and ``rules``; ``by_name`` maps the
    catalog's names (also ``TopicRuleSpec.target``) to the functions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        table: dynamodb.ITable,
        token_issuer: TokenIssuer,
        dependency_layer: DependencyLayer,
    ) -> None:
        super().__init__(scope, construct_id)
        self._retention = config.log_retention
        self.log_groups: dict[str, logs.LogGroup] = {}
        self._common_environment = {
            "TABLE_NAME": table.table_name,
            # Metrics carry their stage (staging and prod share the SensorStream namespace).
            "SENSOR_STREAM_STAGE": config.stage,
            "POWERTOOLS_SERVICE_NAME": POWERTOOLS_SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_METRICS_NAMESPACE,
            "LOG_LEVEL": LOG_LEVEL,
        }
        self._code = lambda_.Code.from_asset(str(FUNCTIONS_SOURCE_DIRECTORY), exclude=ASSET_EXCLUDES)
        self.dependency_layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            # The asset hash is CDK's hash of the built files (AssetHashType.SOURCE).
            code=lambda_.Code.from_asset(str(dependency_layer.directory)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Python dependencies of the sensor-stream functions (functions/requirements.lock)",
        )

        # Both read the caller's org and units from verified claims (sensor_stream.auth).
        claim_names = {"JWT_ORG_CLAIM": token_issuer.org_claim, "JWT_UNITS_CLAIM": token_issuer.units_claim}
        if token_issuer.token_use:
            claim_names["JWT_TOKEN_USE"] = token_issuer.token_use
        self.ingest = self._function(catalog.INGEST, claim_names)
        self.connect = self._function(
            catalog.CONNECT,
            {
                "JWT_JWKS_URL": token_issuer.jwks_url,
                "JWT_ISSUER": token_issuer.issuer,
                "JWT_AUDIENCE": token_issuer.audience,
                **claim_names,
            },
        )
        # No reserved concurrency: the lease lets one invocation deliver at a time, and the
        # next scheduled one must be able to start (and wait) while the running one ends.
        self.flush = self._function(catalog.FLUSH, {"FLUSH_POST_CONCURRENCY": str(FLUSH_POST_CONCURRENCY)})
        # Shard 0 starts the other fan-out shards' flushers as invocations of the flush itself
        # (docs/scaling.md). A policy of its own: the function depends on its role's default
        # policy, which therefore cannot name the function's ARN.
        iam.Policy(
            self,
            "flush-starts-shards",
            roles=[self.flush.role] if self.flush.role else [],
            statements=[
                iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.flush.function_arn])
            ],
        )
        self.publish = self._function(
            catalog.PUBLISH,
            # Unset: boto3 uses the region's default iot-data endpoint (data-ats).
            {"IOT_DATA_ENDPOINT": config.iot_data_endpoint} if config.iot_data_endpoint else {},
        )
        # The rules API reads the caller from the HTTP API's verified claims, as ingest does.
        self.rules = self._function(catalog.RULES, claim_names)
        self.all = (self.ingest, self.connect, self.flush, self.publish, self.rules)
        self.by_name = {function.node.id: function for function in self.all}
        for function in self.all:
            table.grant(function, *TABLE_ACTIONS[function.node.id])

    def _function(self, spec: catalog.FunctionSpec, environment: Mapping[str, str]) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{spec.name}-logs",
            retention=self._retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{spec.name}-role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the sensor-stream {spec.name} function",
        )
        log_group.grant_write(role)
        self.log_groups[spec.name] = log_group
        function = lambda_.Function(
            self,
            spec.name,
            description=spec.description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=self._code,
            handler=spec.handler,
            layers=[self.dependency_layer],
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_seconds),
            environment={**self._common_environment, **environment},
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
        )
        depend_only_on_role_policy(function, role)
        skip_checkov(log_group, CKV_AWS_158=LOG_GROUP_KMS_REASON)
        skip_checkov(
            function,
            CKV_AWS_115="No reserved concurrency: Lambda keeps 100 of an account's concurrency unreserved, "
            "so any reservation fails to deploy on new accounts (quota 10), and the flush must overlap "
            "its successor for a moment each minute (docs/deploy.md, Prerequisites).",
            CKV_AWS_116="Asynchronous failures of ingest and publish go to their on-failure destination "
            "(the dead-letter queue, Lambda's successor to DeadLetterConfig); connect answers API Gateway "
            "synchronously; a failed flush is replaced by the next minute's invocation.",
            CKV_AWS_117="The functions use only AWS public endpoints (DynamoDB, API Gateway, IoT); a VPC "
            "would add NAT or endpoints and nothing to protect.",
            CKV_AWS_173="The environment holds no secret (table name, issuer, endpoints); Lambda encrypts "
            "it at rest with its own key.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) support no resource-level "
            "permissions; the role's other statements are scoped to this stack's resources.",
        )
        return function


@jsii.implements(IStableListProducer)
class _DefaultPolicyLogicalIds:
    """The logical id of a role's default policy, looked up at synthesis (after every grant)."""

    def __init__(self, role: iam.Role) -> None:
        self._role = role

    def produce(self) -> list[str]:
        policy = self._role.node.try_find_child("DefaultPolicy")
        if policy is None:
            return []
        resource = policy.node.default_child
        assert isinstance(resource, CfnResource)
        return [Stack.of(self._role).get_logical_id(resource)]


def depend_only_on_role_policy(function: lambda_.Function, role: iam.Role) -> None:
    """CDK makes a function depend on its role and the role's policy; the role part is
    already implied by the function's GetAtt of the role ARN (cfn-lint W3005). The policy
    part matters: Lambda checks, e.g., an on-failure destination's permission on creation."""
    resource = function.node.default_child
    assert isinstance(resource, CfnResource)
    resource.add_override("DependsOn", Lazy.list(_DefaultPolicyLogicalIds(role)))
