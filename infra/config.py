"""Deploy-time settings, read from CDK context (``cdk.json`` or ``-c key=value``).

Only identifiers live here (issuer, audience, endpoints): the stack holds no secret.
"""

import re
from dataclasses import dataclass
from typing import Any

from aws_cdk import aws_logs as logs
from constructs import Node

# Cognito puts custom user attributes into the ID token as "custom:<name>".
COGNITO_ORG_CLAIM = "custom:org"
COGNITO_UNITS_CLAIM = "custom:units"
DEFAULT_ORG_CLAIM = "org"
DEFAULT_UNITS_CLAIM = "units"

# A stage names a deployment (its stack, IoT rules, dashboard, sign-in domain), so that
# staging and production share one account and region. Short: it ends up in names with
# length limits (IoT rule names, the Cognito domain prefix).
DEFAULT_STAGE = "prod"
STAGE_PATTERN = re.compile(r"[a-z][a-z0-9]{0,11}")
STACK_NAME_PREFIX = "SensorStream"

# Cognito's sign-in domain https://<prefix>.auth.<region>.amazoncognito.com: unique per
# region across all accounts; it may not contain these words.
DOMAIN_PREFIX_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
DOMAIN_PREFIX_FORBIDDEN = ("aws", "amazon", "cognito")
DEFAULT_SIGN_IN_SCOPES = ("openid", "email", "profile")

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})


class ConfigurationError(ValueError):
    """A context value is missing or malformed; the message says which and how to fix it."""


def stack_name(stage: str) -> str:
    """The CloudFormation stack of a stage: ``SensorStream-prod``, ``SensorStream-staging``."""
    return f"{STACK_NAME_PREFIX}-{stage}"


@dataclass(frozen=True)
class DeployConfig:
    stage: str
    create_cognito_user_pool: bool
    # External OIDC issuer (ignored when the Cognito user pool is created).
    jwt_issuer: str
    jwt_audience: str
    jwt_jwks_url: str
    jwt_org_claim: str
    jwt_units_claim: str
    # Empty: boto3's default iot-data endpoint for the region (data-ats.iot.<region>.amazonaws.com).
    iot_data_endpoint: str
    alarm_email: str
    # Subscribed to the alert topic (warm freezers, silent sensors); empty: nobody yet.
    alert_email: str
    log_retention: logs.RetentionDays
    # Cognito's hosted sign-in for the dashboard: the domain prefix; empty means
    # sensor-stream-<stage>-<account id>.
    auth_domain_prefix: str
    # An external issuer's authorization and token endpoints (both or neither), the
    # dashboard's client id there (default: jwtAudience) and the scopes it asks for.
    oidc_authorize_url: str
    oidc_token_url: str
    oidc_client_id: str
    sign_in_scopes: tuple[str, ...]

    @property
    def stack_name(self) -> str:
        return stack_name(self.stage)

    @classmethod
    def from_context(cls, node: Node) -> "DeployConfig":
        stage = context_text(node, "stage") or DEFAULT_STAGE
        if not STAGE_PATTERN.fullmatch(stage):
            raise ConfigurationError(
                f"stage must be a lowercase letter followed by up to 11 lowercase letters or digits "
                f"(e.g. prod, staging, dev2); got {stage!r}"
            )
        create_cognito_user_pool = context_flag(node, "createCognitoUserPool", default=True)
        # Kept verbatim: a token's "iss" must equal it exactly (some issuers end with "/").
        issuer = context_text(node, "jwtIssuer")
        audience = context_text(node, "jwtAudience")
        if not create_cognito_user_pool:
            if not issuer or not audience:
                raise ConfigurationError(
                    "Without the Cognito user pool (createCognitoUserPool=false), set the token issuer "
                    "and audience: -c jwtIssuer=https://issuer.example.com -c jwtAudience=<audience>"
                )
            if not issuer.startswith("https://"):
                raise ConfigurationError(f"jwtIssuer must be an https:// URL, got {issuer!r}")
        cognito = create_cognito_user_pool
        domain_prefix = context_text(node, "authDomainPrefix")
        if domain_prefix and (
            not DOMAIN_PREFIX_PATTERN.fullmatch(domain_prefix)
            or any(word in domain_prefix for word in DOMAIN_PREFIX_FORBIDDEN)
        ):
            raise ConfigurationError(
                "authDomainPrefix must be lowercase letters, digits and inner hyphens (at most 63), "
                f"without 'aws', 'amazon' or 'cognito'; got {domain_prefix!r}"
            )
        authorize_url = context_text(node, "oidcAuthorizeUrl")
        token_url = context_text(node, "oidcTokenUrl")
        if bool(authorize_url) != bool(token_url):
            raise ConfigurationError(
                "Set both oidcAuthorizeUrl and oidcTokenUrl (the dashboard's sign-in), or neither"
            )
        for key, url in (("oidcAuthorizeUrl", authorize_url), ("oidcTokenUrl", token_url)):
            if url and not url.startswith("https://"):
                raise ConfigurationError(f"{key} must be an https:// URL, got {url!r}")
        scopes = tuple(context_text(node, "signInScopes").split()) or DEFAULT_SIGN_IN_SCOPES
        return cls(
            stage=stage,
            create_cognito_user_pool=create_cognito_user_pool,
            jwt_issuer=issuer,
            jwt_audience=audience,
            jwt_jwks_url=context_text(node, "jwtJwksUrl")
            or (f"{issuer.rstrip('/')}/.well-known/jwks.json" if issuer else ""),
            jwt_org_claim=context_text(node, "jwtOrgClaim")
            or (COGNITO_ORG_CLAIM if cognito else DEFAULT_ORG_CLAIM),
            jwt_units_claim=context_text(node, "jwtUnitsClaim")
            or (COGNITO_UNITS_CLAIM if cognito else DEFAULT_UNITS_CLAIM),
            iot_data_endpoint=context_text(node, "iotDataEndpoint"),
            alarm_email=context_text(node, "alarmEmail"),
            alert_email=context_text(node, "alertEmail"),
            log_retention=_retention(node, "logRetention", default=logs.RetentionDays.ONE_MONTH),
            auth_domain_prefix=domain_prefix,
            oidc_authorize_url=authorize_url,
            oidc_token_url=token_url,
            oidc_client_id=context_text(node, "oidcClientId") or audience,
            sign_in_scopes=scopes,
        )


def _raw(node: Node, key: str) -> Any:
    return node.try_get_context(key)


def context_text(node: Node, key: str) -> str:
    value = _raw(node, key)
    return "" if value is None else str(value).strip()


def context_flag(node: Node, key: str, *, default: bool) -> bool:
    value = _raw(node, key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ConfigurationError(f"Context value {key} must be true or false, got {value!r}")


def _retention(node: Node, key: str, *, default: logs.RetentionDays) -> logs.RetentionDays:
    value = context_text(node, key)
    if not value:
        return default
    try:
        return logs.RetentionDays[value]
    except KeyError as error:
        allowed = ", ".join(member.name for member in logs.RetentionDays)
        raise ConfigurationError(f"{key} must be one of {allowed}; got {value!r}") from error
