"""cdk-nag AwsSolutions (every finding fixed or acknowledged with a reason, documented),
cfn-lint (no error, no warning) and checkov (every finding fixed or skipped in the
template with a reason) on the synthesized templates."""

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Validations
from cfnlint.api import lint_file

from infra.layer import REPOSITORY_ROOT
from infra.nag import CHECKOV_METADATA_KEY, NAG_PLUGIN_NAME
from tests.infra.synthesis import Synthesized

DEPLOY_GUIDE = REPOSITORY_ROOT / "docs" / "deploy.md"
# Installed by make install / make test in a virtualenv of its own (see the Makefile).
CHECKOV = REPOSITORY_ROOT / "build" / "checkov" / "bin" / "checkov"


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


@pytest.fixture(scope="session")
def checkov_report(synthesized: Synthesized, synthesized_external_issuer: Synthesized) -> dict[str, Any]:
    """checkov over the four templates (both stages' stacks and the account stack), offline."""
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail("checkov is not installed: make test installs it (build/checkov)")
        pytest.skip("checkov is not installed here: make install (make test does it)")
    templates = [
        synthesized.template_path,
        synthesized.account_template_path,
        synthesized_external_issuer.template_path,
    ]
    command = [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--compact"]
    command += ["--output", "json", *(argument for path in templates for argument in ("--file", str(path)))]
    # No guideline download (the machine may be offline): checks run from the package alone.
    environment = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)  # noqa: S603
    assert finished.returncode in (0, 1), finished.stderr[-2000:]
    report = json.loads(finished.stdout)
    assert isinstance(report, dict), "one framework, one report"
    return report


def _declared_skips(template_path: Path) -> dict[tuple[str, str], str]:
    """(resource, check) -> reason, from the template's checkov metadata."""
    skips = {}
    for logical_id, resource in json.loads(template_path.read_text())["Resources"].items():
        metadata = resource.get("Metadata", {}).get(CHECKOV_METADATA_KEY, {})
        for skip in metadata.get("skip", []):
            skips[(f"{resource['Type']}.{logical_id}", skip["id"])] = skip["comment"]
    return skips


def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(checkov_report: dict[str, Any]) -> None:
    failed = [
        f"{f['check_id']} {f['resource']}: {f['check_name']}"
        for f in checkov_report["results"]["failed_checks"]
    ]
    assert failed == []


def test_every_checkov_skip_is_explained_and_used(
    checkov_report: dict[str, Any], synthesized: Synthesized, synthesized_external_issuer: Synthesized
) -> None:
    declared: dict[tuple[str, str], str] = {}
    for path in (
        synthesized.template_path,
        synthesized.account_template_path,
        synthesized_external_issuer.template_path,
    ):
        declared.update(_declared_skips(path))
    assert declared, "the templates skip checks in place"
    for (resource, check), reason in declared.items():
        assert len(reason) >= 40, f"{check} on {resource} needs a reason"
    skipped = {(s["resource"], s["check_id"]) for s in checkov_report["results"]["skipped_checks"]}
    assert set(declared) == skipped, "a skip that excuses nothing should go"
