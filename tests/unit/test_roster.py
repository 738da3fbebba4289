"""The flush's roster (sensor_stream/roster.py) against the connection store on moto: what
it holds after applying logged changes is what reading the org's list would give, for any
sequence of connects, changes and disconnects, also with changes missing from the log."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor_stream import clients, keys
from sensor_stream.models import ConnectionRecord, Subscription
from sensor_stream.roster import ConnectionRoster
from sensor_stream.store import SensorStore

NOW = 1_800_000_000.0
CONNECTED_AT = datetime.fromtimestamp(NOW, UTC)
CONNECTIONS = [f"Conn{n}Q=" for n in range(6)]
SHARDS = 3

orgs = itertools.count()
# (what, which connection, which unit): connect, resubscribe, disconnect, or a change whose
# log entry is lost (the writer died between the version bump and the log write)
operation = st.tuples(
    st.sampled_from(["connect", "subscribe", "disconnect", "lose-log"]),
    st.sampled_from(CONNECTIONS),
    st.sampled_from(["u1", "u2", "u3"]),
)


def only(unit: str) -> dict[str, Subscription]:
    return {"subscription": Subscription(scope="selected", unit_ids=[unit])}


def record(org_id: str, connection_id: str) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=connection_id,
        org_id=org_id,
        user_id="user",
        connected_at=CONNECTED_AT,
        expires_at=int(NOW) + 3600,
    )


def apply(store: SensorStore, org_id: str, what: str, connection_id: str, unit: str) -> None:
    current = store.connections.get(connection_id + org_id, NOW)
    if what == "connect" and current is None:
        store.connections.create(record(org_id, connection_id + org_id))
    elif what == "subscribe" and current is not None:
        store.connections.save(current.model_copy(update=only(unit)))
    elif what == "disconnect" and current is not None:
        store.connections.delete(current.connection_id, org_id)
    elif what == "lose-log" and current is not None:
        store.connections.save(current.model_copy(update=only(unit)))
        version = store.connections.list_versions([org_id])[org_id]
        store.table.delete(keys.org_connection_change_key(org_id, version))


def as_read(records: list[ConnectionRecord]) -> dict[str, ConnectionRecord]:
    return {r.connection_id: r for r in records}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.lists(operation, max_size=4), min_size=1, max_size=6))
def test_the_roster_holds_what_reading_the_list_gives(aws: None, steps: list[list[tuple[str, str, str]]]):
    store = clients.store()
    org_id = f"org-{next(orgs)}"
    whole = ConnectionRoster(store)
    shards = [ConnectionRoster(store) for _ in range(SHARDS)]

    for batch in steps:
        for what, connection_id, unit in batch:
            apply(store, org_id, what, connection_id, unit)
        [seen] = whole.of_orgs([org_id], NOW)
        by_shard = [
            roster.of_orgs([org_id], NOW, shard=k, shards=SHARDS)[0] for k, roster in enumerate(shards)
        ]

        expected = as_read(store.connections.of_org(org_id, NOW))
        assert as_read(seen) == expected
        assert as_read([r for part in by_shard for r in part]) == expected
        assert sum(len(part) for part in by_shard) == len(expected)  # each in one shard only


def test_a_reconnect_costs_a_small_query_not_the_list(aws: None):
    store = clients.store()
    org_id = "acme-reconnects"
    for connection_id in CONNECTIONS:
        store.connections.create(record(org_id, connection_id))
    roster = ConnectionRoster(store)
    roster.of_orgs([org_id], NOW)

    store.connections.delete(CONNECTIONS[0], org_id)
    store.connections.create(record(org_id, "Fresh1Q="))
    [seen] = roster.of_orgs([org_id], NOW)

    assert roster.lists_read == 1  # the first tick only
    assert roster.changes_applied == 2
    assert sorted(r.connection_id for r in seen) == sorted([*CONNECTIONS[1:], "Fresh1Q="])


def test_an_older_save_logged_after_a_newer_one_does_not_win(aws: None):
    """Two requests of one connection: the second's save can be logged before the first's."""
    store = clients.store()
    org_id = "acme-out-of-order"
    created = store.connections.create(record(org_id, CONNECTIONS[0]))
    roster = ConnectionRoster(store)
    roster.of_orgs([org_id], NOW)
    newer = created.model_copy(
        update={"version": 3, "subscription": Subscription(scope="selected", unit_ids=["u2"])}
    )
    older = created.model_copy(
        update={"version": 2, "subscription": Subscription(scope="selected", unit_ids=["u1"])}
    )
    store.table.put({**keys.org_connection_key(org_id, CONNECTIONS[0]), **_copy_attributes(newer)})
    for logged in (newer, older):  # the log, in the order the versions were bumped
        store.connections._list_changed(org_id, logged.connection_id, logged)

    [[seen]] = roster.of_orgs([org_id], NOW)

    assert roster.lists_read == 1
    assert seen.version == 3
    assert seen.subscription.unit_ids == ["u2"]


def _copy_attributes(changed: ConnectionRecord) -> dict[str, dict[str, str]]:
    return {"data": {"S": changed.to_json()}, "version": {"N": str(changed.version)}}
