"""API Gateway stage access logs: a log group with retention and a JSON line per request."""

import json
from collections.abc import Mapping

import jsii
from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import LOG_GROUP_KMS_REASON, skip_checkov


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """The stage's log destination and format (a jsii interface, not a struct)."""

    def __init__(self, destination: apigwv2.IAccessLogDestination, log_format: apigateway.AccessLogFormat):
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigateway.AccessLogFormat:
        return self._format


def json_access_logs(
    scope: Construct, construct_id: str, *, fields: Mapping[str, str], retention: logs.RetentionDays
) -> tuple[logs.LogGroup, apigwv2.IAccessLogSettings]:
    """A log group and the settings that make a stage write ``fields`` ($context variables) to it."""
    log_group = logs.LogGroup(scope, construct_id, retention=retention, removal_policy=RemovalPolicy.DESTROY)
    skip_checkov(log_group, CKV_AWS_158=LOG_GROUP_KMS_REASON)
    settings = _AccessLogSettings(
        apigwv2.LogGroupLogDestination(log_group),
        apigateway.AccessLogFormat.custom(json.dumps(dict(fields), separators=(",", ":"))),
    )
    return log_group, settings
