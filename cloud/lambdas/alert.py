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

from aws_lambda_powertools import Logger, Metrics

import contract
from cloud import resources
from cloud.domain import alerts, delivery, messages, rejects
from cloud.lambdas.common import add_metric, client, env, queue_url, setting, table, topic_arn, written

logger = Logger(service="motorguard-alert")
metrics = Metrics(namespace=resources.METRICS_NAMESPACE, service="alert")


def first_in_window(key: str, window_s: float, now: float) -> bool:
    """Claims the alert's slot for window_s; False if an identical alert claimed it already."""
    return written(table("STATE_TABLE").put_item, Item={"id": key, "expiration": int(now + window_s)},
                   ConditionExpression="attribute_not_exists(id) OR expiration <= :now",
                   ExpressionAttributeValues={":now": int(now)})


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
    now = time.time()
    if not first_in_window(alerts.suppression_key(thing, msg), setting("ALERT_WINDOW_S", 300), now):
        add_metric(metrics, "AlertsSuppressed", 1)
        return {"status": "suppressed"}
    subject, body = alerts.format_alert(thing, msg)
    client("sns").publish(TopicArn=topic_arn(env("ALERTS_TOPIC_NAME")), Subject=subject, Message=body)
    sent = send_webhooks(subject, body)
    add_metric(metrics, "AlertsSent", 1)
    return {"status": "sent", "subject": subject, "webhooks": sent}
