"""What `make fuzz` reads back from the local cloud: the stored rows, the dead letters, and the key
ingest stores a message under. Shared by cloud/tools/fuzz.py and cloud/tools/fuzz_engine.py."""

from __future__ import annotations

import json

import orjson

import contract
from cloud.domain import history


def drain_dead_letters(parse=json.loads) -> list[dict]:
    """Every dead letter not read yet, each body through parse, deleted from the queue."""
    import boto3

    from cloud import resources

    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=resources.DEAD_LETTER_QUEUE)["QueueUrl"]
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages", [])
        if not got:
            return out
        out += [parse(m["Body"]) for m in got]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for k, m in enumerate(got)])


def stored_items(table: str) -> dict:
    import boto3

    from cloud import resources

    t = boto3.resource("dynamodb").Table(resources.TABLES[table][0])
    items, kw = {}, {}
    while True:
        r = t.scan(**kw)
        items.update({(i["device"], i.get("sk")): i for i in r["Items"]})
        if "LastEvaluatedKey" not in r:
            return items
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def key_of(kind: str, value) -> tuple | None:
    """The key ingest stores a message under, read leniently (None when it has none)."""
    try:
        t = value["samples"][0]["time"] if kind == contract.TELEMETRY else value["time"]
        return str(value["device"]), history.sort_key(t, value["boot"], value["seq"])
    except Exception:  # noqa: BLE001 - no usable key: it cannot have been stored
        return None


def lenient(raw: bytes):
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
