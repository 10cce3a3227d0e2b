"""The local rules engine between the real Mosquitto and moto: rules fire on what devices publish,
every action type lands, failures reach the error action with AWS's payload, nothing is lost."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time

import boto3
import pytest

from cloud import resources
from cloud.domain import history
from cloud.local.engine import Engine
from cloud.local.sql import SqlError

from devices import Publisher
from messages import event
from waiting import wait_for


def dead_letters():
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=resources.DEAD_LETTER_QUEUE)["QueueUrl"]
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in r.get("Messages", [])]


TEST_RULES = [
    {"name": "to_everything", "sql": "SELECT *, topic(2) AS thing FROM 'devices/+/events' WHERE event = 'FAULT'",
     "actions": [{"lambda": {"function": "record"}},
                 {"s3": {"bucket": "archive", "key": "test/${topic(2)}/${seq}.json"}},
                 {"sqs": {"queue": "watch"}},
                 {"sns": {"topic": "alerts"}},
                 {"dynamoDBv2": {"table": "motorguard-aggregates"}},
                 {"republish": {"topic": "devices/${topic(2)}/cmd", "qos": 1}}],
     "error_action": {"sqs": {"queue": "dead_letter"}}},
    {"name": "failing", "sql": "SELECT device, 'x' AS sk FROM 'devices/+/events' WHERE event = 'ESTOP'",
     "actions": [{"lambda": {"function": "nowhere"}}], "error_action": {"sqs": {"queue": "dead_letter"}}},
    {"name": "motorguard_telemetry", "sql": "SELECT *, topic() AS t FROM 'devices/+/telemetry'",
     "actions": [{"lambda": {"function": "record"}}], "error_action": {"sqs": {"queue": "dead_letter"}},
     "basic_ingest": True},
]


@pytest.fixture
def recorded():
    return []


@pytest.fixture
def engine(aws, broker, recorded):
    boto3.client("sqs").create_queue(QueueName="watch")

    funcs = {"record": lambda e, c: recorded.append((e, c.function_name))}  # no "nowhere": it cannot be invoked
    e = Engine(broker, functions=funcs, rules=TEST_RULES).start()
    yield e
    e.stop()


def test_every_action_type_lands(engine, broker, recorded):
    from cloud import rules as rule_defs

    rule_defs.TARGETS.setdefault("watch", "watch")
    dev = Publisher(broker, "m1")
    copies = []
    got = threading.Event()
    engine.client.message_callback_add("devices/+/cmd", lambda c, u, m: (copies.append(m.payload), got.set()))
    engine.client.subscribe("devices/+/cmd", qos=1)  # the service may write (and read) cmd topics
    try:
        dev.publish("devices/m1/events", event(kind="STARTED"))  # WHERE false: nothing fires
        dev.publish("devices/m1/events", dict(event(kind="FAULT", seq=5), sk="k5"))
        wait_for(lambda: recorded, what="the lambda action")
        out, fn = recorded[0]
        assert out["thing"] == "m1" and out["event"] == "FAULT" and fn == "motorguard-record"
        s3 = boto3.client("s3")
        body = wait_for(lambda: s3.list_objects_v2(Bucket=resources.ARCHIVE_BUCKET, Prefix="test/").get("Contents"))
        assert body[0]["Key"] == "test/m1/5.json"
        sqs = boto3.client("sqs")
        url = sqs.get_queue_url(QueueName="watch")["QueueUrl"]
        msg = wait_for(lambda: sqs.receive_message(QueueUrl=url).get("Messages"))
        assert json.loads(msg[0]["Body"])["seq"] == 5
        item = wait_for(lambda: boto3.resource("dynamodb").Table("motorguard-aggregates").scan()["Items"])
        assert item[0]["device"] == "m1" and item[0]["sk"] == "k5"
        assert got.wait(5) and json.loads(copies[0])["event"] == "FAULT"
        st = wait_for(lambda: engine.stats()["acked"] >= 2 and engine.stats())
        assert st["fired"] == {"to_everything": 1} and st["actions_ok"] == 6 and st["actions_failed"] == 0
    finally:
        dev.close()


def test_an_action_that_cannot_run_goes_to_the_error_action_with_aws_payload(engine, broker):
    """A Lambda that cannot be invoked fails the action (a function that raises does not: see
    tests/cloud/local/test_async_invoke.py)."""
    dev = Publisher(broker, "m2")
    try:
        payload = json.dumps(event(device="m2", kind="ESTOP"))
        dev.publish("devices/m2/events", payload)
        dead = wait_for(dead_letters, what="a dead letter")
        d = dead[0]
        assert d["ruleName"] == "failing" and d["topic"] == "devices/m2/events"
        assert base64.b64decode(d["base64OriginalPayload"]).decode() == payload
        assert d["failures"][0]["failedAction"] == "LambdaAction"
        assert d["failures"][0]["failedResource"] == "nowhere"
        assert "no function 'nowhere'" in d["failures"][0]["errorMessage"]
        assert set(d) >= {"ruleName", "topic", "clientId", "base64OriginalPayload", "failures"}
        assert wait_for(lambda: engine.stats()["acked"] == 1, what="the PUBACK after the error action")
    finally:
        dev.close()


def test_basic_ingest_topic_reaches_only_its_rule(engine, broker, recorded):
    """The engine serves AWS's Basic Ingest topics for a rule that takes them. MotorGuard's device policy
    grants none, so this broker is given a policy that does (the gateway and the ACL both follow it)."""
    from provisioning import policy

    doc = policy.document()
    doc["Statement"].append({"Sid": "BasicIngest", "Effect": "Allow", "Action": "iot:Publish", "Resource":
                             "arn:aws:iot:*:*:topic/$aws/rules/motorguard_telemetry/devices/%s/telemetry" % policy.THING})
    broker.policy_path.write_text(json.dumps(doc))
    broker.reload()
    dev = Publisher(broker, "m3")
    try:
        dev.publish("$aws/rules/motorguard_telemetry/devices/m3/telemetry", {"device": "m3", "x": 1})
        out, _ = wait_for(lambda: recorded, what="the basic ingest rule")[0]
        assert out["t"] == "devices/m3/telemetry" and out["x"] == 1  # topic() without the prefix
        assert engine.stats()["basic_ingest"] == 1
    finally:
        dev.close()


def test_a_burst_is_neither_dropped_nor_left_unacknowledged(engine, broker, recorded):
    dev = Publisher(broker, "m4")
    n = 3000
    try:
        for i in range(n):
            dev.publish("devices/m4/telemetry", {"device": "m4", "i": i})
        wait_for(lambda: len(recorded) >= n, timeout=60, what="%d messages" % n)
        assert sorted(e["i"] for e, _ in recorded) == list(range(n))
        st = wait_for(lambda: engine.stats()["acked"] >= n and engine.stats(), what="every PUBACK")
        assert st["received"] == n and st["fired"]["motorguard_telemetry"] == n
    finally:
        dev.close()


def test_unsupported_sql_is_refused_when_the_rule_loads(broker):
    with pytest.raises(SqlError, match="rule bad: .*LIKE"):
        Engine(broker, functions={}, rules=[{"name": "bad", "sql": "SELECT * FROM 'a' WHERE x LIKE 'y'",
                                             "actions": []}])
    with pytest.raises(SqlError, match="not supported locally"):
        Engine(broker, functions={}, rules=[{"name": "k", "sql": "SELECT * FROM 'a'",
                                             "actions": [{"kinesis": {"stream": "s"}}]}])


QUEUED_RULES = [{"name": "queued", "sql": "SELECT *, topic(2) AS thing FROM 'devices/+/telemetry'",
                 "actions": [{"sqs": {"queue": "q-fed"}}], "error_action": {"sqs": {"queue": "dead_letter"}}}]
QUEUED_SOURCES = {"q": {"queue": "q-fed", "function": "drain", "batch_size": 5, "window_s": 0.2,
                        "max_receive_count": 2, "visibility_timeout_s": 60, "retention_days": 4}}


def test_a_queue_fed_message_is_acknowledged_only_once_its_batch_is_done(aws, broker):
    """The broker keeps a message until the function stored it: nothing held only in memory is acknowledged."""
    release = threading.Event()
    batches = []

    def drain(event, context):
        batches.append([json.loads(r["body"])["i"] for r in event["Records"]])
        assert context.function_name == "motorguard-drain"
        release.wait(10)
        return {"batchItemFailures": []}

    e = Engine(broker, functions={"drain": drain}, rules=QUEUED_RULES, event_sources=QUEUED_SOURCES).start()
    dev = Publisher(broker, "m6")
    try:
        for i in range(7):
            dev.publish("devices/m6/telemetry", {"device": "m6", "i": i})
        wait_for(lambda: len(batches) == 2, what="a full batch of 5 and, after the window, the other 2")
        time.sleep(0.3)
        st = e.stats()
        assert st["received"] == 7 and st["acked"] == 0 and st["queues"]["q-fed"]["held"] == 7
        release.set()
        wait_for(lambda: e.stats()["acked"] == 7, what="every PUBACK after the batches")
        assert sorted(sum(batches, [])) == list(range(7)) and sorted(len(b) for b in batches) == [2, 5]
    finally:
        release.set()
        dev.close()
        e.stop()


def test_a_queue_fed_message_the_function_keeps_failing_is_redriven_then_acknowledged(aws, broker):
    calls = []

    def drain(event, context):
        calls.append(len(event["Records"]))
        raise RuntimeError("storage down")

    e = Engine(broker, functions={"drain": drain}, rules=QUEUED_RULES, event_sources=QUEUED_SOURCES,
               retry_delay_s=0.05).start()
    dev = Publisher(broker, "m7")
    try:
        dev.publish("devices/m7/telemetry", {"device": "m7", "i": 1})
        wait_for(lambda: e.stats()["acked"] == 1, what="the PUBACK after the redrive")
        assert calls == [1, 1], "max_receive_count deliveries, then the dead-letter queue"
        (dead,) = dead_letters()
        # The envelope of cloud/domain/rejects.py, with the queued body as it was.
        assert dead["code"] == "retries_exhausted" and dead["thing"] == "m7" and dead["receiveCount"] == 2
        assert json.loads(base64.b64decode(dead["payload"]["base64"])) == {"device": "m7", "i": 1, "thing": "m7"}
    finally:
        dev.close()
        e.stop()


def test_the_telemetry_rule_feeds_ingest_in_batches_in_worker_processes(aws, broker):
    """The shipped rules, the real ingest handler in a worker process, DynamoDB in moto; the worker's
    AWS calls reach the meter."""
    from cloud.local.meter import Meter

    from messages import telemetry

    meter = Meter()
    e = Engine(broker, lambda_processes=1, meter=meter).start()
    dev = Publisher(broker, "m8")
    try:
        t0 = int(time.time() * 1000) - 12 * 30000  # six minutes of batches, all in the past
        for seq in range(12):
            dev.publish("devices/m8/telemetry", telemetry(device="m8", seq=seq, t0=t0 + seq * 30000))
        wait_for(lambda: e.stats()["acked"] == 12, timeout=60, what="12 telemetry messages stored")
        rows = boto3.resource("dynamodb").Table(resources.TABLES["telemetry"][0]).scan()["Items"]
        assert sorted(history.unpack(r["payload"])["seq"] for r in rows) == list(range(12))
        counts = meter.snapshot()
        assert counts["dynamodb_wru"] == 12, counts
        assert counts["sqs_request"] >= 12 + 2  # one SendMessage each, and a receive and a delete per batch
        st = e.stats()
        assert st["queues"][resources.TELEMETRY_QUEUE]["delivered"] == 12 and 1 <= st["lambda_invocations"] <= 12
    finally:
        dev.close()
        e.stop()


def test_rule_outputs_encode_any_json_number_and_a_non_json_payload_is_refused():
    from cloud.local.actions import Refused
    from cloud.local.engine import to_json

    e = Engine(None, rules=[{"name": "r", "sql": "SELECT *, n * 1000000000000 AS big FROM 'a/#'", "actions": []},
                            {"name": "w", "sql": "SELECT * FROM 'a/#' WHERE n > 1", "actions": []}],
               event_sources={})
    (_, out, _, _), _ = e.evaluate("a/b", b'{"n": 10000000000, "t": 21.5}')
    assert json.loads(to_json(out)) == {"n": 10**10, "t": 21.5, "big": 10**22}  # past 64 bits: the fallback
    assert to_json({"t": 21.5, "s": "x"}) == '{"t":21.5,"s":"x"}'
    unreadable = {b'{"n": NaN}': "not_json", b"\xff\xfe": "not_json", b"plain text": "not_json", b"": "not_json",
                  b"80": "not_object", b"[1, 2]": "not_object", b'"s"': "not_object", b"null": "not_object",
                  b"[" * 1100 + b"]" * 1100: "too_deep", b'{"a":' * 300 + b"1" + b"}" * 300: "too_deep"}
    for payload, code in unreadable.items():
        fired = e.evaluate("a/b", payload)
        # WHERE n > 1 is Undefined on a payload with no attributes: only r fires, and is refused.
        assert [(r.name, type(out), out.reason) for r, out, _, _ in fired] == [("r", Refused, code)], payload[:20]
    st = e.stats()
    assert (st["not_json"], st["not_object"], st["too_deep"]) == (4, 4, 2)


LOGGED_RULES = [{"name": "logged", "sql": "SELECT *, topic(2) AS thing FROM 'devices/+/events' WHERE event = 'FAULT'",
                 "actions": [{"lambda": {"function": "record"}}], "error_action": {"sqs": {"queue": "dead_letter"}}},
                {"name": "everything", "sql": "SELECT * FROM 'devices/+/events'",
                 "actions": [{"lambda": {"function": "record"}}], "error_action": {"sqs": {"queue": "dead_letter"}}}]


def test_an_oversized_or_unreadable_message_goes_to_the_error_action_and_the_engine_goes_on(aws):
    from cloud.local.broker_config import MESSAGE_SIZE_LIMIT

    got = []
    e = Engine(None, functions={"record": lambda ev, c: got.append(ev)}, rules=LOGGED_RULES, event_sources={})
    big = json.dumps(dict(event(device="m9"), pad="x" * MESSAGE_SIZE_LIMIT)).encode()
    assert e.process("devices/m9/events", big) == 2, "too large to read: every rule on the topic records it"
    assert e.process("devices/m9/events", b"\x00\x01 not json") == 1, "WHERE event = 'FAULT' is Undefined"
    seen = []
    wait_for(lambda: seen.extend(dead_letters()) or len(seen) >= 3, what="three dead letters")
    dead = {(d["ruleName"], d["reason"]): d for d in seen}
    assert set(dead) == {("logged", "too_large"), ("everything", "too_large"), ("everything", "not_json")}
    too_large = dead[("logged", "too_large")]
    assert too_large["payloadBytes"] == len(big) and too_large["topic"] == "devices/m9/events"
    assert too_large["payloadSha256"] == hashlib.sha256(big).hexdigest(), "the whole payload's, not its start's"
    assert base64.b64decode(too_large["base64OriginalPayload"]) == big[:4096]  # only its start: SQS takes 256 KB
    assert "too_large" in too_large["failures"][0]["errorMessage"]
    assert base64.b64decode(dead[("everything", "not_json")]["base64OriginalPayload"]) == b"\x00\x01 not json"
    assert got == []
    assert e.process("devices/m9/events", json.dumps(event(device="m9")).encode()) == 2  # and it goes on
    assert len(got) == 2 and got[0]["thing"] == "m9"
    st = e.stats()
    assert st["too_large"] == 1 and st["not_json"] == 1 and st["error_actions"] == 3 and st["evaluation_errors"] == 0


def test_a_message_that_breaks_evaluation_is_dead_lettered_and_acknowledged(aws, broker, monkeypatch):
    e = Engine(broker, functions={"record": lambda ev, c: None}, rules=LOGGED_RULES, event_sources={}).start()
    dev = Publisher(broker, "m10")
    real = e.evaluate
    monkeypatch.setattr(e, "evaluate", lambda topic, payload, clientid="": (
        (_ for _ in ()).throw(RuntimeError("broken on purpose")) if b"poison" in payload else real(topic, payload)))
    try:
        dev.publish("devices/m10/events", b'{"poison": 1}')
        dev.publish("devices/m10/events", json.dumps(event(device="m10")))
        wait_for(lambda: e.stats()["acked"] == 2, what="both PUBACKs")
        (d,) = dead_letters()
        assert d["rejectedBy"] == "rules-engine" and d["code"] == "internal" and "broken on purpose" in d["reason"]
        assert d["topic"] == "devices/m10/events" and base64.b64decode(d["payload"]["base64"]) == b'{"poison": 1}'
        assert e.stats()["evaluation_errors"] == 1 and e.connected()
    finally:
        dev.close()
        e.stop()


def test_lambda_duration_is_billed_per_invocation_rounded_up_to_the_millisecond():
    from cloud import resources

    naps = iter([0.020, 0.020, 0.0])

    def fn(event, context):
        time.sleep(next(naps))

    e = Engine(None, functions={"ingest": fn}, event_sources={},
               rules=[{"name": "r", "sql": "SELECT * FROM 'a/#'", "actions": [{"lambda": {"function": "ingest"}}]}])
    for _ in range(3):
        assert e.process("a/b", b'{"x": 1}') == 1
    st = e.stats()
    billed_ms = st["lambda_gb_seconds"] * 1000 / (resources.MEMORY_MB["ingest"] / 1024)
    assert st["lambda_invocations"] == 3
    assert abs(billed_ms - round(billed_ms)) < 1e-6, "whole milliseconds per invocation"
    assert round(billed_ms) >= 21 + 21 + 1  # each at least its sleep, rounded up, and the quick one 1 ms
