"""The dead-letter envelope: what the DLQ holds of every message that was not stored.

    body = envelope("schema: seq: ...", "ingest", thing="m1", kind="telemetry", received_ms=...,
                    original=b'{"v": 1, ...}', source="original", extra={"messageId": ...})

One JSON object: rejectedBy, code, reason, topic, thing, receivedMs, rejectedMs, any extra fields,
and payload {source, size, sha256, truncated, keptBytes, base64}. The payload's bytes are kept as
far as they fit the queue's message limit; size and sha256 always describe all of them, so a
truncated copy can still be matched with the device's own record. The envelope is ASCII JSON
(SQS refuses some Unicode characters) and never larger than max_bytes, so writing it cannot fail
for its size.
"""

from __future__ import annotations

import base64
import hashlib
import json

import contract
from cloud.domain import delivery, messages

SQS_MAX_BYTES = 256 * 1024  # SQS's classic message limit (queues may allow up to 1 MiB; this fits any)
TEXT_MAX = 300  # characters kept of a topic or a thing name (escaped, at most 6 bytes each)


def _clip(value):
    if value is None or isinstance(value, (int, bool)):
        return value
    text = str(value)
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX] + "..."


def topic_of(thing, kind) -> str | None:
    """The topic the rule read (devices/<thing>/<kind>), from the rule's own fields, whatever they hold
    (contract.topic takes only the contract's kinds; a reject's may be any)."""
    if thing is None and kind is None:
        return None
    return "%s/%s/%s" % (contract.TOPIC_PREFIX, "" if thing is None else thing, "" if kind is None else kind)


def envelope(why: str, rejected_by: str, *, thing=None, kind=None, received_ms=None, rejected_ms=None,
             original: bytes = b"", source: str = "original", extra: dict | None = None,
             max_bytes: int = SQS_MAX_BYTES) -> str:
    doc = {"rejectedBy": rejected_by, "code": messages.code_of(why), "reason": (why or "")[:1000],
           "topic": _clip(topic_of(thing, kind)), "thing": _clip(thing), "receivedMs": received_ms,
           "rejectedMs": rejected_ms}
    doc.update({k: _clip(v) for k, v in (extra or {}).items()})
    payload = {"source": source, "size": len(original), "sha256": hashlib.sha256(original).hexdigest(),
               "truncated": False, "keptBytes": 0, "base64": ""}
    doc["payload"] = payload
    room = max_bytes - len(_dumps(doc)) - 64  # the figures below grow by a few digits at most
    keep = min(len(original), max(0, room) // 4 * 3)
    while True:
        payload.update(truncated=keep < len(original), keptBytes=keep,
                       base64=base64.b64encode(original[:keep]).decode())
        body = _dumps(doc)
        if len(body) <= max_bytes or keep == 0:
            return body
        keep //= 2  # not reached with the room computed above; a guard, not a plan


def _dumps(doc) -> str:
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":"))


def for_redrive(body, receive_count: int, message_id: str, queue: str, now_ms: int,
                max_bytes: int = SQS_MAX_BYTES) -> str:
    """The envelope of a queued message that no delivery could store (max receives reached)."""
    thing, kind, received_ms, original, source = delivery.route_of(body)
    why = messages.reason("retries_exhausted", "not stored after %d deliveries from %s" % (receive_count, queue))
    return envelope(why, "queue-redrive", thing=thing, kind=kind, received_ms=received_ms, rejected_ms=now_ms,
                    original=original, source=source,
                    extra={"messageId": message_id, "receiveCount": receive_count, "queue": queue},
                    max_bytes=max_bytes)


def read(body: str) -> dict:
    """An envelope back from the DLQ, with its payload's kept bytes decoded (for tests and tools)."""
    doc = json.loads(body)
    doc["payload"]["bytes"] = base64.b64decode(doc["payload"]["base64"])
    return doc


def summary(body: str) -> dict:
    """One dead letter as a person reads it, whichever of the three documents it is: a reject
    (rejectedBy, code), a rule's error action (ruleName, failures) or a function's failure record
    (requestContext). Nothing of it is trusted: every field is data to show as text."""
    try:
        doc = json.loads(body)
    except ValueError:
        return {"kind": "unknown", "code": "unreadable", "reason": "a dead letter that is not JSON"}
    if not isinstance(doc, dict):
        return {"kind": "unknown", "code": "unreadable", "reason": "a dead letter that is not a JSON object"}
    if "rejectedBy" in doc:
        return {"kind": "reject", "code": str(doc.get("code")), "reason": str(doc.get("reason")),
                "by": str(doc.get("rejectedBy")), "thing": doc.get("thing"), "topic": doc.get("topic"),
                "time_ms": doc.get("rejectedMs") or doc.get("receivedMs")}
    if "ruleName" in doc:
        failures = doc.get("failures") or [{}]
        first = failures[0] if isinstance(failures, list) and failures and isinstance(failures[0], dict) else {}
        return {"kind": "rule_error", "code": str(doc.get("reason") or "action_failed"),
                "reason": str(first.get("errorMessage") or doc.get("reason") or "a rule action failed"),
                "by": str(doc.get("ruleName")), "topic": doc.get("topic"), "thing": None, "time_ms": None}
    ctx = doc.get("requestContext") if isinstance(doc.get("requestContext"), dict) else {}
    if ctx:
        response = doc.get("responsePayload") if isinstance(doc.get("responsePayload"), dict) else {}
        return {"kind": "function_failure", "code": str(ctx.get("condition") or "failed"),
                "reason": str(response.get("errorMessage") or "the function failed"),
                "by": str(ctx.get("functionArn", "")).split(":function:")[-1], "thing": None, "topic": None,
                "time_ms": None}
    return {"kind": "unknown", "code": "unknown", "reason": "a dead letter of no known kind"}
