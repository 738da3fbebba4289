"""Commands from browsers to devices, and the devices' acknowledgements back."""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from typing import Any

from pydantic import ValidationError

from .errors import MalformedJson, NotFound, Unavailable
from .gateway import ConnectionGateway
from .iot_rules import command_topic
from .models import (
    CommandAcceptedMessage,
    CommandAckMessage,
    CommandAckPayload,
    CommandMessage,
    ConnectionRecord,
    IotRuleEvent,
    PendingCommand,
    SendCommandRequest,
    WireModel,
)
from .observability import logger, metrics
from .protocol import RequestContext, require_live_token, validate
from .store import SensorStore
from .wire import decode_json


def send_command(
    context: RequestContext, record: ConnectionRecord, document: dict[str, Any], iot_data: Any
) -> list[WireModel | bytes]:
    """Publish a command to a device of the caller's org and remember it until its ack
    or its timeout. Raises AppError for the caller's mistakes and IoT failures."""
    request = validate(SendCommandRequest, document, "'sendCommand' request")
    require_live_token(record, context.now)
    store, now = context.store, context.now
    # Devices are keyed by org: another org's device looks exactly like an unknown one.
    if not store.readings.device_known(record.org_id, request.device_id):
        raise NotFound(f"device {request.device_id!r} is not known in your organization")
    command = PendingCommand(
        command_id=str(uuid.uuid4()),
        org_id=record.org_id,
        device_id=request.device_id,
        connection_id=record.connection_id,
        request_id=request.request_id,
        command=request.command,
        issued_at=now,
        due_at=math.ceil(now.timestamp()) + context.settings.command_timeout_seconds,
    )
    # Recorded before publishing, so even an instant ack finds it; "accepted" goes out
    # before the device can answer, so the client sees accepted before ack.
    store.commands.put_pending(command)
    context.gateway.send(
        record.connection_id,
        CommandAcceptedMessage(request_id=request.request_id, command_id=command.command_id),
    )
    message = CommandMessage(
        command_id=command.command_id, command=request.command, params=request.params, issued_at=now
    )
    try:
        iot_data.publish(
            topic=command_topic(record.org_id, request.device_id),
            qos=1,
            payload=message.to_json().encode(),
        )
    except Exception as error:
        store.commands.expire(command.command_id)
        logger.exception("publishing a command failed", extra={"command_id": command.command_id})
        raise Unavailable(
            f"command {command.command_id} could not be sent to the device; try again"
        ) from error
    metrics.add_metric(name="CommandsSent", unit="Count", value=1)
    return []


def acknowledge(store: SensorStore, gateway: ConnectionGateway, event: IotRuleEvent) -> bool:
    """Relay a device's ack to the connection that sent the command. False when the ack is
    invalid, late (already timed out), or from a device the command was not for."""
    try:
        payload = base64.b64decode(event.payload, validate=True)
        ack = CommandAckPayload.model_validate(decode_json(payload, "ack payload"))
    except (binascii.Error, MalformedJson, ValidationError) as error:
        logger.warning("invalid command ack ignored", extra={"topic": event.topic, "error": str(error)})
        metrics.add_metric(name="CommandAcksInvalid", unit="Count", value=1)
        return False
    command = store.commands.complete(ack.command_id, event.org_id, event.device_id)
    if command is None:
        logger.info("ack for no pending command", extra={"command_id": ack.command_id, "topic": event.topic})
        return False
    gateway.send(
        command.connection_id,
        CommandAckMessage(
            request_id=command.request_id, command_id=command.command_id, status=ack.status, detail=ack.detail
        ),
    )
    metrics.add_metric(name="CommandsAcknowledged", unit="Count", value=1)
    return True
