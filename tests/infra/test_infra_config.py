"""Deploy settings from CDK context: defaults, the external issuer mode and clear refusals."""

from typing import Any

import pytest
from aws_cdk import App
from aws_cdk import aws_logs as logs

from infra.config import ConfigurationError, DeployConfig
from tests.infra.synthesis import CDK_JSON_CONTEXT


def _config(**context: Any) -> DeployConfig:
    return DeployConfig.from_context(App(context={**CDK_JSON_CONTEXT, **context}).node)


def test_cdk_json_defaults_create_a_cognito_user_pool() -> None:
    config = _config()
    assert (config.stage, config.stack_name) == ("prod", "SensorStream-prod")
    assert config.create_cognito_user_pool is True
    assert (config.jwt_org_claim, config.jwt_units_claim) == ("custom:org", "custom:units")
    assert config.iot_data_endpoint == ""
    assert config.log_retention == logs.RetentionDays.ONE_MONTH


def test_external_issuer_from_command_line_context() -> None:
    # `-c key=value` on the command line arrives as strings.
    config = _config(
        createCognitoUserPool="false", jwtIssuer="https://issuer.example.com/", jwtAudience="dashboard"
    )
    assert config.create_cognito_user_pool is False
    assert config.jwt_issuer == "https://issuer.example.com/"  # verbatim: tokens' "iss" must equal it
    assert config.jwt_jwks_url == "https://issuer.example.com/.well-known/jwks.json"
    assert (config.jwt_org_claim, config.jwt_units_claim) == ("org", "units")


def test_a_stage_names_its_own_stack() -> None:
    assert _config(stage="staging").stack_name == "SensorStream-staging"
    # Unset (e.g. an app without cdk.json's context), the stage is prod.
    assert DeployConfig.from_context(App().node).stage == "prod"


def test_explicit_jwks_url_and_claim_names_win() -> None:
    config = _config(
        createCognitoUserPool=False,
        jwtIssuer="https://tenant.example.com",
        jwtAudience="dashboard",
        jwtJwksUrl="https://tenant.example.com/oauth2/v1/keys",
        jwtOrgClaim="https://sensor-stream/org",
    )
    assert config.jwt_jwks_url == "https://tenant.example.com/oauth2/v1/keys"
    assert config.jwt_org_claim == "https://sensor-stream/org"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"createCognitoUserPool": "false"}, "jwtIssuer"),
        ({"createCognitoUserPool": "false", "jwtIssuer": "https://issuer.example.com"}, "jwtAudience"),
        (
            {"createCognitoUserPool": "false", "jwtIssuer": "http://issuer.example.com", "jwtAudience": "a"},
            "https://",
        ),
        ({"createCognitoUserPool": "maybe"}, "true or false"),
        ({"stage": "Prod"}, "lowercase letter"),
        ({"stage": "prod-eu"}, "lowercase letter"),
        ({"stage": "averyveryverylongstage"}, "up to 11"),
        ({"logRetention": "FOREVER_AND_A_DAY"}, "ONE_MONTH"),
    ],
)
def test_bad_context_is_refused_with_the_fix(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _config(**context)
