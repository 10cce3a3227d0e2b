"""Ingest under adversarial messages, in-process against moto: one bad message never costs a good one
of its batch, every reject is in the dead-letter queue with a precise reason and its bytes, a reject
the queue cannot take now is delivered again, what cannot be stored by its last delivery is dead-
lettered, time is not trusted. (The verdict itself: tests/cloud/domain.)"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import boto3

from cloud import resources
from cloud.domain import history, rejects
from cloud.tools.fuzz import drain_dead_letters
from cloud.lambdas import api_reads, ingest
from cloud.local.apigw import LambdaContext
from cloud.local.esm import EventSourceMapping, Message

from adversarial import deep, limit_dead_letter_queue, nested, original
from messages import as_rule_output, event, telemetry

NOW = int(time.time() * 1000)
YEAR_MS = 365 * 86_400_000


def merged(msg, kind="telemetry") -> str:
    return json.dumps(as_rule_output(msg, kind))


def sqs_event(*bodies, receive_count=1):
    msgs = [Message(b, None, 0) for b in bodies]
    for m in msgs:
        m.receive_count = receive_count
    return EventSourceMapping(resources.TELEMETRY_QUEUE, None).event(msgs)


def dead_letters() -> list[dict]:
    return drain_dead_letters(parse=rejects.read)


def stored(table="telemetry") -> list[dict]:
    return boto3.resource("dynamodb").Table(resources.TABLES[table][0]).scan()["Items"]


def test_one_bad_message_never_costs_a_good_one_and_every_reject_keeps_its_bytes(aws):
    limit_dead_letter_queue()  # SQS's classic 256 KiB
    t0 = NOW - 3_600_000
    goods = [telemetry(seq=i, t0=t0 + i * 30_000) for i in range(6)]
    bad = {
        "deep": original(deep(3000)),
        "deep_value": merged(dict(telemetry(seq=90, t0=t0), fw=nested(200))),
        "nan": original(b'{"v": NaN}'),
        "array": original(b"[1]"),
        "huge": merged(dict(telemetry(seq=91, t0=t0), fw="x" * 600_000)),  # more than SQS takes
        "future": original(json.dumps(telemetry(seq=92, t0=NOW + 10 * YEAR_MS)).encode()),
        "spoofed": merged(telemetry(device="m2", seq=93, t0=t0)).replace('"thing": "m2"', '"thing": "m1"'),
    }
    bodies = [original(json.dumps(g).encode()) if i % 2 else merged(g) for i, g in enumerate(goods)]
    mixed = [bodies[0], bad["deep"], bodies[1], bad["deep_value"], bodies[2], bad["nan"], bad["array"], bodies[3],
             bad["huge"], bodies[4], bad["future"], bad["spoofed"], bodies[5]]
    evt = sqs_event(*mixed)
    assert ingest.handler(evt, LambdaContext("ingest")) == {"batchItemFailures": []}, "content is no transient failure"
    assert sorted(history.unpack(i["payload"])["seq"] for i in stored()) == list(range(6))
    letters = {d["messageId"]: d for d in dead_letters()}
    ids = {r["body"]: r["messageId"] for r in evt["Records"]}
    want = {"deep": "too_deep", "deep_value": "too_deep", "nan": "not_json", "array": "not_object",
            "huge": "too_large", "future": "time", "spoofed": "identity"}
    assert len(letters) == len(want)
    for name, code in want.items():
        d = letters[ids[bad[name]]]
        assert d["code"] == code and d["reason"].startswith(code + ": ") and d["rejectedBy"] == "ingest", d
        assert d["thing"] == "m1" and d["topic"] == "devices/m1/telemetry" and d["receivedMs"] > 0
        whole = (base64.b64decode(json.loads(bad[name])["payload_b64"]) if d["payload"]["source"] == "original"
                 else bad[name].encode())
        assert d["payload"]["size"] == len(whole) and d["payload"]["sha256"] == hashlib.sha256(whole).hexdigest()
        assert whole.startswith(d["payload"]["bytes"]) and (d["payload"]["truncated"] or d["payload"]["bytes"] == whole)
    assert letters[ids[bad["huge"]]]["payload"]["truncated"], "600 KB cannot be kept whole in 256 KiB"


def test_a_reject_the_dlq_cannot_take_now_is_delivered_again_alone(aws, monkeypatch):
    sqs = ingest.client("sqs")
    real = sqs.send_message
    calls = []

    def flaky(**kw):
        calls.append(kw)
        if len(calls) == 1:
            raise ConnectionError("sqs down")
        return real(**kw)

    monkeypatch.setattr(sqs, "send_message", flaky)
    bodies = [merged(telemetry(seq=1, t0=NOW - 60_000)), original(b"nope"), original(b"[]")]
    evt = sqs_event(*bodies)
    r = ingest.handler(evt, LambdaContext("ingest"))
    assert r == {"batchItemFailures": [{"itemIdentifier": evt["Records"][1]["messageId"]}]}
    assert len(stored()) == 1 and [d["code"] for d in dead_letters()] == ["not_object"]


def test_what_cannot_be_stored_by_its_last_delivery_goes_to_the_dlq_as_retries_exhausted(aws, monkeypatch):
    class Refusing:
        def batch_write_item(self, RequestItems):
            return {"UnprocessedItems": RequestItems}

    monkeypatch.setattr(ingest, "plain_dynamodb", lambda: Refusing())
    monkeypatch.setattr(ingest.time, "sleep", lambda s: None)
    body = original(json.dumps(telemetry(seq=3, t0=NOW - 60_000)).encode())
    early = sqs_event(body, receive_count=4)
    assert ingest.handler(early, LambdaContext("ingest"))["batchItemFailures"] == [
        {"itemIdentifier": early["Records"][0]["messageId"]}], "not the last delivery: SQS tries again"
    last = sqs_event(body, receive_count=5)
    assert ingest.handler(last, LambdaContext("ingest")) == {"batchItemFailures": []}
    (d,) = dead_letters()
    assert d["code"] == "retries_exhausted" and d["messageId"] == last["Records"][0]["messageId"]
    assert d["payload"]["bytes"] == base64.b64decode(json.loads(body)["payload_b64"]) and d["thing"] == "m1"


def test_time_from_the_future_is_never_stored_and_never_latest(aws):
    now = int(time.time() * 1000)
    ingest.handler(as_rule_output(event(kind="STARTED", seq=1, t=now - 1000), "events"), LambdaContext("ingest"))
    r = ingest.handler(as_rule_output(event(kind="FAULT", seq=2, t=now + YEAR_MS), "events"), LambdaContext("ingest"))
    assert r["status"] == "rejected" and r["reason"].startswith("time: ")
    later = ingest.handler(as_rule_output(event(kind="STOPPED", seq=3, t=now), "events"), LambdaContext("ingest"))
    assert later["status"] == "stored"
    (dev,) = stored("devices")
    assert dev["last_event"] == "STOPPED" and int(dev["last_event_ms"]) == now, "the future did not block it"
    past = telemetry(seq=4, t0=now - 60_000)
    ingest.handler(sqs_event(merged(past), merged(telemetry(seq=5, t0=now + YEAR_MS))), LambdaContext("ingest"))
    assert api_reads.latest_telemetry("m1")["time"] == past["samples"][-1]["time"]
    assert [d["code"] for d in dead_letters()] == ["time", "time"]
