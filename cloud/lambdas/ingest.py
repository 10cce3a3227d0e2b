"""ingest: every telemetry batch and event the rules send, into DynamoDB, once.

Invalid messages go to the dead-letter queue with the reason (never dropped silently).
Env: TELEMETRY_TABLE, EVENTS_TABLE, DEVICES_TABLE, DEAD_LETTER_QUEUE_NAME, HISTORY_TTL_DAYS (7),
DEADBAND_TEMP_C and DEADBAND_CURRENT_A (0: keep every sample).
"""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger, Metrics
from botocore.exceptions import ClientError

from cloud.domain import history, messages
from cloud.lambdas.common import add_metric, client, env, queue_url, setting, table

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


def ingest_telemetry(msg: dict) -> dict:
    item = history.telemetry_item(msg, setting("HISTORY_TTL_DAYS", 7), setting("DEADBAND_TEMP_C", 0),
                                  setting("DEADBAND_CURRENT_A", 0))
    stored = put_once(table("TELEMETRY_TABLE"), item)
    add_metric(metrics, "SamplesStored" if stored else "Duplicates", item["n"] if stored else 1)
    return {"status": "stored" if stored else "duplicate", "samples": item["n"], "sk": item["sk"]}


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


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context
def handler(event, context):
    kind = event.get("kind")
    if kind not in ("telemetry", "events"):
        return reject(event, "unknown topic kind %r (expected telemetry or events)" % kind)
    msg = messages.device_part(event)
    problem = messages.problems(messages.KINDS[kind], msg)
    if problem:
        return reject(event, "schema: " + problem)
    if event.get("thing") and msg["device"] != event["thing"]:
        return reject(event, "device %r published on %r's topic" % (msg["device"], event["thing"]))
    return ingest_telemetry(msg) if kind == "telemetry" else ingest_event(msg)
