"""The local IoT SQL evaluator on the project's own rules and on what it must refuse."""

import base64
import json
import re

import pytest

from devstack.iot_sql import IotSqlEvaluationError, Message, UnsupportedIotSql, compile_rule
from sensor_stream.iot_rules import COMMAND_ACK_RULE, TELEMETRY_RULE, TOPIC_RULES


def message(topic: str, payload: bytes, timestamp_ms: int = 1_767_225_600_123) -> Message:
    return Message(topic=topic, payload=payload, timestamp_ms=timestamp_ms)


def test_telemetry_rule_yields_the_ingest_event():
    payload = b'{"unitId": "fridge-1", "temperature": 4.2, "orgId": "spoofed"}'
    rule = compile_rule(TELEMETRY_RULE.sql)

    result = rule.evaluate(message("orgs/acme/devices/dev-7/telemetry", payload))

    assert rule.topic_filter == TELEMETRY_RULE.topic_filter
    assert result == {
        "payload": base64.b64encode(payload).decode(),
        "orgId": "acme",
        "deviceId": "dev-7",
        "topic": "orgs/acme/devices/dev-7/telemetry",
        "receivedAt": 1_767_225_600_123,
    }


def test_every_project_rule_compiles_to_its_declared_filter():
    for spec in TOPIC_RULES:
        assert compile_rule(spec.sql).topic_filter == spec.topic_filter


def test_payload_that_is_not_json_still_travels_base64_encoded():
    raw = b"\xff\x00not json"
    result = compile_rule(COMMAND_ACK_RULE.sql).evaluate(message("orgs/a/devices/d/commands/ack", raw))

    assert base64.b64decode(result["payload"]) == raw


def test_topic_level_beyond_the_topic_is_undefined_and_left_out():
    rule = compile_rule("SELECT topic(9) AS deep, topic(1) AS first FROM 'a/#'")

    assert rule.evaluate(message("a/b", b"{}")) == {"first": "a"}


def test_star_merges_the_json_payload_and_keywords_ignore_case():
    rule = compile_rule("select *, Topic(2) as device from 'things/+';")

    result = rule.evaluate(message("things/t1", json.dumps({"x": 1}).encode()))

    assert result == {"x": 1, "device": "t1"}


def test_star_on_a_non_json_payload_is_an_evaluation_error():
    rule = compile_rule("SELECT * FROM 'things/+'")

    with pytest.raises(IotSqlEvaluationError):
        rule.evaluate(message("things/t1", b"plain text"))


def test_quoted_filter_may_contain_an_escaped_quote():
    assert compile_rule("SELECT topic() AS t FROM 'it''s/+'").topic_filter == "it's/+"


@pytest.mark.parametrize(
    ("sql", "complaint"),
    [
        ("SELECT * FROM 'a/+' WHERE temperature > 50", "WHERE"),
        ("SELECT clientid() AS c FROM 'a/+'", "clientid"),
        ("SELECT encode(*, 'hex') AS p FROM 'a/+'", "base64"),
        ("SELECT topic(0) AS t FROM 'a/+'", "from 1"),
        ("SELECT topic() FROM 'a/+'", "AS <name>"),
        ("SELECT * AS everything FROM 'a/+'", "* AS"),
        ("SELECT temperature AS t FROM 'a/+'", "temperature"),
        ("SELECT topic(2) AS t FROM a", "quoted topic filter"),
        ("SELECT encode(* 'base64') AS p FROM 'a/+'", "',' or ')'"),
        ("SELECT topic() AS t", "end of the statement"),
        ("SELECT topic() AS t FROM 'a' + 1", "'+' at position 29 is not supported"),
        ("DELETE FROM 'a'", "SELECT"),
    ],
)
def test_unsupported_syntax_is_refused_with_a_reason(sql, complaint):
    with pytest.raises(UnsupportedIotSql, match=re.escape(complaint)):
        compile_rule(sql)
