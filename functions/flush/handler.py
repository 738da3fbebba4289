"""Flush: the schedule starts fan-out shard 0 every minute, which starts the other shards
with ``{"flushShard": k}``; each ticks every second until its successor takes over."""

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from sensor_stream import clients
from sensor_stream.coordination import ShardEvent
from sensor_stream.delivery import Flusher, TickReport, summarize
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
    settings = get_settings()
    if "flushShard" in event:
        shard = parse(event=event, model=ShardEvent).flush_shard
    else:
        parse(event=event, model=EventBridgeModel)
        shard = 0

    def keep_going() -> bool:
        return context.get_remaining_time_in_millis() / 1000 > settings.flush_stop_margin_seconds

    flusher = TracedFlusher(
        clients.store(),
        clients.fanout_gateway(),
        settings,
        publish_alert=clients.alert_publisher() if shard == 0 else None,
        shard=shard,
        start_worker=clients.worker_starter() if shard == 0 else None,
    )
    try:
        reports = flusher.run(keep_going)
    finally:
        flusher.close()
    summary = summarize(reports, shard)
    logger.info("flush invocation done", extra={**summary, "ticksTraced": traces.recorded})
    return summary
