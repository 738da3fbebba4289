"""Findings of the template checks acknowledged in place, one resource at a time and always
with a reason: cdk-nag (AwsSolutions) acknowledgments, and checkov skips (template
metadata ``checkov: {skip: [{id, comment}]}``, which checkov reads)."""

import re
from typing import Any

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from constructs import IConstruct

NAG_PLUGIN_NAME = "AwsSolutions"


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge ``finding`` (e.g. ``AwsSolutions-IAM5[Resource::*]``) on ``scope`` only."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{NAG_PLUGIN_NAME}::{finding}", reason=reason))


CHECKOV_METADATA_KEY = "checkov"
# Reasons shared by several resources.
LOG_GROUP_KMS_REASON = (
    "CloudWatch Logs encrypts every log group at rest with its own keys; a customer key would add a "
    "key policy for the logs service and cost, for operational logs that hold no secrets."
)


def skip_checkov(scope: IConstruct, **reasons: str) -> None:
    """Skip checkov checks on the CloudFormation resource of ``scope`` (itself or its default
    child): ``skip_checkov(bucket, CKV_AWS_18="why")``."""
    resource = scope if isinstance(scope, CfnResource) else scope.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{scope.node.path} has no CloudFormation resource to annotate")
    metadata = resource.get_metadata(CHECKOV_METADATA_KEY) or {"skip": []}
    metadata["skip"] = [
        *metadata["skip"],
        *({"id": check, "comment": reason} for check, reason in sorted(reasons.items())),
    ]
    resource.add_metadata(CHECKOV_METADATA_KEY, metadata)


def acknowledge_policy_wildcards(role: IConstruct, reason: str) -> None:
    """Acknowledge AwsSolutions-IAM5 for each wildcard action and resource of the role's
    default policy as it stands (for policies written by CDK constructs, not by us)."""
    policy = role.node.find_child("DefaultPolicy")
    document = Stack.of(role).resolve(policy.document)  # type: ignore[attr-defined]
    findings: set[str] = set()
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        findings.update(f"Action::{action}" for action in actions if "*" in action)
        findings.update(
            f"Resource::{name}" for name in (_nag_spelling(resource) for resource in resources) if "*" in name
        )
    for finding in sorted(findings):
        acknowledge(role, f"AwsSolutions-IAM5[{finding}]", reason)


def nag_resource_name(scope: IConstruct, value: str) -> str:
    """``value`` (an ARN that may hold tokens) as cdk-nag spells it in a finding id:
    ``{"Ref": "AWS::Region"}`` becomes ``<AWS::Region>``, a GetAtt ``<LogicalId.Attribute>``."""
    return _nag_spelling(Stack.of(scope).resolve(value))


def _nag_spelling(resolved: Any) -> str:
    if isinstance(resolved, str):
        return resolved
    if isinstance(resolved, dict) and len(resolved) == 1:
        ((function, argument),) = resolved.items()
        if function == "Ref":
            return f"<{argument}>"
        if function == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if function == "Fn::Sub" and isinstance(argument, str):
            return re.sub(r"\$\{([^}]+)\}", r"<\1>", argument)
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(_nag_spelling(part) for part in parts)
    raise ValueError(f"No cdk-nag spelling for {resolved!r}")
