"""Ingest under adversarial messages, in-process against moto: no exception escapes the verdict,
one bad message never costs a good one of its batch, every reject is in the dead-letter queue with a
precise reason and its bytes, a reject never fails for its size, time is not trusted."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import boto3
import pytest

from cloud import resources, schemas
from cloud.domain import delivery, history, messages, rejects
from cloud.fuzz import drain_dead_letters
from cloud.lambdas import api, ingest
from cloud.local.apigw import LambdaContext
from cloud.local.esm import EventSourceMapping, Message

from adversarial import limit_dead_letter_queue
from messages import as_rule_output, event, telemetry

NOW = int(time.time() * 1000)
YEAR_MS = 365 * 86_400_000


def original(raw: bytes, thing="m1", kind="telemetry", received_ms=None) -> str:
    """A rule output that keeps the payload as published (docs/cloud.md, Rejects)."""
    return json.dumps({"payload_b64": base64.b64encode(raw).decode(), "thing": thing, "kind": kind,
                       "received_ms": received_ms or int(time.time() * 1000)})


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


def deep(depth: int, opener=b"[", closer=b"]") -> bytes:
    return opener * depth + closer * depth


def nested(depth: int) -> list:
    root = inner = []
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return root


# ------------------------------------------------------------------ the verdict never raises
NASTY = [b"", b" \n", b"\xff\xfe", b"\xef\xbb\xbf{}", b'{"a": NaN}', b"[Infinity]", b"-Infinity", b"1e999",
         b'{"a": "\\ud800"}', b"\xed\xa0\x80", deep(1025), deep(100_000), deep(5000, b'{"a":', b"}"), b"{" * 70_000,
         b'{"v": 1} trailing', b"null", b"true", b"[]", b"{}", b'"x"', b"0" * 200_000, b'{"v":' + b"9" * 5000 + b"}"]


@pytest.mark.parametrize("raw", NASTY, ids=range(len(NASTY)))
def test_no_payload_makes_the_verdict_raise_and_each_has_a_known_reason(raw):
    for body in (original(raw), raw.decode("utf-8", "replace"), json.dumps({"thing": "m1", "kind": "telemetry",
                                                                              "v": raw.decode("latin-1")})):
        seen = delivery.inspect_body(body, NOW)
        assert not seen.ok and messages.code_of(seen.reason) in messages.CODES[:-2], seen.reason
    seen = delivery.inspect_payload(raw, "m1", "telemetry", NOW)
    assert not seen.ok and seen.original == raw and seen.source == "original"


def test_python_values_no_validator_can_take_are_reasons_too():
    for value in (nested(100_000), {"samples": nested(5000)}, {"fw": "\ud800"}, {"v": float("nan")},
                  {"seq": 10 ** 400}, {1: 2}, {"samples": [{"time": object()}]}):
        ok, why = messages.check("telemetry", value, "m1", NOW)
        assert not ok and messages.code_of(why) in messages.CODES, why
        assert messages.problems("telemetry", value) is not None  # what the API and the alert Lambda call
    seen = delivery.inspect_event(dict(thing="m1", kind="events", v=nested(3000)), NOW)
    assert not seen.ok and seen.reason == "too_deep: values nest more than 8 deep"
    assert schemas.errors("telemetry", {"samples": nested(5000)}) == ["(root): too_deep: values nest more than 8 deep"]
    assert schemas.check is messages.check


@pytest.mark.parametrize("raw, why", [
    (b"", "not_json: empty payload"),
    (b'{"v": 1,', "not_json: unexpected end of data"),
    (json.dumps(telemetry()).replace('"current_a": 0.8', '"current_a": NaN', 1).encode(),
     "not_json: NaN or Infinity is not a JSON number (RFC 8259)"),
    (b"[1, 2]", "not_object: the payload is a JSON array, not an object"),
    (b'"m1"', "not_object: the payload is a JSON string, not an object"),
    (deep(2000), "too_deep: nested past the parser's limit"),
    (json.dumps(dict(telemetry(), fw=nested(9))).encode(), "too_deep: values nest more than 8 deep"),
    (json.dumps(dict(telemetry(), fw="x" * 140_000)).encode(), "too_large: "),
    (json.dumps(dict(telemetry(), thing="m1")).encode(), "identity: the payload sets thing, which the rule sets"),
    (json.dumps(dict(telemetry(), payload_b64="e30=")).encode(), "identity: the payload sets payload_b64"),
    (json.dumps(telemetry(device="m2")).encode(), "identity: device 'm2' published on 'm1''s topic"),
    (json.dumps(dict(telemetry(), seq=10 ** 10)).encode(), "schema: seq: 10000000000 does not fit"),
    (json.dumps(dict(telemetry(), heap_free=2 ** 53 + 1)).encode(), "schema: heap_free: a number beyond +-2^53"),
    (json.dumps(telemetry(temp=1e300)).encode(), "schema: samples/0/temperature_c: a number beyond +-2^53"),
    (json.dumps(dict(telemetry(), rssi=5)).encode(), "schema: rssi: 5 is greater than the maximum of 0"),
    (json.dumps(telemetry(t0=NOW + 301_000)).encode(), "time: "),
    (json.dumps(telemetry(t0=1_577_836_799_000)).encode(), "time: 2019-12-31T23:59:59Z is before 2020-01-01"),
])
def test_each_reject_says_precisely_why(raw, why):
    seen = delivery.inspect_payload(raw, "m1", "telemetry", NOW)
    assert not seen.ok and seen.reason.startswith(why), seen.reason


@pytest.mark.parametrize("thing, kind, why", [
    ("", "telemetry", "identity: no thing in the topic"), (None, "telemetry", "identity: no thing in the topic"),
    ("bad name", "telemetry", "identity: invalid thing name 'bad name'"),
    ("x" * 129, "telemetry", "identity: invalid thing name"), ("m\u00e9", "telemetry", "identity: invalid thing"),
    ("m1", "status", "identity: topic kind 'status' is neither telemetry nor events"),
])
def test_the_topic_is_the_identity(thing, kind, why):
    seen = delivery.inspect_body(original(json.dumps(telemetry()).encode(), thing, kind), NOW)
    assert not seen.ok and seen.reason.startswith(why), seen.reason


def test_valid_messages_pass_at_every_bound():
    edge = telemetry(t0=NOW + 299_000 - 29_000)  # the last sample 299 s ahead of the receive time
    assert delivery.inspect_payload(json.dumps(edge).encode(), "m1", "telemetry", NOW).ok
    assert delivery.inspect_payload(json.dumps(telemetry(t0=1_577_836_800_000)).encode(), "m1", "telemetry", NOW).ok
    big = json.dumps(dict(telemetry(n=600, t0=NOW - 700_000), heap_free=2 ** 53)).encode()
    seen = delivery.inspect_payload(big, "m1", "telemetry", NOW)
    assert seen.ok and seen.raw == big.decode() and len(big) < 128 * 1024
    assert delivery.inspect_event(as_rule_output(event(), "events"), NOW).ok


def test_bounds_come_from_the_environment_with_defaults_in_one_place():
    b = messages.bounds_from({"TIME_MAX_AHEAD_S": "3600", "TIME_NOT_BEFORE": "2024-06-01", "MAX_DEPTH": "4",
                              "MAX_PAYLOAD_BYTES": "not a number"})
    assert b == messages.DEFAULT_BOUNDS._replace(max_ahead_ms=3_600_000, not_before_ms=1_717_200_000_000, max_depth=4)
    assert messages.bounds_from({}) == messages.Bounds(131072, 8, 300_000, 1_577_836_800_000)
    later = json.dumps(telemetry(t0=NOW + 1_800_000)).encode()
    assert delivery.inspect_payload(later, "m1", "telemetry", NOW, b).ok
    assert not delivery.inspect_payload(later, "m1", "telemetry", NOW).ok


# ------------------------------------------------------------------ through the handler
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
    assert api.latest_telemetry("m1")["time"] == past["samples"][-1]["time"]
    assert [d["code"] for d in dead_letters()] == ["time", "time"]


def test_the_envelope_always_fits_and_says_what_it_kept():
    for size in (0, 10, 200_000, 2_000_000):
        raw = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        body = rejects.envelope("schema: " + "\u2603" * 2000, "ingest", thing="t" * 5000, kind="telemetry",
                                received_ms=1, original=raw, max_bytes=256 * 1024)
        d = rejects.read(body)
        assert len(body.encode()) <= 256 * 1024 and body.isascii()
        assert d["payload"]["size"] == size and d["payload"]["sha256"] == hashlib.sha256(raw).hexdigest()
        assert raw.startswith(d["payload"]["bytes"]) and d["payload"]["truncated"] == (len(d["payload"]["bytes"]) < size)
        assert size < 150_000 or len(d["payload"]["bytes"]) > 150_000, "as much as fits is kept"
