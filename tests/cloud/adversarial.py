"""Helpers for the adversarial tests: a device that publishes raw bytes, and the dead-letter queue
read back in one shape."""

from __future__ import annotations

import base64
import hashlib
import json

import boto3

from cloud import resources


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
        else:  # AWS IoT's error action document (the engine adds reason, payloadBytes, payloadSha256)
            self.layer, self.code, self.source = "engine", doc.get("reason") or "action_failed", "original"
            self.kept = base64.b64decode(doc.get("base64OriginalPayload", ""))
            self.size = doc.get("payloadBytes", len(self.kept))
            self.sha256 = doc.get("payloadSha256")
            self.truncated = self.size > len(self.kept)
            self.thing = (doc.get("topic") or "//").split("/")[1]

    def holds(self, sent: bytes) -> bool:
        """Whether these are the bytes sent as published, whole or (truncated) their start, and
        always their size and sha256 (a rule's output is not what was sent)."""
        if self.source != "original" or self.sha256 != hashlib.sha256(sent).hexdigest() or self.size != len(sent):
            return False
        return self.kept == sent if not self.truncated else sent.startswith(self.kept)
