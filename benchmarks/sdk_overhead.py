"""What boto3 costs ingest: the CPU of a single-reading message's two DynamoDB requests
(the history item's conditional PutItem, and the BatchWriteItem of its outbox entry and
unit registry item), sent by boto3 as the store sends them and, for comparison, as plain
HTTP requests of the same bodies over urllib3 (the library botocore itself sends with).
Against the local stack's DynamoDB (moto, in its own process, as ``make dev`` runs it);
only the sender's CPU is counted (``time.process_time``). Prints figures, never asserts.

    make bench ARGS="--scenario sdk"                # 3 rounds of 1,000 messages
    python -m benchmarks.sdk_overhead               # the same
    python -m benchmarks.sdk_overhead --messages 3000

Each is measured signed (SigV4, as in AWS) and unsigned (the local stack signs with a
credential scope and no HMAC). Three senders: boto3's client; the store's lean writes
(sensor_stream/dynamodb_writes.py: botocore's events, signer and retry rules around a
plain request, which is what the functions send); and the bare requests, the floor.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import botocore
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from benchmarks.live import machine
from devstack import aws_server
from sensor_stream import clients, table
from sensor_stream.dynamodb_writes import LeanWrites

TABLE = "sdk-overhead"
REGION = "us-east-1"
CREDENTIALS = Credentials("bench", "bench")
JSON_PROTOCOL = "application/x-amz-json-1.0"


def history_item(index: int) -> dict[str, Any]:
    """Shaped as ingest's history item of one reading (~300 bytes of reading JSON)."""
    reading = json.dumps(
        {
            "id": f"0.{index}.1795417489000000",
            "unitId": f"unit-{index % 100}",
            "temperature": 4.2,
            "humidity": 40.5,
            "recordedAt": "2026-11-23T07:00:00.000Z",
            "receivedAt": "2026-11-23T07:00:00.012Z",
            "deviceId": "device-0",
            "source": "iot",
        }
    )
    return {
        "pk": {"S": f"H#acme#unit-{index % 100}"},
        "sk": {"S": f"2026-11-23T07:00:00.000Z#0.{index}"},
        "data": {"S": reading},
        "queuedIn": {"S": f"1795417489#{index:012d}"},
        "expiresAt": {"N": "1800000000"},
    }


def requests_of(index: int) -> list[tuple[str, dict[str, Any]]]:
    """(operation, request) of one message, as the store sends them."""
    history = history_item(index)
    outbox = {**history, "pk": {"S": f"OUTBOX#1795417480#{index % 4}"}, "orgId": {"S": "acme"}}
    unit = {**history, "pk": {"S": "UNITS#acme#0"}, "sk": {"S": f"unit-{index % 100}"}}
    return [
        (
            "PutItem",
            {
                "TableName": TABLE,
                "Item": history,
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
        ),
        ("BatchWriteItem", {"RequestItems": {TABLE: [{"PutRequest": {"Item": i}} for i in (outbox, unit)]}}),
    ]


def store_client(endpoint: str, signed: bool) -> Any:
    """boto3's client as the store configures it: its User-Agent, retries and no
    parameter validation."""
    options: dict[str, Any] = {"parameter_validation": False}
    if not signed:
        options["signature_version"] = botocore.UNSIGNED
    return clients._client("dynamodb", clients._retries(**options), endpoint)


def client_sender(client: Any) -> Callable[[int], None]:
    """A message's requests through ``client``'s put_item and batch_write_item."""
    calls = {"PutItem": client.put_item, "BatchWriteItem": client.batch_write_item}

    def send(index: int) -> None:
        for operation, request in requests_of(index):
            calls[operation](**request)

    return send


def http_sender(endpoint: str, signed: bool) -> Callable[[int], None]:
    """The same requests as plain HTTP: JSON bodies, SigV4 by botocore's signer when signed."""
    pool = urllib3.connection_from_url(endpoint, maxsize=4, retries=False)
    signer = SigV4Auth(CREDENTIALS, "dynamodb", REGION)

    def send(index: int) -> None:
        for operation, request in requests_of(index):
            body = json.dumps(request).encode()
            headers = {"X-Amz-Target": f"DynamoDB_20120810.{operation}", "Content-Type": JSON_PROTOCOL}
            if signed:
                signing = AWSRequest(method="POST", url=endpoint + "/", data=body, headers=headers)
                signer.add_auth(signing)
                headers = dict(signing.headers.items())
            response = pool.urlopen("POST", "/", body=body, headers=headers)
            if response.status != 200:
                raise RuntimeError(f"{operation}: HTTP {response.status} {response.data[:200]!r}")
            json.loads(response.data)

    return send


def cpu_ms_per_message(send: Callable[[int], None], first: int, messages: int) -> float:
    started = time.process_time()
    for index in range(first, first + messages):
        send(index)
    return (time.process_time() - started) / messages * 1000


def start_dynamodb() -> tuple[str, multiprocessing.Process]:
    listener = socket.create_server(("127.0.0.1", 0))
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=aws_server.serve, args=(listener, theirs, 3600.0), daemon=True)
    process.start()
    theirs.close()
    port = ours.recv()
    listener.close()
    return f"http://127.0.0.1:{port}", process


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sdk_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=1000, help="messages a round (default 1,000)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # Nothing leaves this machine: a region for the clients, credentials for the signer.
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", CREDENTIALS.access_key)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", CREDENTIALS.secret_key)
    endpoint, server = start_dynamodb()
    try:
        table.create_table(clients._client("dynamodb", clients._retries(), endpoint), TABLE)
        senders = {
            "boto3, signed (AWS)": client_sender(store_client(endpoint, signed=True)),
            "boto3, unsigned": client_sender(store_client(endpoint, signed=False)),
            "lean writes, signed (AWS)": client_sender(LeanWrites(store_client(endpoint, True), CREDENTIALS)),
            "lean writes, unsigned": client_sender(LeanWrites(store_client(endpoint, False), CREDENTIALS)),
            "plain HTTP, signed": http_sender(endpoint, signed=True),
            "plain HTTP, unsigned": http_sender(endpoint, signed=False),
        }
        print(f"sensor-stream: ingest's two DynamoDB requests a message, sender CPU; {machine()}")
        first = 0
        for send in senders.values():  # warm up: connections, caches, the table's partitions
            cpu_ms_per_message(send, first, 100)
            first += 100
        for name, send in senders.items():
            rounds = []
            for _ in range(args.rounds):
                rounds.append(cpu_ms_per_message(send, first, args.messages))
                first += args.messages
            print(
                f"  {name:<30} {min(rounds):.2f} / {statistics.median(rounds):.2f} / {max(rounds):.2f} "
                f"ms CPU a message (min / median / max of {args.rounds} x {args.messages:,})"
            )
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
