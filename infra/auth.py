"""Who may connect and ingest: an OIDC issuer whose tokens the HTTP API authorizer and
the connect function both verify. Either an existing issuer (context values) or, with
``createCognitoUserPool``, a Cognito user pool made here, with its hosted sign-in
(managed login) for the dashboard: authorization code with PKCE, a public client (no
secret), sending the browser back to the dashboard's CloudFront URL.

Nothing secret is involved: an issuer URL, an audience and a public JWKS URL.
"""

from collections.abc import Sequence
from typing import Any

from aws_cdk import Aws, Fn, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from infra.config import ConfigurationError, DeployConfig
from infra.nag import acknowledge

# Custom attributes: the user's organisation and, optionally, the units they may see
# (comma-separated; absent = every unit of the org). ID token claims "custom:org"/"custom:units".
ORG_ATTRIBUTE = "org"
UNITS_ATTRIBUTE = "units"
_SCOPES = {
    "openid": cognito.OAuthScope.OPENID,
    "email": cognito.OAuthScope.EMAIL,
    "profile": cognito.OAuthScope.PROFILE,
    "phone": cognito.OAuthScope.PHONE,
}
COGNITO_TOKEN_USE = "id"  # noqa: S105 - the token_use claim's value, not a secret


class TokenIssuer(Construct):
    """``issuer``, ``audience``, ``jwks_url`` and the org/units claim names of accepted
    tokens; ``sign_in`` is the dashboard's ``auth`` section of config.json (None: the
    issuer's sign-in endpoints are not configured)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeployConfig, dashboard_urls: Sequence[str]
    ) -> None:
        super().__init__(scope, construct_id)
        self.user_pool: cognito.UserPool | None = None
        self.user_pool_client: cognito.UserPoolClient | None = None
        self.domain: cognito.UserPoolDomain | None = None
        self.sign_in: dict[str, Any] | None = None
        self.org_claim = config.jwt_org_claim
        self.units_claim = config.jwt_units_claim
        # Cognito: only ID tokens carry custom:org; an access token passes API Gateway's
        # authorizer (by client_id) and is then refused with "send the ID token".
        self.token_use = COGNITO_TOKEN_USE if config.create_cognito_user_pool else ""
        if not config.create_cognito_user_pool:
            self.issuer = config.jwt_issuer
            self.audience = config.jwt_audience
            self.jwks_url = config.jwt_jwks_url
            if config.oidc_authorize_url:
                self.sign_in = {
                    "type": "oidc",
                    "authorizeUrl": config.oidc_authorize_url,
                    "tokenUrl": config.oidc_token_url,
                    "clientId": config.oidc_client_id,
                    "scopes": list(config.sign_in_scopes),
                }
            return

        unknown = sorted(set(config.sign_in_scopes) - set(_SCOPES))
        if unknown:
            raise ConfigurationError(
                f"signInScopes: Cognito knows {', '.join(_SCOPES)}; not {', '.join(unknown)}"
            )
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            # Operators create users (with their org); nobody signs up on their own.
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            custom_attributes={
                # Mutable so that an administrator can move a user; app clients cannot write it.
                ORG_ATTRIBUTE: cognito.StringAttribute(min_len=1, max_len=64, mutable=True),
                UNITS_ATTRIBUTE: cognito.StringAttribute(max_len=2048, mutable=True),
            },
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
            ),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            # The users outlive the stack, and the pool cannot be deleted by accident.
            removal_policy=RemovalPolicy.RETAIN,
            deletion_protection=True,
        )
        self.user_pool_client = self.user_pool.add_client(
            "DashboardClient",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True, admin_user_password=True),
            # org and units are readable (they end up in the ID token) but never writable by the
            # user themself: only an administrator decides what a user may see.
            read_attributes=cognito.ClientAttributes()
            .with_standard_attributes(email=True, email_verified=True)
            .with_custom_attributes(ORG_ATTRIBUTE, UNITS_ATTRIBUTE),
            write_attributes=cognito.ClientAttributes().with_standard_attributes(email=True),
            prevent_user_existence_errors=True,
            # The dashboard signs users in through the hosted sign-in: authorization code,
            # which Cognito completes with PKCE for a client without a secret. Scripts still
            # use the API (admin or SRP sign-in, docs/deploy.md).
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[_SCOPES[scope] for scope in config.sign_in_scopes],
                callback_urls=list(dashboard_urls),
                logout_urls=list(dashboard_urls),
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
        )
        self.domain = self.user_pool.add_domain(
            "SignIn",
            cognito_domain=cognito.CognitoDomainOptions(
                domain_prefix=config.auth_domain_prefix
                or Fn.join("-", ["sensor-stream", config.stage, Aws.ACCOUNT_ID])
            ),
            managed_login_version=cognito.ManagedLoginVersion.NEWER_MANAGED_LOGIN,
        )
        # Managed login shows a client's pages only with a style: Cognito's own.
        cognito.CfnManagedLoginBranding(
            self,
            "SignInStyle",
            user_pool_id=self.user_pool.user_pool_id,
            client_id=self.user_pool_client.user_pool_client_id,
            use_cognito_provided_values=True,
        )
        self.sign_in = {
            "type": "cognito",
            "domain": self.domain.base_url(),
            "clientId": self.user_pool_client.user_pool_client_id,
            "scopes": list(config.sign_in_scopes),
        }
        # The "iss" of the pool's tokens (built as CDK's own user pool authorizer builds it;
        # the pool's ProviderURL attribute lacks the scheme).
        self.issuer = (
            f"https://cognito-idp.{Stack.of(self).region}.{Aws.URL_SUFFIX}/{self.user_pool.user_pool_id}"
        )
        # Cognito ID tokens carry the app client id as their audience.
        self.audience = self.user_pool_client.user_pool_client_id
        self.jwks_url = f"{self.issuer}/.well-known/jwks.json"

        acknowledge(
            self.user_pool,
            "AwsSolutions-COG2",
            "MFA is optional (TOTP) so that operators can onboard dashboard users without an "
            "authenticator app; sign-up is disabled and passwords are long. Stricter deployments "
            "set mfa=Mfa.REQUIRED here.",
        )
        acknowledge(
            self.user_pool,
            "AwsSolutions-COG8",
            "The Plus feature plan (threat protection) is a paid per-user tier; sign-up is "
            "disabled, so only operator-created users exist. Accounts that want it set the pool's "
            "feature plan to PLUS without any other change.",
        )
