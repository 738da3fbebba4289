"""Synthesis of the CDK app as ``infra/app.py`` does it: the cached dependency layer, the
context of ``cdk.json`` and the cdk-nag AwsSolutions checks (an unacknowledged finding
fails the synthesis)."""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Node 20 is what this project's machines ship; the jsii notice about it only adds noise.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, CfnResource, Validations
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from infra.account import AccountConfig, SensorStreamAccountStack
from infra.config import DeployConfig
from infra.layer import REPOSITORY_ROOT, DependencyLayer
from infra.stack import SensorStreamStack
from sensor_stream import catalog

CDK_JSON_CONTEXT: dict[str, Any] = json.loads((REPOSITORY_ROOT / "cdk.json").read_text())["context"]
# The second variant deploys this stage beside the cdk.json default (prod).
STAGING = "staging"
FUNCTION_NAMES = tuple(spec.name for spec in catalog.FUNCTIONS)
EXTERNAL_ISSUER = "https://login.example.com/tenant"
ALARM_EMAIL = "ops@example.com"
EXTERNAL_AUDIENCE = "sensor-stream-dashboard"


@dataclass(frozen=True)
class Synthesized:
    """The stage stack (``stack``, ``template``...) and the account stack of one app."""

    stack: SensorStreamStack
    template: Template
    template_json: dict[str, Any]
    template_path: Path
    assembly_directory: Path
    validation_report: dict[str, Any]
    account_stack: SensorStreamAccountStack
    account_template: Template
    account_template_path: Path

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template_json["Resources"]

    def logical_id(self, construct: IConstruct) -> str:
        resource = construct.node.default_child if not isinstance(construct, CfnResource) else construct
        assert isinstance(resource, CfnResource), f"{construct.node.path} has no CloudFormation resource"
        return self.stack.resolve(self.stack.get_logical_id(resource))

    def resource(self, construct: IConstruct) -> dict[str, Any]:
        return self.resources[self.logical_id(construct)]

    def asset_directory(self, s3_key: str) -> Path:
        """The staged directory of the asset uploaded under ``s3_key``."""
        manifest = json.loads((self.assembly_directory / f"{self.stack.artifact_id}.assets.json").read_text())
        for asset in manifest["files"].values():
            if any(target["objectKey"] == s3_key for target in asset["destinations"].values()):
                return self.assembly_directory / asset["source"]["path"]
        raise KeyError(s3_key)


def synthesize(outdir: Path, context: Mapping[str, Any], layer: DependencyLayer) -> Synthesized:
    app = App(outdir=str(outdir), context=dict(context))
    account_stack = SensorStreamAccountStack(app, config=AccountConfig.from_context(app.node))
    stack = SensorStreamStack(app, config=DeployConfig.from_context(app.node), dependency_layer=layer)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    account_artifact = assembly.get_stack_artifact(account_stack.artifact_id)
    template_json = artifact.template
    report_path = outdir / "validation-report.json"
    return Synthesized(
        stack=stack,
        template=Template.from_json(template_json),
        template_json=template_json,
        template_path=Path(artifact.template_full_path),
        assembly_directory=Path(assembly.directory),
        validation_report=json.loads(report_path.read_text()) if report_path.exists() else {},
        account_stack=account_stack,
        account_template=Template.from_json(account_artifact.template),
        account_template_path=Path(account_artifact.template_full_path),
    )


def iot_arn(suffix: str) -> dict[str, Any]:
    """An ARN of this stack's account and region, as CDK renders ``format_arn``."""
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":iot:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":{suffix}",
            ],
        ]
    }
