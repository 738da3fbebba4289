"""cdk-nag AwsSolutions (every finding fixed or acknowledged with a reason, documented) and
cfn-lint (no error, no warning) on the synthesized templates."""

from dataclasses import dataclass

import pytest
from aws_cdk import Validations
from cfnlint.api import lint_file

from infra.layer import REPOSITORY_ROOT
from infra.nag import NAG_PLUGIN_NAME
from tests.infra.synthesis import Synthesized

DEPLOY_GUIDE = REPOSITORY_ROOT / "docs" / "deploy.md"


@dataclass(frozen=True)
class Acknowledgment:
    construct_path: str
    finding: str
    reason: str


def _acknowledgments(synthesized: Synthesized) -> list[Acknowledgment]:
    """Every acknowledgment the stacks make, read back from construct metadata."""
    found = []
    for construct in synthesized.stack.node.root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule_id, reason in entry.data.items():
                    found.append(Acknowledgment(construct.node.path, rule_id, reason))
    return found


def _plugin_report(synthesized: Synthesized) -> dict:
    (report,) = [
        r for r in synthesized.validation_report["pluginReports"] if r["pluginName"] == NAG_PLUGIN_NAME
    ]
    return report


@pytest.fixture(params=["cognito", "external_issuer"])
def each_variant(request: pytest.FixtureRequest) -> Synthesized:
    name = "synthesized" if request.param == "cognito" else "synthesized_external_issuer"
    return request.getfixturevalue(name)


def test_nag_reports_no_unacknowledged_finding(each_variant: Synthesized) -> None:
    # Errors would already have failed the synthesis; this also catches warnings.
    report = _plugin_report(each_variant)
    assert report["violations"] == []
    assert report["conclusion"] == "success"


def test_every_acknowledgment_is_per_resource_used_and_explained(each_variant: Synthesized) -> None:
    acknowledgments = _acknowledgments(each_variant)
    suppressed = {
        (violation["acknowledgedAt"], violation["acknowledgedId"])
        for violation in _plugin_report(each_variant)["suppressedViolations"]
    }
    for acknowledgment in acknowledgments:
        # Never on a stack as a whole: each one names the resource it excuses.
        assert acknowledgment.construct_path not in (
            each_variant.stack.node.path,
            each_variant.account_stack.node.path,
        )
        assert (acknowledgment.construct_path, acknowledgment.finding) in suppressed, (
            f"{acknowledgment.finding} at {acknowledgment.construct_path} acknowledges nothing"
        )
        assert len(acknowledgment.reason) >= 60, acknowledgment


def test_deploy_guide_lists_every_acknowledgment_with_its_reason(synthesized: Synthesized) -> None:
    guide = DEPLOY_GUIDE.read_text()
    for acknowledgment in _acknowledgments(synthesized):
        finding = acknowledgment.finding.removeprefix(f"{NAG_PLUGIN_NAME}::")
        assert finding in guide, f"docs/deploy.md does not list {finding}"
        assert acknowledgment.reason in guide, f"docs/deploy.md lacks the reason for {finding}"


def test_cfn_lint_finds_nothing(each_variant: Synthesized) -> None:
    matches = [*lint_file(each_variant.template_path), *lint_file(each_variant.account_template_path)]
    assert [str(match) for match in matches] == []
