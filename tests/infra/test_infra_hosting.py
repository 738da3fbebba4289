"""The dashboard on CloudFront (private bucket, Origin Access Control), its config.json
written at deploy time, and the Cognito hosted sign-in it uses (authorization code with
PKCE: a public client sending the browser back to the dashboard)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App

from infra.config import ConfigurationError, DeployConfig
from infra.hosting import WEB_DIRECTORY
from tests.infra.synthesis import CDK_JSON_CONTEXT, EXTERNAL_AUDIENCE, Synthesized

DISTRIBUTION_DOMAIN = "<distribution domain>"


def _one(synthesized: Synthesized, resource_type: str) -> tuple[str, Any]:
    ((logical_id, resource),) = synthesized.template.find_resources(resource_type).items()
    return logical_id, resource


def _deployment(synthesized: Synthesized) -> dict[str, Any]:
    return _one(synthesized, "Custom::CDKBucketDeployment")[1]["Properties"]


def _config_json(synthesized: Synthesized) -> dict[str, Any]:
    """config.json as the deployment writes it, each deploy-time value as the template
    spells it (a Ref or Fn::Join)."""
    deployment = _deployment(synthesized)
    for key, markers in zip(deployment["SourceObjectKeys"], deployment["SourceMarkers"], strict=True):
        directory = synthesized.asset_directory(key)
        if (directory / "config.json").is_file():
            text = (directory / "config.json").read_text()
            for marker, value in markers.items():
                text = text.replace(marker, json.dumps({"deploy-time": value}))
            return json.loads(text)
    raise AssertionError("no config.json among the deployment's sources")


def _deployed(value: Any) -> Any:
    """A deploy-time value: its Fn::Join parts, the JSON quotes around it dropped."""
    parts = value["deploy-time"]["Fn::Join"][1]
    return [parts[0].removeprefix('"'), *parts[1:-1], parts[-1].removesuffix('"')]


def test_bucket_is_private_and_readable_by_the_distribution_only(synthesized: Synthesized) -> None:
    hosting = synthesized.stack.hosting
    bucket = synthesized.resource(hosting.bucket)["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    _, policy = _one(synthesized, "AWS::S3::BucketPolicy")
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    (read,) = allows
    assert read["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert read["Action"] == "s3:GetObject"
    distribution_arn = read["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Join"][1]
    assert distribution_arn[-1] == {"Ref": synthesized.logical_id(hosting.distribution)}


def test_distribution_reads_through_origin_access_control_over_https(synthesized: Synthesized) -> None:
    oac_id, oac = _one(synthesized, "AWS::CloudFront::OriginAccessControl")
    assert oac["Properties"]["OriginAccessControlConfig"]["OriginAccessControlOriginType"] == "s3"
    assert oac["Properties"]["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    config = synthesized.resource(synthesized.stack.hosting.distribution)["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac_id, "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}  # no legacy OAI
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["DefaultCacheBehavior"]["AllowedMethods"] == ["GET", "HEAD"]
    assert "ResponseHeadersPolicyId" in config["DefaultCacheBehavior"]
    assert config["DefaultRootObject"] == "index.html"


def test_deployment_publishes_web_and_invalidates_the_cache(synthesized: Synthesized) -> None:
    deployment = _deployment(synthesized)
    hosting = synthesized.stack.hosting
    assert deployment["DestinationBucketName"] == {"Ref": synthesized.logical_id(hosting.bucket)}
    assert deployment["DistributionId"] == {"Ref": synthesized.logical_id(hosting.distribution)}
    assert deployment["DistributionPaths"] == ["/*"]
    assert deployment["SystemMetadata"] == {"cache-control": "no-cache"}
    staged = [synthesized.asset_directory(key) for key in deployment["SourceObjectKeys"]]
    (web,) = [directory for directory in staged if (directory / "index.html").is_file()]
    assert sorted(path.name for path in web.iterdir()) == sorted(
        path.name for path in WEB_DIRECTORY.iterdir() if path.name != "config.json"
    )


def test_config_json_names_the_stages_endpoints_and_its_sign_in(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    config = _config_json(synthesized)
    assert set(config) == {"websocketUrl", "httpUrl", "auth"}
    assert _deployed(config["websocketUrl"]) == [
        "wss://",
        {"Ref": synthesized.logical_id(stack.websocket.api)},
        ".execute-api.",
        {"Ref": "AWS::Region"},
        ".",
        {"Ref": "AWS::URLSuffix"},
        "/live",
    ]
    assert _deployed(config["httpUrl"]) == [
        "https://",
        {"Ref": synthesized.logical_id(stack.http.api)},
        ".execute-api.",
        {"Ref": "AWS::Region"},
        ".",
        {"Ref": "AWS::URLSuffix"},
        "",  # no trailing slash: POST {httpUrl}/readings
    ]
    auth = config["auth"]
    assert set(auth) == {"type", "domain", "clientId", "scopes"}
    assert auth["type"] == "cognito"
    assert auth["scopes"] == ["openid", "email", "profile"]
    assert _deployed(auth["domain"]) == [
        "https://",
        {"Ref": synthesized.logical_id(stack.token_issuer.domain)},  # type: ignore[arg-type]
        ".auth.",
        {"Ref": "AWS::Region"},
        ".amazoncognito.com",
    ]
    client = synthesized.logical_id(stack.token_issuer.user_pool_client)  # type: ignore[arg-type]
    assert auth["clientId"]["deploy-time"]["Fn::Join"][1][1] == {"Ref": client}


def test_sign_in_client_uses_the_code_flow_back_to_the_dashboard(synthesized: Synthesized) -> None:
    client = synthesized.resource(synthesized.stack.token_issuer.user_pool_client)["Properties"]  # type: ignore[arg-type]
    # A public client: Cognito then requires PKCE on the code exchange's side of the page.
    assert client["GenerateSecret"] is False
    assert client["AllowedOAuthFlows"] == ["code"]
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    assert client["AllowedOAuthScopes"] == ["openid", "email", "profile"]
    assert client["SupportedIdentityProviders"] == ["COGNITO"]
    distribution = synthesized.logical_id(synthesized.stack.hosting.distribution)
    expected = [
        {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution, "DomainName"]}, path]]}
        for path in ("/", "/index.html")
    ]
    assert client["CallbackURLs"] == expected
    assert client["LogoutURLs"] == expected
    # The ID token carries the org and units (the client may read them, never write them).
    assert {"custom:org", "custom:units"} <= set(client["ReadAttributes"])
    assert client["WriteAttributes"] == ["email"]


def test_sign_in_domain_is_the_stages_own_with_cognitos_managed_login(synthesized: Synthesized) -> None:
    _, domain = _one(synthesized, "AWS::Cognito::UserPoolDomain")
    assert domain["Properties"]["Domain"] == {
        "Fn::Join": ["-", ["sensor-stream-prod", {"Ref": "AWS::AccountId"}]]
    }
    assert domain["Properties"]["ManagedLoginVersion"] == 2
    _, branding = _one(synthesized, "AWS::Cognito::ManagedLoginBranding")
    client = synthesized.logical_id(synthesized.stack.token_issuer.user_pool_client)  # type: ignore[arg-type]
    assert branding["Properties"]["ClientId"] == {"Ref": client}
    assert branding["Properties"]["UseCognitoProvidedValues"] is True


def test_outputs_name_the_dashboard_and_its_sign_in(synthesized: Synthesized) -> None:
    outputs = synthesized.template_json["Outputs"]
    distribution = synthesized.logical_id(synthesized.stack.hosting.distribution)
    assert outputs["DashboardUrl"]["Value"] == {
        "Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution, "DomainName"]}, "/"]]
    }
    assert outputs["SignInDomain"]["Value"]["Fn::Join"][1][0] == "https://"


def test_an_external_issuer_without_sign_in_endpoints_leaves_auth_out(
    synthesized_external_issuer: Synthesized,
) -> None:
    config = _config_json(synthesized_external_issuer)
    assert set(config) == {"websocketUrl", "httpUrl"}  # the page then asks for a token
    synthesized_external_issuer.template.resource_count_is("AWS::Cognito::UserPoolDomain", 0)


def test_an_external_issuer_with_sign_in_endpoints_is_an_oidc_sign_in() -> None:
    # Checked on the construct's config (a third synthesis would cost seconds).
    from aws_cdk import Stack

    from infra.auth import TokenIssuer

    context = {
        **CDK_JSON_CONTEXT,
        "createCognitoUserPool": "false",
        "jwtIssuer": "https://login.example.com/tenant",
        "jwtAudience": EXTERNAL_AUDIENCE,
        "oidcAuthorizeUrl": "https://login.example.com/tenant/authorize",
        "oidcTokenUrl": "https://login.example.com/tenant/token",
    }
    app = App(context=context)
    issuer = TokenIssuer(
        Stack(app, "S"), "Auth", config=DeployConfig.from_context(app.node), dashboard_urls=[]
    )
    assert issuer.sign_in == {
        "type": "oidc",
        "authorizeUrl": "https://login.example.com/tenant/authorize",
        "tokenUrl": "https://login.example.com/tenant/token",
        "clientId": EXTERNAL_AUDIENCE,
        "scopes": ["openid", "email", "profile"],
    }


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"authDomainPrefix": "My_Prefix"}, "authDomainPrefix"),
        ({"authDomainPrefix": "sensor-cognito-login"}, "cognito"),
        ({"oidcAuthorizeUrl": "https://login.example.com/authorize"}, "both"),
        (
            {"oidcAuthorizeUrl": "http://login.example.com/a", "oidcTokenUrl": "http://login.example.com/t"},
            "https",
        ),
    ],
)
def test_bad_sign_in_settings_are_refused(context: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DeployConfig.from_context(App(context={**CDK_JSON_CONTEXT, **context}).node)
