"""ingest: every telemetry batch and event the rules send, into DynamoDB, once.

Two ways in: a rule's Lambda action (one SELECT output per call: the events rule), and the
telemetry queue's event source mapping (an SQS event of up to 100 rule outputs: the telemetry
rule). Invalid messages go to the dead-letter queue with the reason (never dropped silently); a
queued message that could not be stored is reported back as a batch item failure, so SQS delivers
it again and, after the queue's max receive count, moves it to the dead-letter queue.
Env: TELEMETRY_TABLE, EVENTS_TABLE, DEVICES_TABLE, DEAD_LETTER_QUEUE_NAME, HISTORY_TTL_DAYS (7),
DEADBAND_TEMP_C and DEADBAND_CURRENT_A (0: keep every sample).
"""

from __future__ import annotations

import json
import time

import orjson

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from cloud.domain import history, messages
from cloud.lambdas.common import add_metric, client, env, plain_dynamodb, queue_url, setting, table

logger = Logger(service="motorguard-ingest")
metrics = Metrics(namespace="MotorGuard", service="ingest")


def reject(event: dict, reason: str) -> dict:
    body = json.dumps({"rejectedBy": "ingest", "reason": reason, "topic": "devices/%s/%s" % (
        event.get("thing"), event.get("kind")), "message": messages.device_part(event)}, default=str)
    client("sqs").send_message(QueueUrl=queue_url(env("DEAD_LETTER_QUEUE_NAME")), MessageBody=body)
    logger.warning("rejected", extra={"reason": reason, "thing": event.get("thing")})
    add_metric(metrics, "Rejected", 1)
    return {"status": "rejected", "reason": reason}


def put_once(tbl, item) -> bool:
    """False when the item is already there (a duplicate delivery)."""
    try:
        tbl.put_item(Item=item, ConditionExpression="attribute_not_exists(sk)")
        return True
    except ClientError as e:
        if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def telemetry_item(out: dict, raw: str | None = None) -> tuple[dict, int]:
    return history.telemetry_item(out, setting("HISTORY_TTL_DAYS", 7), setting("DEADBAND_TEMP_C", 0),
                                  setting("DEADBAND_CURRENT_A", 0), raw=raw)


def ingest_telemetry(out: dict) -> dict:
    item, samples = telemetry_item(out)
    stored = put_once(table("TELEMETRY_TABLE"), item)
    add_metric(metrics, "SamplesStored" if stored else "Duplicates", samples if stored else 1)
    return {"status": "stored" if stored else "duplicate", "samples": samples, "sk": item["sk"]}


def ingest_event(msg: dict) -> dict:
    item = history.event_item(msg, setting("HISTORY_TTL_DAYS", 7))
    stored = put_once(table("EVENTS_TABLE"), item)
    if stored:
        update_latest(msg)
    return {"status": "stored" if stored else "duplicate", "sk": item["sk"]}


def update_latest(msg: dict) -> None:
    """The device's latest state, moved only forward in time (events can arrive out of order)."""
    try:
        table("DEVICES_TABLE").update_item(
            Key={"device": msg["device"]},
            UpdateExpression="SET #s = :s, last_event = :e, last_event_ms = :t, boot = :b, fw = :fw, reason = :r",
            ConditionExpression="attribute_not_exists(last_event_ms) OR last_event_ms <= :t",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": msg["state"], ":e": msg["event"], ":t": msg["time"], ":b": msg["boot"],
                                       ":fw": msg["fw"], ":r": msg.get("reason", "")},
        )
    except ClientError as e:
        if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def check(event: dict) -> tuple[dict | None, str | None]:
    """The device's message out of a rule's output, or the reason it must be rejected."""
    kind = event.get("kind")
    if kind not in ("telemetry", "events"):
        return None, "unknown topic kind %r (expected telemetry or events)" % kind
    msg = messages.device_part(event)
    problem = messages.problems(messages.KINDS[kind], msg)
    if problem:
        return None, "schema: " + problem
    if event.get("thing") and msg["device"] != event["thing"]:
        return None, "device %r published on %r's topic" % (msg["device"], event["thing"])
    return msg, None


def ingest_one(event: dict) -> dict:
    msg, problem = check(event)
    if problem:
        return reject(event, problem)
    return ingest_telemetry(event) if event["kind"] == "telemetry" else ingest_event(msg)


# BatchWriteItem takes at most 25 puts; DynamoDB may hand some back unprocessed (throttling).
BATCH_WRITE_MAX = 25
WRITE_ATTEMPTS = 4


_serialize = TypeSerializer().serialize


def write_items(table_name: str, keyed: dict) -> set:
    """Puts every item of keyed ({message id: item}); returns the ids of those still unwritten after
    WRITE_ATTEMPTS. A put overwrites: the key is (device, first sample, boot, seq), so a message
    delivered twice (MQTT QoS 1, SQS at-least-once) still leaves exactly one item.
    Items go out as DynamoDB attribute values, serialized here: the resource layer would walk
    the whole request model to do it, for each call."""
    by_key = {}
    for mid, item in keyed.items():
        by_key.setdefault((item["device"], item["sk"]), []).append(mid)  # one put per key in a request
    unique = {key: {k: _serialize(v) for k, v in keyed[mids[0]].items()} for key, mids in by_key.items()}
    pending = list(unique.items())
    for attempt in range(WRITE_ATTEMPTS):
        if not pending:
            break
        if attempt:
            time.sleep(0.05 * 2 ** attempt)
        retry = []
        for i in range(0, len(pending), BATCH_WRITE_MAX):
            chunk = dict(pending[i:i + BATCH_WRITE_MAX])
            r = plain_dynamodb().batch_write_item(
                RequestItems={table_name: [{"PutRequest": {"Item": item}} for item in chunk.values()]})
            for req in r.get("UnprocessedItems", {}).get(table_name, []):
                item = req["PutRequest"]["Item"]
                key = (item["device"]["S"], item["sk"]["S"])
                retry.append((key, chunk[key]))
        pending = retry
    return {mid for key, _ in pending for mid in by_key[key]}


def ingest_queue_batch(event: dict) -> dict:
    """An SQS batch of telemetry rule outputs: rejects to the dead-letter queue, the rest written
    together; returns the ids SQS must deliver again (partial batch response)."""
    keyed, samples, failures, stored_samples = {}, {}, [], 0
    for record in SQSEvent(event).records:
        try:
            out = orjson.loads(record.body)  # a quarter of json.loads' time on a 30-sample batch
        except ValueError:
            reject({"body": record.body[:1000]}, "the queued body is not JSON")
            continue
        msg, problem = check(out)
        if problem:
            reject(out, problem)
        elif out["kind"] == "events":
            ingest_event(msg)  # not routed here by the rules today; handled rather than lost
        else:
            keyed[record.message_id], samples[record.message_id] = telemetry_item(out, raw=record.body)
    unwritten = write_items(env("TELEMETRY_TABLE"), keyed) if keyed else set()
    for mid in keyed:
        if mid in unwritten:
            failures.append({"itemIdentifier": mid})
        else:
            stored_samples += samples[mid]
    if unwritten:
        logger.warning("unwritten", extra={"count": len(unwritten)})
    add_metric(metrics, "SamplesStored", stored_samples)
    return {"batchItemFailures": failures}


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context
def handler(event, context):
    if "Records" in event:
        return ingest_queue_batch(event)
    return ingest_one(event)
