"""Tenant isolation of the whole in-process path, over generated orgs, units, token scopes,
subscriptions and ids (look-alike ids, ids with ``#``, ``/`` and non-ASCII that the edges
must refuse): every browser gets exactly the readings of its own org that its token and
subscription allow, live and by resume, each once; nothing crosses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor_stream import clients
from sensor_stream.models import ReadingsBatchMessage
from tests.support.clock import FakeClock
from tests.support.events import authorizer_claims
from tests.support.readings import reading
from tests.support.stack import InProcessStack

# Few look-alikes (shared prefixes, the characters keys could confuse), so that orgs and
# units collide often; the invalid ones must be refused at the edges.
VALID_IDS = ["a", "a-b", "a:b", "ab"]
INVALID_IDS = ["a#b", "a/b", "ä", "a b", "", "a+b"]
ids = st.sampled_from(VALID_IDS)


@dataclass(frozen=True)
class Browser:
    org: str
    units_claim: tuple[str, ...] | None
    selection: tuple[tuple[str, ...], tuple[str, ...]] | None  # (unitIds, siteIds) or whole org

    def may_see(self, org: str, unit: str, site: str | None) -> bool:
        if org != self.org or (self.units_claim is not None and unit not in self.units_claim):
            return False
        if self.selection is None:
            return True
        units, sites = self.selection
        return unit in units or (site is not None and site in sites)


@dataclass(frozen=True)
class Sent:
    org: str
    device: str
    unit: str
    site: str | None
    reading_id: str
    via_http: bool


browsers = st.builds(
    Browser,
    org=ids,
    units_claim=st.none() | st.lists(ids, min_size=1, max_size=3, unique=True).map(tuple),
    selection=st.none()
    | st.tuples(
        st.lists(ids, max_size=3, unique=True).map(tuple), st.lists(ids, max_size=2, unique=True).map(tuple)
    ).filter(lambda s: bool(s[0] or s[1])),
)
sent_readings = st.builds(
    Sent,
    org=ids | st.sampled_from(INVALID_IDS),
    device=ids | st.sampled_from(INVALID_IDS),
    unit=ids | st.sampled_from(INVALID_IDS),
    site=st.none() | ids,
    reading_id=st.sampled_from(["r1", "r2", "r-1", "r.1", "R1", "x/1", "x#1"]),
    via_http=st.booleans(),
)


def received(stack: InProcessStack, connection_id: str) -> list[tuple[str, str]]:
    return [
        (r.unit_id, r.id)
        for message in stack.take(connection_id)
        if isinstance(message, ReadingsBatchMessage)
        for batch in message.batches
        for r in batch.readings
    ]


def reset(stack: InProcessStack) -> None:
    """An empty table and fresh containers for each example (the fixture is shared by them)."""
    client = stack.store.client
    table = stack.settings.table_name
    for item in client.scan(TableName=table, ProjectionExpression="pk, sk")["Items"]:
        client.delete_item(TableName=table, Key=item)
    stack.close()
    clients.reset()
    stack.wire_clients()


def is_valid(value: str) -> bool:
    return value in VALID_IDS


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(browsers, min_size=1, max_size=4), st.lists(sent_readings, min_size=4, max_size=16))
def test_every_browser_gets_exactly_its_own_orgs_readings_within_its_scope(
    stack: InProcessStack, clock: FakeClock, watching: list[Browser], sent: list[Sent]
):
    reset(stack)
    start = clock.iso(-60)
    connections: dict[str, Browser] = {}
    for browser in watching:
        claim = list(browser.units_claim) if browser.units_claim is not None else None
        connection_id = stack.open(browser.org, units=claim)
        if browser.selection is not None:
            units, sites = browser.selection
            # Units outside the token's claim would be refused (forbidden): ask for the rest.
            allowed = tuple(u for u in units if claim is None or u in claim)
            browser = Browser(
                browser.org, browser.units_claim, (allowed, sites) if allowed or sites else None
            )
        if browser.selection is not None:
            units, sites = browser.selection
            stack.request(
                connection_id, {"action": "subscribe", "unitIds": list(units), "siteIds": list(sites)}
            )
        connections[connection_id] = browser

    stored: list[Sent] = []
    for index, item in enumerate(sent):
        body = reading(item.unit, clock.iso(-30 + index), id=item.reading_id)
        if item.site:
            body["siteId"] = item.site
        if item.via_http:
            status, _ = stack.post_readings(
                authorizer_claims(item.org), {"deviceId": item.device, "readings": [body]}
            )
            accepted = status == 200
        elif any(c in item.org + item.device for c in "/#+"):
            accepted = False  # not a topic the telemetry rule's filter matches: no invocation
        else:
            accepted = stack.publish_telemetry(item.org, item.device, body)["stored"] == 1
        # What the edges refuse (bad org, device, unit or reading id) is stored under nobody's org.
        valid = all(is_valid(x) for x in (item.org, item.device, item.unit)) and "/" not in item.reading_id
        assert accepted == (valid and "#" not in item.reading_id)
        if accepted:
            stored.append(item)
    stack.deliver()

    for connection_id, browser in connections.items():
        expected = sorted((s.unit, s.reading_id) for s in stored if browser.may_see(s.org, s.unit, s.site))
        assert sorted(received(stack, connection_id)) == expected, browser
        # The same again by resume, and nothing of another org or scope.
        answers = stack.request(connection_id, {"action": "hello", "resume": {"since": start}})
        replayed = [
            (r.unit_id, r.id)
            for message in answers
            if isinstance(message, ReadingsBatchMessage)
            for batch in message.batches
            for r in batch.readings
        ]
        assert sorted(replayed) == expected, browser
        for unit in VALID_IDS:
            [answer] = stack.request(connection_id, {"action": "getLatest", "unitId": unit})
            latest: Any = answer.to_wire()
            if browser.units_claim is not None and unit not in browser.units_claim:
                assert latest["error"]["code"] == "forbidden"
                continue
            own = [s for s in stored if s.org == browser.org and s.unit == unit]
            assert (latest["reading"] or {}).get("id") == (own[-1].reading_id if own else None)
