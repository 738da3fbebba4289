"""Alerts for the people who are not watching a browser: each opened and resolved alert
is published to an SNS topic that operators subscribe to (e-mail, SMS, chat)."""

from __future__ import annotations

import json
from typing import Any

from .alerting import AlertEvent
from .models import AlertTriggeredMessage

# SNS subjects are at most 100 characters.
SUBJECT_LIMIT = 100


class AlertPublisher:
    def __init__(self, sns: Any, topic_arn: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    def __call__(self, event: AlertEvent) -> None:
        message = event.message
        attributes: dict[str, str] = {"orgId": event.org_id, "type": message.type}
        if isinstance(message, AlertTriggeredMessage):
            subject = f"[{message.severity}] {message.message}"
            attributes["severity"] = message.severity
        else:
            subject = f"Resolved: rule {message.rule_id} on unit {message.unit_id}"
        self._sns.publish(
            TopicArn=self._topic_arn,
            # Subjects must be printable ASCII without line breaks.
            Subject=subject.encode("ascii", "replace").decode()[:SUBJECT_LIMIT],
            Message=json.dumps({"orgId": event.org_id, **message.to_wire()}),
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
            },
        )
