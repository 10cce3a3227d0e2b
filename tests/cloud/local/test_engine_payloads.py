"""What the local rules engine makes of any payload: the shipped rules hand on the bytes as published
(encode(*, 'base64')), JSON or not; a rule that reads the payload's JSON is refused precisely
(not_json, not_object, too_deep) to its error action, and nesting is bounded without recursion."""

from __future__ import annotations

import base64
import hashlib
import json

import boto3

from cloud import resources
from cloud.local.actions import MAX_JSON_DEPTH, Refused, nested_past
from cloud.local.engine import Engine

from messages import event, telemetry
from waiting import wait_for


def deep_object(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def outputs(engine, topic, payload) -> dict:
    return {r.name: out for r, out, _, _ in engine.evaluate(topic, payload)}


def test_the_shipped_rules_hand_on_any_payload_as_published():
    e = Engine(None, event_sources={})
    valid = json.dumps(telemetry()).encode()
    for payload in (valid, b"\x00\xff binary", b"", b"[1, 2]", b'"m1"', b"[" * 2000 + b"]" * 2000, deep_object(300),
                    b'{"v": NaN}', json.dumps(dict(telemetry(), thing="m2", received_ms=1)).encode()):
        for kind, rule in (("telemetry", "motorguard_telemetry"), ("events", "motorguard_events")):
            outs = outputs(e, "devices/m1/%s" % kind, payload)
            assert set(outs) == {rule}, payload[:30]  # none is an event: the alert rule stays out
            out = outs[rule]
            assert set(out) == {"payload_b64", "thing", "kind", "received_ms"}, payload[:30]
            assert base64.b64decode(out["payload_b64"]) == payload and (out["thing"], out["kind"]) == ("m1", kind)
    assert e.stats()["not_json"] == e.stats()["too_deep"] == e.stats()["error_actions"] == 0
    big = json.dumps(dict(telemetry(), fw="x" * 140_000)).encode()
    out = outputs(e, "devices/m1/telemetry", big)["motorguard_telemetry"]
    assert isinstance(out, Refused) and out.reason == "too_large", "AWS IoT's limit still comes first"


def test_only_a_fault_or_an_estop_in_json_reaches_the_alert_rule():
    e = Engine(None, event_sources={})
    fault = json.dumps(event(kind="FAULT")).encode()
    assert set(outputs(e, "devices/m1/events", fault)) == {"motorguard_alerts", "motorguard_events"}
    out = outputs(e, "devices/m1/events", fault)["motorguard_alerts"]
    assert base64.b64decode(out["payload_b64"]) == fault and out["kind"] == "events"
    for payload in (json.dumps(event(kind="STARTED")).encode(), b"FAULT", b'["FAULT"]', b'{"event": NaN}',
                    b'{"event": "FAULT", ' + deep_object(MAX_JSON_DEPTH + 1)[1:]):
        assert set(outputs(e, "devices/m1/events", payload)) == {"motorguard_events"}, payload[:40]


def test_a_payload_nested_past_the_bound_goes_to_the_error_action_as_too_deep(aws):
    """Nested 1,000 deep, a payload orjson reads but cannot write, and Python's json (the fallback)
    writes only by recursing past its limit: before, the action failed with RecursionError."""
    got = []
    rules = [{"name": "whole", "sql": "SELECT *, topic(2) AS thing FROM 'devices/+/events'",
              "actions": [{"lambda": {"function": "record"}}], "error_action": {"sqs": {"queue": "dead_letter"}}}]
    e = Engine(None, functions={"record": lambda ev, c: got.append(ev)}, rules=rules, event_sources={})
    edge, past = deep_object(MAX_JSON_DEPTH), deep_object(1000)
    assert e.process("devices/m1/events", edge) == 1 and e.process("devices/m1/events", past) == 1
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=resources.DEAD_LETTER_QUEUE)["QueueUrl"]
    letters = []
    wait_for(lambda: letters.extend(json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url).get(
        "Messages", [])) or letters, what="the error action's document")
    (doc,) = letters
    assert doc["reason"] == "too_deep" and "more than %d deep" % MAX_JSON_DEPTH in doc["failures"][0]["errorMessage"]
    assert base64.b64decode(doc["base64OriginalPayload"]) == past and doc["payloadBytes"] == len(past)
    assert doc["payloadSha256"] == hashlib.sha256(past).hexdigest()
    wait_for(lambda: len(got) == 1, what="the payload at the bound, delivered")
    st = e.stats()
    assert (st["too_deep"], st["actions_failed"], st["evaluation_errors"], st["error_action_failed"]) == (1, 0, 0, 0)


def test_nesting_is_measured_without_recursion():
    root = inner = {}
    for _ in range(100_000):  # far past Python's recursion limit
        inner["a"] = {}
        inner = inner["a"]
    assert nested_past(b"{" * 100_001, root, MAX_JSON_DEPTH)
    assert not nested_past(b"{" * 10, root, MAX_JSON_DEPTH), "too few brackets to nest that deep: not walked"
    msg = telemetry(n=200)  # 201 brackets: walked, and 3 deep
    assert not nested_past(json.dumps(msg).encode(), msg, MAX_JSON_DEPTH)
