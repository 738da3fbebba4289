"""The alert topic on moto's SNS, and an inbox that reads it as an operator would.

In AWS, operators subscribe e-mail, SMS or chat to the alert topic. Locally the topic
delivers to an SQS queue (moto carries SNS -> SQS subscriptions), and this inbox drains
it: each notification is logged on the stack's stderr, where ``make dev`` shows it, and
kept for the admin API (``GET /notifications``), where tests read what was published.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from typing import Any

import boto3

log = logging.getLogger("devstack.alerts")

TOPIC_NAME = "sensor-stream-alerts"
INBOX_QUEUE_NAME = "sensor-stream-alert-inbox"
# Notifications kept for the admin API (the oldest go first).
KEPT = 500


class AlertInbox:
    def __init__(self) -> None:
        self._sns = boto3.client("sns")
        self._sqs = boto3.client("sqs")
        self.topic_arn: str = self._sns.create_topic(Name=TOPIC_NAME)["TopicArn"]
        self._queue_url: str = self._sqs.create_queue(QueueName=INBOX_QUEUE_NAME)["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self._received: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="alert-inbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def notifications(self) -> list[dict[str, Any]]:
        """What the topic published, oldest first: subject, the message and its attributes."""
        with self._lock:
            return list(self._received)

    def _drain(self) -> None:
        while not self._stopped.is_set():
            try:
                answer = self._sqs.receive_message(
                    QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
            except Exception:
                if self._stopped.wait(1):
                    return
                log.exception("alert inbox: receive failed")
                continue
            for message in answer.get("Messages", []):
                self._keep(json.loads(message["Body"]))
                self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _keep(self, envelope: dict[str, Any]) -> None:
        """An SNS envelope (the queue gets it as the body, not raw) as the admin API shows it."""
        notification = {
            "subject": envelope.get("Subject", ""),
            "message": json.loads(envelope["Message"]),
            "attributes": {
                name: attribute.get("Value")
                for name, attribute in envelope.get("MessageAttributes", {}).items()
            },
            "timestamp": envelope.get("Timestamp"),
        }
        log.warning("alert notification: %s", notification["subject"])
        with self._lock:
            self._received.append(notification)
