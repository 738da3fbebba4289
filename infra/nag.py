"""cdk-nag (AwsSolutions) acknowledgments: one finding on one construct, always with a reason."""

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

NAG_PLUGIN_NAME = "AwsSolutions"


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge ``finding`` (e.g. ``AwsSolutions-IAM5[Resource::*]``) on ``scope`` only."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{NAG_PLUGIN_NAME}::{finding}", reason=reason))


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
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(_nag_spelling(part) for part in parts)
    raise ValueError(f"No cdk-nag spelling for {resolved!r}")
