"""Helpers for the adversarial tests: a device that publishes raw bytes, the rules engine with the
rule that keeps the original payload, and the dead-letter queue read back in one shape."""

from __future__ import annotations

import base64
import hashlib
import json

import boto3

from cloud import resources
from cloud.local.engine import Engine

# The rule docs/cloud.md proposes for telemetry and events, which hands ingest the bytes as
# published:  SELECT encode(*, 'base64') AS payload_b64, topic(2) AS thing, topic(3) AS kind,
# timestamp() AS received_ms FROM 'devices/+/telemetry'
ENVELOPE_RULES = ("motorguard_telemetry", "motorguard_events")


class OriginalBytesEngine(Engine):
    """The shipped engine with that SELECT on the telemetry and events rules. The local SQL has no
    encode() yet, so the SELECT output is made here from what the engine hands over (topic, time,
    raw payload); everything else (matching, the queue, the Lambdas, the error actions) is the
    engine's own. As in AWS, encode(*) reads any payload, so only AWS IoT's size limit (refused
    before any rule) still stops a message in the engine."""

    def evaluate(self, topic, payload, clientid=""):
        fired = super().evaluate(topic, payload, clientid)
        return [(r, self._select(r, out, ctx, payload), ctx, raw) for r, out, ctx, raw in fired]

    @staticmethod
    def _select(rule, out, ctx, payload):
        if rule.name not in ENVELOPE_RULES or getattr(out, "reason", None) == "too_large":
            return out
        levels = ctx.topic.split("/")
        doc = {"payload_b64": base64.b64encode(payload).decode(), "received_ms": ctx.now_ms}
        doc.update({name: levels[i] for name, i in (("thing", 1), ("kind", 2)) if i < len(levels)})
        return doc


class Publisher:
    """A device: a paho client with its own certificate from the broker's CA."""

    def __init__(self, broker, thing):
        import paho.mqtt.client as mqtt

        creds = broker.issue_device(thing)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=thing, protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context(creds["cert_pem"], creds["key_pem"]))
        c.max_inflight_messages_set(200)
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c

    def publish(self, topic, payload: bytes):
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published(), "no PUBACK for %s" % topic

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def dlq_url() -> str:
    return boto3.client("sqs").get_queue_url(QueueName=resources.DEAD_LETTER_QUEUE)["QueueUrl"]


def limit_dead_letter_queue(max_bytes: int = 256 * 1024) -> None:
    """SQS's classic message limit on the DLQ (moto's default is now AWS's new 1 MiB)."""
    boto3.client("sqs").set_queue_attributes(QueueUrl=dlq_url(), Attributes={"MaximumMessageSize": str(max_bytes)})


def drain(into: list) -> list:
    """Every dead letter not read yet, appended to into (and deleted from the queue)."""
    sqs, url = boto3.client("sqs"), dlq_url()
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get("Messages", [])
        if not got:
            return into
        into += [json.loads(m["Body"]) for m in got]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(got)])


class Letter:
    """A dead letter in one shape, whoever wrote it: layer (ingest, alert, queue-redrive, or
    engine for a rule's error action), code, the bytes it keeps and what they are."""

    def __init__(self, doc: dict):
        self.doc = doc
        if "rejectedBy" in doc and "payload" in doc:
            p = doc["payload"]
            self.layer, self.code, self.source = doc["rejectedBy"], doc.get("code"), p["source"]
            self.kept, self.size, self.sha256 = base64.b64decode(p["base64"]), p["size"], p["sha256"]
            self.truncated, self.thing = p["truncated"], doc.get("thing")
        else:  # AWS IoT's error action document (the engine adds reason and payloadBytes)
            self.layer, self.code, self.source = "engine", doc.get("reason") or "action_failed", "original"
            self.kept = base64.b64decode(doc.get("base64OriginalPayload", ""))
            self.size = doc.get("payloadBytes", len(self.kept))
            self.sha256 = doc.get("sha256")
            self.truncated = self.size > len(self.kept)
            self.thing = (doc.get("topic") or "//").split("/")[1]

    def holds(self, sent: bytes) -> bool:
        """Whether these are the bytes sent, whole or (truncated) their start and size, and their
        sha256 where the letter has one."""
        if self.source == "rule_output":
            return False
        if self.sha256 is not None and self.sha256 != hashlib.sha256(sent).hexdigest():
            return False
        return self.kept == sent if not self.truncated else (sent.startswith(self.kept) and self.size == len(sent))

    def device_fields(self) -> dict | None:
        """What a rule output the letter keeps says of the device (the rule's own fields removed)."""
        try:
            out = json.loads(self.kept, parse_int=float)  # compared with a payload read the same way
        except ValueError:
            return None
        return {k: v for k, v in out.items() if k not in ("thing", "kind", "received_ms")} if isinstance(out, dict) \
            else None
