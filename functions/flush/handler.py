"""Flush: the schedule starts an invocation every minute; it ticks every second inside until
the next one takes over (or its time runs low)."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from sensor_stream import clients
from sensor_stream.delivery import Flusher, TickReport
from sensor_stream.observability import logger, metrics
from sensor_stream.settings import get_settings
from sensor_stream.tracing import TickTraces

# Not the whole 60-s loop under one traced handler: only the ticks that did work.
traces = TickTraces.from_environment()


class TracedFlusher(Flusher):
    def tick(self, now: float) -> TickReport:
        return traces.tick(super().tick, now)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parse(event=event, model=EventBridgeModel)
    settings = get_settings()

    def keep_going() -> bool:
        return context.get_remaining_time_in_millis() / 1000 > settings.flush_stop_margin_seconds

    flusher = TracedFlusher(
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
    logger.info("flush invocation done", extra={**summary, "ticksTraced": traces.recorded})
    return summary
