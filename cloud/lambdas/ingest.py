"""ingest: every telemetry batch and event the rules send, into DynamoDB, once.

Two ways in: a rule's Lambda action (one SELECT output per call: the events rule), and the
telemetry queue's event source mapping (an SQS event of up to 100 rule outputs: the telemetry
rule). Each message is judged on its own (cloud/domain/delivery.py, messages.py: they never raise):
one that must not be stored goes to the dead-letter queue in an envelope with the reason and its
bytes (cloud/domain/rejects.py) and is done with; a batch item failure names only a message that
could not be stored or dead-lettered for now (SQS delivers it again), and a message still failing
on its last delivery goes to the DLQ as retries_exhausted instead of being redriven bare.
Env: TELEMETRY_TABLE, EVENTS_TABLE, DEVICES_TABLE, DEAD_LETTER_QUEUE_NAME, HISTORY_TTL_DAYS (7),
DEADBAND_TEMP_C and DEADBAND_CURRENT_A (0: keep every sample), MAX_RECEIVE_COUNT (the queue's, 5),
DLQ_MAX_BYTES (262144) and the bounds of messages.ENV_BOUNDS: MAX_PAYLOAD_BYTES (131072),
MAX_DEPTH (8), TIME_MAX_AHEAD_S (300), TIME_NOT_BEFORE (2020-01-01).
"""

from __future__ import annotations

import os
import time

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from boto3.dynamodb.types import TypeSerializer

import contract
from cloud import resources
from cloud.domain import delivery, history, messages, rejects
from cloud.lambdas.common import add_metric, client, env, plain_dynamodb, queue_url, setting, table, written

logger = Logger(service=resources.function_name("ingest"))
metrics = Metrics(namespace=resources.METRICS_NAMESPACE, service="ingest")


def now_ms() -> int:
    return int(time.time() * 1000)


def send_dead_letter(why: str, seen: delivery.Inspected, extra: dict | None = None) -> None:
    """The envelope to the DLQ; raises when SQS does (the caller decides what a retry means)."""
    body = rejects.envelope(why, "ingest", thing=seen.thing, kind=seen.kind, received_ms=seen.received_ms,
                            rejected_ms=now_ms(), original=seen.original, source=seen.source, extra=extra,
                            max_bytes=int(setting("DLQ_MAX_BYTES", rejects.SQS_MAX_BYTES)))
    client("sqs").send_message(QueueUrl=queue_url(env("DEAD_LETTER_QUEUE_NAME")), MessageBody=body)
    logger.warning("rejected", extra={"reason": why, "thing": seen.thing})
    add_metric(metrics, "Rejected", 1)


def reject(seen: delivery.Inspected, extra: dict | None = None) -> dict:
    send_dead_letter(seen.reason, seen, extra)
    return {"status": "rejected", "reason": seen.reason}


def put_once(tbl, item) -> bool:
    """False when the item is already there (a duplicate delivery)."""
    return written(tbl.put_item, Item=item, ConditionExpression="attribute_not_exists(sk)")


def telemetry_item(msg: dict, raw: str | None = None) -> tuple[dict, int]:
    return history.telemetry_item(msg, setting("HISTORY_TTL_DAYS", 7), setting("DEADBAND_TEMP_C", 0),
                                  setting("DEADBAND_CURRENT_A", 0), raw=raw)


def ingest_telemetry(msg: dict, raw: str | None = None) -> dict:
    item, samples = telemetry_item(msg, raw)
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
    """The device's latest state, moved only forward in time (events can arrive out of order; a
    time from the future never gets here: messages.time_problem). An older event leaves it as is."""
    written(table("DEVICES_TABLE").update_item,
            Key={"device": msg["device"]},
            UpdateExpression="SET #s = :s, last_event = :e, last_event_ms = :t, boot = :b, fw = :fw, reason = :r",
            ConditionExpression="attribute_not_exists(last_event_ms) OR last_event_ms <= :t",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": msg["state"], ":e": msg["event"], ":t": msg["time"], ":b": msg["boot"],
                                       ":fw": msg["fw"], ":r": msg.get("reason", "")})


def ingest_one(event: dict) -> dict:
    """A rule's Lambda action. A DLQ that cannot be written raises: the invocation is retried
    (AWS's asynchronous invoke; locally the rule's error action keeps the payload)."""
    seen = delivery.inspect_event(event, now_ms(), messages.bounds_from(os.environ))
    if not seen.ok:
        return reject(seen)
    if seen.kind == contract.TELEMETRY:
        return ingest_telemetry(seen.message, seen.raw)
    return ingest_event(seen.message)


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


def last_delivery(record) -> bool:
    """Whether SQS moves this record to the DLQ (bare, no reason) if it fails once more."""
    limit = setting("MAX_RECEIVE_COUNT", resources.EVENT_SOURCES["telemetry"]["max_receive_count"])
    return int(record.attributes.approximate_receive_count or 1) >= limit


def give_up(record, seen: delivery.Inspected, detail: str) -> bool:
    """A record that cannot be stored on its last delivery, to the DLQ with the reason; False if
    even that failed (then SQS's own redrive takes it)."""
    why = messages.reason("retries_exhausted", "%s after %s deliveries" % (
        detail, record.attributes.approximate_receive_count))
    try:
        send_dead_letter(why, seen, {"messageId": record.message_id})
    except Exception:  # noqa: BLE001 - reported as a failure: the queue still has it
        logger.exception("dead letter failed")
        return False
    return True


def handle_reject(record, seen: delivery.Inspected) -> bool:
    """True when the reject is in the DLQ (done), False when it must be delivered again."""
    try:
        reject(seen, {"messageId": record.message_id})
    except Exception:  # noqa: BLE001 - transient (SQS down): the record comes back
        logger.exception("dead letter failed")
        return False
    return True


def ingest_queue_batch(event: dict) -> dict:
    """An SQS batch of telemetry rule outputs: rejects to the dead-letter queue, the rest written
    together; returns the ids SQS must deliver again (partial batch response)."""
    received, bounds = now_ms(), messages.bounds_from(os.environ)
    keyed, samples, seen_of, failed = {}, {}, {}, []
    records = list(SQSEvent(event).records)
    for record in records:
        seen = delivery.inspect_body(record.body, received, bounds)
        seen_of[record.message_id] = seen
        if not seen.ok:
            if not handle_reject(record, seen):
                failed.append(record)
        elif seen.kind == contract.EVENTS:  # not routed here by the rules today; handled rather than lost
            try:
                ingest_event(seen.message)
            except Exception:  # noqa: BLE001 - storage trouble: delivered again
                logger.exception("event not stored")
                failed.append(record)
        else:
            keyed[record.message_id], samples[record.message_id] = telemetry_item(seen.message, seen.raw)
    unwritten = write_items(env("TELEMETRY_TABLE"), keyed) if keyed else set()
    by_id = {r.message_id: r for r in records}
    failed += [by_id[mid] for mid in keyed if mid in unwritten]
    stored_samples = sum(n for mid, n in samples.items() if mid not in unwritten)
    if unwritten:
        logger.warning("unwritten", extra={"count": len(unwritten)})
    add_metric(metrics, "SamplesStored", stored_samples)
    again = [r for r in failed if not (last_delivery(r) and give_up(r, seen_of[r.message_id], "not stored"))]
    return {"batchItemFailures": [{"itemIdentifier": r.message_id} for r in again]}


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context
def handler(event, context):
    if "Records" in event:
        return ingest_queue_batch(event)
    return ingest_one(event)
