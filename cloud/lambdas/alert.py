"""alert: a FAULT or an emergency stop, told to people at once, and only once per window.

An event is judged as ingest judges it (cloud/domain/delivery.py, messages.check), on the bytes the
device published (the rule's payload_b64) before anyone is paged. The device is the topic's (the
rule's thing = topic(2)), never the payload's: an event that names another device, sets a field the
rule sets (thing, kind, received_ms), arrives with no valid thing, breaks the schema, or carries a
time past the bounds (years ahead of IoT's receive time, before 2020) is rejected to the
dead-letter queue with the reason (cloud/domain/rejects.py envelope) and alerts no one: it cannot
page in another device's name, silence that device's real alert by taking its de-duplication slot,
or page for a fault dated next year. A rejected event is done with, not raised: raising would only
make the asynchronous invoke try it twice more.

A valid alert is delivered at most once per window and never lost to its own de-duplication
(cloud/domain/alerts.py, the slot): the invocation claims the slot "pending" for as long as it can
run, publishes to SNS, then marks it "sent". When the publish fails it deletes its claim and
raises, so Lambda's retry (or, once the retries are spent, the on-failure destination with the
error) has the alert; "suppressed" only ever means a page for it went out. An invocation that finds
another one's live claim waits for its outcome: "sent" suppresses, a released or lapsed claim is
taken over, and a claim still pending when this invocation's own time runs short raises AlertBusy
(retried later like any failure). Webhooks are best-effort extras after SNS: their failure is
logged, not retried, so that SNS never pages twice.
Env: ALERTS_TOPIC_NAME, STATE_TABLE, DEAD_LETTER_QUEUE_NAME, ALERT_WINDOW_S (300); the bounds of
messages.ENV_BOUNDS, as ingest (TIME_MAX_AHEAD_S 300, TIME_NOT_BEFORE 2020-01-01, ...); optional
TELEGRAM_BOT_TOKEN + TELEGRAM_CHAT_ID (TELEGRAM_API_URL overrides api.telegram.org) and
DISCORD_WEBHOOK_URL.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid

from aws_lambda_powertools import Logger, Metrics

import contract
from cloud import resources
from cloud.domain import alerts, delivery, messages, rejects
from cloud.lambdas.common import add_metric, client, env, queue_url, setting, table, topic_arn, written

logger = Logger(service=resources.function_name("alert"))
metrics = Metrics(namespace=resources.METRICS_NAMESPACE, service="alert")


# Without a Lambda context (a direct call), the time an invocation is assumed to have: the stack's
# alert timeout (cloud/resources.py FUNCTION_SETTINGS).
DEFAULT_REMAINING_S = 10.0
# What an invocation keeps of its time for its own publish after waiting on another one's claim.
PUBLISH_RESERVE_S = 3.0


class AlertBusy(Exception):
    """Another invocation holds a live claim on this alert and had not reported its outcome when
    this one had to stop waiting: raised so that this event is tried again, not dropped."""


def remaining_s(context) -> float:
    get = getattr(context, "get_remaining_time_in_millis", None)
    return get() / 1000.0 if callable(get) else DEFAULT_REMAINING_S


def claim(key: str, owner: str, now: float, lease_s: float) -> bool:
    """Claims the alert's slot for this invocation; False if it is sent within its window or
    claimed by a live invocation. DynamoDB's conditional write makes one claimant win."""
    return written(table("STATE_TABLE").put_item, Item=alerts.claim_item(key, owner, now, lease_s),
                   ConditionExpression="attribute_not_exists(id) OR expiration <= :now",
                   ExpressionAttributeValues={":now": int(now)})


def read_slot(key: str) -> dict | None:
    return table("STATE_TABLE").get_item(Key={"id": key}, ConsistentRead=True).get("Item")


def take_slot(key: str, lease_s: float, patience_s: float) -> str | None:
    """This invocation's owner token once it holds the slot, or None when a page for the alert
    went out within the window. Waits up to patience_s for another invocation's live claim to end
    (sent, released, or lapsed); raises AlertBusy if it has not by then."""
    owner = uuid.uuid4().hex
    give_up = time.monotonic() + patience_s
    pause = 0.05
    while True:
        now = time.time()
        if claim(key, owner, now, lease_s):
            return owner
        seen = alerts.slot_verdict(read_slot(key), now)
        if seen == alerts.SENT:
            return None
        if time.monotonic() >= give_up:
            raise AlertBusy("alert %s is being delivered by another invocation, which had not reported "
                            "within %.1f s; raising so that this event is tried again" % (key, patience_s))
        if seen == alerts.PENDING:  # a free slot (released, lapsed) is claimed again at once
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def mark_sent(key: str, owner: str, now: float, window_s: float) -> None:
    """The slot becomes "sent" for the window from now. The page is out whatever happens here: a
    failure is logged, not raised (a retry would page again)."""
    try:
        done = written(table("STATE_TABLE").update_item, Key={"id": key},
                       UpdateExpression="SET #st = :sent, expiration = :until, sent_at = :now",
                       ConditionExpression="#owner = :me",
                       ExpressionAttributeNames={"#st": "state", "#owner": "owner"},
                       ExpressionAttributeValues={":sent": alerts.SENT, ":until": int(now + window_s),
                                                  ":now": int(now), ":me": owner})
    except Exception as e:  # noqa: BLE001 - see the docstring
        logger.warning("slot not marked sent", extra={"key": key, "error": type(e).__name__})
        return
    if not done:  # our claim lapsed while SNS took the page, and another invocation took the slot
        logger.warning("slot taken over during the publish", extra={"key": key})


def release(key: str, owner: str) -> None:
    """Deletes this invocation's claim after a failed delivery, only if it is still ours and
    pending. Never raises: the delivery's own error is what must reach the retry, and a claim left
    behind lapses with its lease."""
    try:
        written(table("STATE_TABLE").delete_item, Key={"id": key},
                ConditionExpression="#owner = :me AND #st = :pending",
                ExpressionAttributeNames={"#st": "state", "#owner": "owner"},
                ExpressionAttributeValues={":me": owner, ":pending": alerts.PENDING})
    except Exception as e:  # noqa: BLE001 - see the docstring
        logger.warning("claim not released; it lapses with its lease", extra={"key": key, "error": type(e).__name__})


def publish(subject: str, body: str) -> str:
    return client("sns").publish(TopicArn=topic_arn(env("ALERTS_TOPIC_NAME")), Subject=subject,
                                 Message=body)["MessageId"]


def post_json(url: str, body: dict, what: str) -> bool:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError) as e:
        # The URL may hold a token: name the channel only.
        logger.warning("webhook failed", extra={"channel": what, "error": type(e).__name__})
        return False


def send_webhooks(subject: str, body: str) -> dict:
    sent = {}
    token, chat = os.environ.get("TELEGRAM_BOT_TOKEN"), os.environ.get("TELEGRAM_CHAT_ID")
    if token and chat:
        base = os.environ.get("TELEGRAM_API_URL", "https://api.telegram.org")
        sent["telegram"] = post_json("%s/bot%s/sendMessage" % (base, token), {"chat_id": chat, "text": body},
                                     "telegram")
    hook = os.environ.get("DISCORD_WEBHOOK_URL")
    if hook:
        sent["discord"] = post_json(hook, {"content": "**%s**\n```\n%s\n```" % (subject, body)}, "discord")
    return sent


def reject(seen: delivery.Inspected) -> dict:
    """The event to the dead-letter queue with the reason and its bytes; no alert. Raises if SQS
    does (then the asynchronous invoke retries, and its failure destination keeps the event)."""
    body = rejects.envelope(seen.reason, "alert", thing=seen.thing, kind=contract.EVENTS, received_ms=seen.received_ms,
                            rejected_ms=int(time.time() * 1000), original=seen.original, source=seen.source)
    client("sqs").send_message(QueueUrl=queue_url(env("DEAD_LETTER_QUEUE_NAME")), MessageBody=body)
    logger.warning("rejected", extra={"reason": seen.reason, "thing": seen.thing})
    add_metric(metrics, "AlertsRejected", 1)
    return {"status": "rejected", "reason": seen.reason}


def verdict(event: dict) -> delivery.Inspected:
    """Ingest's verdict on the alert rule's output. The kind is the events rule's: the alert rule
    reads only devices/+/events (an output without kind, as the rule once sent, is one of those)."""
    out = event if "kind" in event else dict(event, kind=contract.EVENTS)
    seen = delivery.inspect_event(out, int(time.time() * 1000), messages.bounds_from(os.environ))
    if seen.ok and seen.kind != contract.EVENTS:
        why = messages.reason("identity", "topic kind %r is not events" % seen.kind)
        return seen._replace(ok=False, reason=why, message=None, raw=None)
    return seen


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context
def handler(event, context):
    seen = verdict(event if isinstance(event, dict) else {})
    if not seen.ok:
        return reject(seen)
    thing, msg = seen.thing, seen.message
    key = alerts.suppression_key(thing, msg)
    left = remaining_s(context)
    owner = take_slot(key, lease_s=left + alerts.LEASE_MARGIN_S, patience_s=max(0.0, left - PUBLISH_RESERVE_S))
    if owner is None:
        add_metric(metrics, "AlertsSuppressed", 1)
        return {"status": "suppressed"}
    subject, body = alerts.format_alert(thing, msg)
    try:
        publish(subject, body)
    except Exception as e:
        release(key, owner)
        add_metric(metrics, "AlertsFailed", 1)
        logger.warning("SNS publish failed; the slot is released and the event raised for a retry",
                       extra={"key": key, "error": type(e).__name__})
        raise
    mark_sent(key, owner, time.time(), setting("ALERT_WINDOW_S", 300))
    sent = send_webhooks(subject, body)
    add_metric(metrics, "AlertsSent", 1)
    return {"status": "sent", "subject": subject, "webhooks": sent}
