"""Flush: the schedule starts an invocation every minute; it ticks every second inside until
the next one takes over (or its time runs low)."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from sensor_stream import clients
from sensor_stream.delivery import Flusher
from sensor_stream.observability import logger, metrics, tracer
from sensor_stream.settings import get_settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parse(event=event, model=EventBridgeModel)
    settings = get_settings()

    def keep_going() -> bool:
        return context.get_remaining_time_in_millis() / 1000 > settings.flush_stop_margin_seconds

    flusher = Flusher(
        clients.store(), clients.fanout_gateway(), settings, publish_alert=clients.alert_publisher()
    )
    try:
        reports = flusher.run(keep_going)
    finally:
        flusher.close()
    summary = {
        "ticks": len(reports),
        "readings": sum(r.readings for r in reports),
        "messages": sum(r.fanout.messages_sent for r in reports),
        "connectionsGone": sum(r.fanout.connections_gone for r in reports),
        "connectionsClosed": sum(r.fanout.connections_closed for r in reports),
        "commandsTimedOut": sum(r.commands_timed_out for r in reports),
    }
    logger.info("flush invocation done", extra=summary)
    return summary
