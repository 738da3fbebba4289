"""A message's history items as PartiQL INSERTs (``Table.insert_new``): first write wins
item by item, 25 to a request, throttled statements sent again, other failures raised;
and the local stack's emulation of BatchExecuteStatement's INSERTs, which moto lacks."""

from __future__ import annotations

from typing import Any, cast

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.moto_fidelity import insert_fields
from sensor_stream.dynamodb_writes import LeanWrites
from sensor_stream.store.dynamo import StatementFailed, Table, insert_statement
from tests.unit.conftest import TABLE_NAME


def item(sk: str, data: str = "first") -> dict[str, Any]:
    return {
        "pk": {"S": "HIST#acme#u1"},
        "sk": {"S": sk},
        "data": {"S": data},
        "expiresAt": {"N": "1800000000"},
    }


def stored(client: Any, sk: str) -> dict[str, Any] | None:
    key = {"pk": {"S": "HIST#acme#u1"}, "sk": {"S": sk}}
    return client.get_item(TableName=TABLE_NAME, Key=key, ConsistentRead=True).get("Item")


@pytest.fixture
def client(aws: None) -> Any:
    return boto3.client("dynamodb")


def test_new_items_are_put_and_taken_keys_keep_their_first_item(client: Any):
    table = Table(client, TABLE_NAME)
    assert table.insert_new([item("a"), item("b")]) == [True, True]

    assert table.insert_new([item("a", "second"), item("c"), item("b", "second")]) == [False, True, False]
    assert stored(client, "a") == item("a")
    assert stored(client, "b") == item("b")
    assert stored(client, "c") == item("c")


def test_sixty_items_go_twenty_five_to_a_request(client: Any):
    sizes: list[int] = []
    client.meta.events.register(
        "before-parameter-build.dynamodb.BatchExecuteStatement",
        lambda params, **_: sizes.append(len(params["Statements"])),
    )

    assert Table(client, TABLE_NAME).insert_new([item(f"r{i:02}") for i in range(60)]) == [True] * 60

    assert sizes == [25, 25, 10]
    assert all(stored(client, f"r{i:02}") == item(f"r{i:02}") for i in range(60))


def test_the_lean_client_inserts_as_boto3_does(client: Any):
    lean = LeanWrites(client, boto3.DEFAULT_SESSION.get_credentials())  # type: ignore[union-attr]
    Table(client, TABLE_NAME).insert_new([item("a")])

    assert Table(cast(Any, lean), TABLE_NAME).insert_new([item("a", "second"), item("b")]) == [False, True]
    assert stored(client, "a") == item("a")
    assert stored(client, "b") == item("b")


class ScriptedStatements:
    """A DynamoDB client double whose BatchExecuteStatement answers each statement with
    the next code of its script for it (None: success); records what was sent."""

    def __init__(self, script: dict[str, list[str | None]]) -> None:
        self.script = script
        self.sent: list[list[str]] = []

    def batch_execute_statement(self, Statements: list[dict[str, Any]]) -> dict[str, Any]:
        sks = [statement["Parameters"][1]["S"] for statement in Statements]
        self.sent.append(sks)
        responses: list[dict[str, Any]] = []
        for sk in sks:
            code = self.script.get(sk, [None]).pop(0) if self.script.get(sk) else None
            responses.append(
                {"Error": {"Code": code, "Message": code}} if code else {"TableName": TABLE_NAME}
            )
        return {"Responses": responses}


def test_throttled_statements_are_sent_again_alone_until_they_pass(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sensor_stream.store.dynamo.time.sleep", lambda _: None)
    double = ScriptedStatements(
        {
            "b": ["ThrottlingError", "ProvisionedThroughputExceeded"],
            "c": ["InternalServerError"],
            "d": ["DuplicateItem"],
        }
    )

    inserted = Table(cast(Any, double), TABLE_NAME).insert_new([item("a"), item("b"), item("c"), item("d")])

    assert inserted == [True, True, True, False]
    assert double.sent == [["a", "b", "c", "d"], ["b", "c"], ["b"]]


def test_a_statement_refused_for_good_raises_and_is_not_sent_again():
    double = ScriptedStatements({"b": ["ValidationError"]})

    with pytest.raises(StatementFailed, match="ValidationError"):
        Table(cast(Any, double), TABLE_NAME).insert_new([item("a"), item("b")])
    assert double.sent == [["a", "b"]]


def test_statements_still_throttled_after_every_attempt_raise(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sensor_stream.store.dynamo.time.sleep", lambda _: None)
    double = ScriptedStatements({"a": ["ThrottlingError"] * 10})

    with pytest.raises(RuntimeError, match="1 inserts still unprocessed"):
        Table(cast(Any, double), TABLE_NAME).insert_new([item("a")])


# --- the local stack's emulation ---------------------------------------------------------


@given(
    st.lists(
        st.text(min_size=1, max_size=12).filter(lambda name: name.strip() == name), min_size=1, max_size=6
    )
)
def test_an_insert_statement_names_its_table_and_attributes_in_order(names: list[str]):
    assert insert_fields(insert_statement("my-table", names)) == ("my-table", names)


def test_the_emulation_answers_each_statement_as_dynamodb_does(client: Any):
    statement = insert_statement(TABLE_NAME, ["pk", "sk", "data"])
    missing_table = insert_statement("no-such-table", ["pk", "sk"])
    parameters = [{"S": "HIST#acme#u1"}, {"S": "x"}, {"S": "first"}]

    answers = client.batch_execute_statement(
        Statements=[
            {"Statement": statement, "Parameters": parameters},
            {"Statement": statement, "Parameters": [*parameters[:2], {"S": "second"}]},
            {"Statement": statement, "Parameters": parameters[:2]},
            {"Statement": missing_table, "Parameters": parameters[:2]},
            {
                "Statement": statement,
                "Parameters": [{"S": "HIST#acme#u1"}, {"N": "1"}, {"S": "wrong key type"}],
            },
        ]
    )["Responses"]

    codes = [answer.get("Error", {}).get("Code") for answer in answers]
    assert codes == [None, "DuplicateItem", "ValidationError", "ResourceNotFound", "ValidationError"]
    assert stored(client, "x") == {"pk": {"S": "HIST#acme#u1"}, "sk": {"S": "x"}, "data": {"S": "first"}}


def test_statements_other_than_a_parameterised_insert_are_moto_s(client: Any):
    client.put_item(TableName=TABLE_NAME, Item=item("s"))
    # (moto's parser takes the table's name unquoted only)
    select = f"SELECT * FROM {TABLE_NAME} WHERE pk = 'HIST#acme#u1' AND sk = 's'"  # noqa: S608

    answers = client.batch_execute_statement(Statements=[{"Statement": select}])["Responses"]

    assert answers[0]["Item"]["data"] == {"S": "first"}
