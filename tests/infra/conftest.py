"""Synthesizes the CDK app once per test session: jsii start-up and synthesis take seconds."""

import pytest

from infra.layer import DependencyLayer, build_dependency_layer
from tests.infra.synthesis import (
    ALARM_EMAIL,
    CDK_JSON_CONTEXT,
    EXTERNAL_AUDIENCE,
    EXTERNAL_ISSUER,
    STAGING,
    Synthesized,
    synthesize,
)


@pytest.fixture(scope="session")
def dependency_layer() -> DependencyLayer:
    return build_dependency_layer()


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory, dependency_layer: DependencyLayer) -> Synthesized:
    """The stack as ``make synth`` builds it (cdk.json context: Cognito user pool on)."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"), CDK_JSON_CONTEXT, dependency_layer)


@pytest.fixture(scope="session")
def synthesized_external_issuer(
    tmp_path_factory: pytest.TempPathFactory, dependency_layer: DependencyLayer
) -> Synthesized:
    """The stack trusting an existing OIDC issuer instead of a Cognito user pool, deployed
    as the staging stage (beside prod in the same account)."""
    context = {
        **CDK_JSON_CONTEXT,
        "stage": STAGING,
        "alarmEmail": ALARM_EMAIL,
        "createCognitoUserPool": "false",
        "jwtIssuer": EXTERNAL_ISSUER,
        "jwtAudience": EXTERNAL_AUDIENCE,
    }
    return synthesize(tmp_path_factory.mktemp("cdk.out"), context, dependency_layer)
