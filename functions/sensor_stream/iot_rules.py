"""The IoT topic rules, defined once: the CDK stack deploys them and the local rule
runner evaluates the very same SQL.

The payload travels base64-encoded so that a message that is not JSON still reaches
ingest (and is quarantined there with its reason), and so that ``orgId``/``deviceId``
come from the topic only: nothing in the payload can override them.
"""

from dataclasses import dataclass
from typing import Literal

IOT_SQL_VERSION = "2016-03-23"

TELEMETRY_TOPIC_FILTER = "orgs/+/devices/+/telemetry"
COMMAND_ACK_TOPIC_FILTER = "orgs/+/devices/+/commands/ack"


def telemetry_topic(org_id: str, device_id: str) -> str:
    return f"orgs/{org_id}/devices/{device_id}/telemetry"


def command_topic(org_id: str, device_id: str) -> str:
    return f"orgs/{org_id}/devices/{device_id}/commands"


def command_ack_topic(org_id: str, device_id: str) -> str:
    return f"orgs/{org_id}/devices/{device_id}/commands/ack"


def _topic_shape(topic_filter: str) -> str:
    """A WHERE condition that holds for topics of the filter's shape: each fixed level in
    its place (``topic(1) = 'orgs' AND topic(3) = 'devices' AND ...``). IoT SQL numbers a
    Basic Ingest topic's levels after its ``$aws/rules/<rule>`` prefix."""
    return " AND ".join(
        f"topic({position}) = '{level}'"
        for position, level in enumerate(topic_filter.split("/"), start=1)
        if level not in ("+", "#")
    )


def _select_from(topic_filter: str) -> str:
    # IoT SQL built from the constants above, never from input.
    select = "SELECT encode(*, 'base64') AS payload, topic(2) AS orgId, topic(4) AS deviceId"
    return f"{select}, topic() AS topic, timestamp() AS receivedAt FROM '{topic_filter}'"


# Rule names allow only [a-zA-Z0-9_]; a stage is a lowercase word (infra/config.py).
RULE_NAME_PREFIX = "sensor_stream"


@dataclass(frozen=True)
class TopicRuleSpec:
    # The rule's own part of its name ("telemetry"): the local stack names the rule
    # sensor_stream_telemetry, a deployed stage sensor_stream_<stage>_telemetry, so that
    # several stages (staging, prod) share one account and region.
    suffix: str
    sql: str
    topic_filter: str
    target: Literal["ingest", "publish"]
    description: str

    @property
    def name(self) -> str:
        """The rule's name without a stage (the local stack's)."""
        return self.rule_name()

    def rule_name(self, stage: str | None = None) -> str:
        """The rule's name in a deployed ``stage`` (devices address it in Basic Ingest
        topics), or without a stage."""
        return "_".join(part for part in (RULE_NAME_PREFIX, stage, self.suffix) if part)

    def basic_ingest_prefix(self, stage: str | None = None) -> str:
        return f"$aws/rules/{self.rule_name(stage)}/"

    @property
    def where(self) -> str:
        return _topic_shape(self.topic_filter)

    @property
    def deployed_sql(self) -> str:
        """The SQL deployed to AWS IoT: ``sql`` and a WHERE on the topic's shape, because a
        message published to the rule directly (Basic Ingest, ``$aws/rules/<rule>/...``)
        skips the FROM filter, so without it any topic below the prefix would reach the
        function with whatever stands in levels 2 and 4. The local stack (no Basic Ingest;
        its rule runner subscribes to FROM) evaluates ``sql``."""
        return f"{self.sql} WHERE {self.where}"


TELEMETRY_RULE = TopicRuleSpec(
    suffix="telemetry",
    sql=_select_from(TELEMETRY_TOPIC_FILTER),
    topic_filter=TELEMETRY_TOPIC_FILTER,
    target="ingest",
    description="Device telemetry into the ingest function",
)
COMMAND_ACK_RULE = TopicRuleSpec(
    suffix="command_ack",
    sql=_select_from(COMMAND_ACK_TOPIC_FILTER),
    topic_filter=COMMAND_ACK_TOPIC_FILTER,
    target="publish",
    description="Device command acknowledgements into the publish function",
)
TOPIC_RULES = (TELEMETRY_RULE, COMMAND_ACK_RULE)
