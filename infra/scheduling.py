"""The flush schedule: EventBridge starts one flush tick loop every minute (its finest rate)."""

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from sensor_stream import catalog

FLUSH_SCHEDULE = events.Schedule.rate(Duration.seconds(catalog.FLUSH_SCHEDULE_SECONDS))
# A tick loop that could not start within a minute is superseded by the next one.
FLUSH_EVENT_MAX_AGE = Duration.seconds(catalog.FLUSH.async_max_event_age_seconds)


class FlushSchedule(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, flush_function: lambda_.Function) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "EveryMinute",
            description="Starts the sensor-stream flush tick loop",
            schedule=FLUSH_SCHEDULE,
            targets=[
                targets.LambdaFunction(flush_function, max_event_age=FLUSH_EVENT_MAX_AGE, retry_attempts=2)
            ],
        )
        # Lambda's queue for asynchronous events: no retry of a failed loop (the next minute
        # starts a fresh one) and no stale start of a loop that waited for concurrency.
        flush_function.configure_async_invoke(
            retry_attempts=catalog.FLUSH.async_retry_attempts, max_event_age=FLUSH_EVENT_MAX_AGE
        )
