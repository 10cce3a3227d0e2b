"""Helpers for the adversarial tests: hostile payloads, and the dead-letter queue read back in one shape."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import boto3

from cloud import resources
from cloud.tools.fuzz import drain_dead_letters


def original(raw: bytes, thing="m1", kind="telemetry", received_ms=None) -> str:
    """A rule output that keeps the payload as published (docs/cloud.md, Rejects)."""
    return json.dumps({"payload_b64": base64.b64encode(raw).decode(), "thing": thing, "kind": kind,
                       "received_ms": received_ms or int(time.time() * 1000)})


def deep(depth: int, opener=b"[", closer=b"]") -> bytes:
    return opener * depth + closer * depth


def nested(depth: int) -> list:
    root = inner = []
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return root


def dlq_url() -> str:
    return boto3.client("sqs").get_queue_url(QueueName=resources.DEAD_LETTER_QUEUE)["QueueUrl"]


def limit_dead_letter_queue(max_bytes: int = 256 * 1024) -> None:
    """SQS's classic message limit on the DLQ (moto's default is now AWS's new 1 MiB)."""
    boto3.client("sqs").set_queue_attributes(QueueUrl=dlq_url(), Attributes={"MaximumMessageSize": str(max_bytes)})


def drain(into: list) -> list:
    """Every dead letter not read yet, appended to into (and deleted from the queue)."""
    into += drain_dead_letters()
    return into


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
