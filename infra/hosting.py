"""The dashboard (``web/``) on CloudFront: a private S3 bucket that only the distribution may
read (Origin Access Control), and the ``config.json`` the page reads next to it, written
at deploy time from this stage's values:

    {"websocketUrl": "wss://...", "httpUrl": "https://...",
     "auth": {"type": "cognito", "domain": "https://<prefix>.auth.<region>.amazoncognito.com",
              "clientId": "...", "scopes": ["openid", "email", "profile"]}}

With an external issuer, ``auth`` is ``{"type": "oidc", "authorizeUrl", "tokenUrl",
"clientId", "scopes"}`` when the issuer's endpoints are configured, else it is left out
(the page then asks for a token). The ID token is what the WebSocket and ``POST
/readings`` accept.

Built in two steps because the sign-in app client needs the dashboard's URL and the
config needs the client: ``DashboardHosting`` (bucket, distribution) first, then
``publish`` once the APIs and the issuer exist."""

from collections.abc import Mapping
from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infra.functions import depend_only_on_role_policy
from infra.layer import REPOSITORY_ROOT
from infra.nag import LOG_GROUP_KMS_REASON, acknowledge, acknowledge_policy_wildcards, skip_checkov

WEB_DIRECTORY = REPOSITORY_ROOT / "web"
CONFIG_OBJECT = "config.json"
INDEX_DOCUMENT = "index.html"


class DashboardHosting(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, stage: str, log_retention: logs.RetentionDays
    ) -> None:
        super().__init__(scope, construct_id)
        self._log_retention = log_retention
        self.bucket = s3.Bucket(
            self,
            "Site",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            # Only the published page lives here: deleting the stage deletes it (the
            # deployment below empties the bucket first).
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"sensor-stream {stage} dashboard",
            default_root_object=INDEX_DOCUMENT,
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                compress=True,
            ),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
        )
        self._acknowledge_findings()

    @property
    def url(self) -> str:
        """``https://<id>.cloudfront.net/``: the page, and the sign-in's redirect target."""
        return f"https://{self.distribution.distribution_domain_name}/"

    @property
    def redirect_urls(self) -> list[str]:
        """Where the sign-in may send the browser back to (the page by either address)."""
        return [self.url, f"{self.url}{INDEX_DOCUMENT}"]

    def publish(self, config: Mapping[str, Any]) -> s3deploy.BucketDeployment:
        """Upload ``web/`` and ``config.json`` (resolved at deploy time), and invalidate the
        distribution's cache so browsers get the new page at once."""
        log_group = logs.LogGroup(
            self, "DeploymentLogs", retention=self._log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        skip_checkov(log_group, CKV_AWS_158=LOG_GROUP_KMS_REASON)
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Publish",
            destination_bucket=self.bucket,
            sources=[
                s3deploy.Source.asset(str(WEB_DIRECTORY), exclude=[CONFIG_OBJECT]),
                s3deploy.Source.json_data(CONFIG_OBJECT, dict(config)),
            ],
            distribution=self.distribution,
            distribution_paths=["/*"],
            # Browsers revalidate (ETag) instead of keeping an old page or config.
            cache_control=[s3deploy.CacheControl.no_cache()],
            memory_limit=256,
            log_group=log_group,
        )
        self._acknowledge_deployment_handler()
        return self.deployment

    def _acknowledge_findings(self) -> None:
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "The bucket holds only the public dashboard's static files, readable through CloudFront "
            "alone (Origin Access Control); requests for them carry no data, and the data they load "
            "goes through the APIs, whose access logs are on.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR1",
            "The dashboard is a static page for the operator's users wherever they are; what it "
            "shows is protected by sign-in and the APIs' token checks, not by the viewer's country.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR2",
            "No WAF web ACL (billed per ACL and request) in front of static files that hold no "
            "data; the APIs behind the page authenticate every request and are throttled per stage.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR3",
            "Access logs of the static page would need an ACL-enabled log bucket for files that "
            "hold no data; the APIs it calls log every request. Enable logging here if required.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR4",
            "The distribution uses the default *.cloudfront.net certificate, for which CloudFront "
            "does not let the viewer TLS policy be set; a custom domain with its own certificate "
            "can set TLSv1.2_2021.",
        )
        skip_checkov(
            self.bucket,
            CKV_AWS_18="Static files of the public page only, read through CloudFront alone; the APIs "
            "log every request for data.",
            CKV_AWS_21="The content is rebuilt from web/ on every deploy; old versions would keep nothing "
            "of value.",
        )
        skip_checkov(
            self.distribution,
            CKV_AWS_68="No WAF web ACL (billed per ACL and request) for a static page without data; the "
            "APIs it calls authenticate and throttle every request.",
            CKV_AWS_86="Access logs would need an ACL-enabled log bucket for a static page without data; "
            "the APIs it calls log every request.",
            CKV_AWS_174="The default *.cloudfront.net certificate does not let the viewer TLS policy be "
            "chosen; a custom domain with its own certificate can require TLSv1.2_2021.",
        )

    def _acknowledge_deployment_handler(self) -> None:
        """CDK's BucketDeployment runs a Lambda function (one per stack) to copy the files."""
        stack = Stack.of(self)
        for child in stack.node.children:
            if not child.node.id.startswith("Custom::CDKBucketDeployment"):
                continue
            acknowledge(
                child,
                "AwsSolutions-L1",
                "CDK's own BucketDeployment handler, whose runtime CDK chooses and updates; it only "
                "copies the dashboard's files at deploy time.",
            )
            role = child.node.try_find_child("ServiceRole")
            if isinstance(child, lambda_.Function) and isinstance(role, iam.Role):
                depend_only_on_role_policy(child, role)  # cfn-lint W3005, as for our functions
                skip_checkov(
                    child,
                    CKV_AWS_115="CDK's file-copying handler runs once per deployment: nothing to reserve.",
                    CKV_AWS_116="A CloudFormation custom resource: CloudFormation reports its failures; "
                    "no event is left to keep.",
                    CKV_AWS_117="It copies between S3 buckets over S3's public endpoint; no VPC resource "
                    "is involved.",
                    CKV_AWS_173="Its environment holds no secret (CDK's own settings).",
                )
                skip_checkov(
                    role.node.find_child("DefaultPolicy"),
                    CKV_AWS_111="Written by CDK's BucketDeployment: writes are limited to this stage's "
                    "dashboard bucket; CloudFront invalidations have no resource-level permissions.",
                )
            if role is not None:
                acknowledge(
                    role,
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaBasicExecutionRole]",
                    "CDK's BucketDeployment handler logs through the AWS-managed basic execution "
                    "policy; it runs only while a deployment copies the dashboard's files.",
                )
                acknowledge_policy_wildcards(
                    role,
                    "Written by CDK's BucketDeployment: it reads the staged asset (CDK's asset bucket) "
                    "and replaces the objects of this stage's dashboard bucket (object names are only "
                    "known at deploy time), and invalidates the distribution's cache (CloudFront "
                    "invalidations have no resource-level permissions).",
                )
