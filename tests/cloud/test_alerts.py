"""The alert Lambda names a device only by its topic: an event that names another device is rejected
to the dead-letter queue and cannot page in that device's name nor silence its real alert."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from cloud import resources
from cloud.domain import alerts, rejects
from cloud.lambdas import alert
from cloud.local.apigw import LambdaContext
from cloud.local.engine import Engine, default_functions

from messages import as_rule_output, event
from test_engine import Publisher
from waiting import wait_for


def ctx():
    return LambdaContext("motorguard-alert")


def drain(queue_url):
    sqs, out = boto3.client("sqs"), []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return out
        out += [json.loads(m["Body"]) for m in got]


def dead_letters():
    return drain(boto3.client("sqs").get_queue_url(QueueName=resources.DEAD_LETTER_QUEUE)["QueueUrl"])


def sns_watch():
    """An SQS queue subscribed to the alerts topic: every alert sent lands there."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    url = sqs.create_queue(QueueName="alert-watch-%d" % time.monotonic_ns())["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=sns.create_topic(Name=resources.ALERTS_TOPIC)["TopicArn"], Protocol="sqs", Endpoint=arn)
    return url


def subjects(url):
    return [m["Subject"] for m in drain(url)]


def fault_on(thing, device, reason="overtemp", seq=1):
    """The alert rule's output for a FAULT the payload says is device's, published on thing's topic."""
    return dict(as_rule_output(event(device=device, kind="FAULT", reason=reason, seq=seq), "events"), thing=thing)


def test_an_event_naming_another_device_is_rejected_and_leaves_that_devices_slot_free(aws):
    watch = sns_watch()
    forged = alert.handler(fault_on("m2", "m1"), ctx())  # m2 publishes, on its own topic, a fault "of m1"
    assert forged["status"] == "rejected" and forged["reason"].startswith("identity: device 'm1'")
    (dead,) = dead_letters()
    assert dead["rejectedBy"] == "alert" and dead["code"] == "identity" and dead["thing"] == "m2"
    assert dead["topic"] == "devices/m2/events"
    assert json.loads(rejects.read(json.dumps(dead))["payload"]["bytes"])["device"] == "m1"  # the event, kept
    assert subjects(watch) == []
    assert boto3.resource("dynamodb").Table(resources.TABLES["state"][0]).scan()["Items"] == []
    real = alert.handler(fault_on("m1", "m1"), ctx())
    assert real["status"] == "sent" and real["subject"].startswith("MotorGuard FAULT on m1")
    assert subjects(watch) == [real["subject"]]


@pytest.mark.parametrize("thing", [None, "", "bad name", "a/b", "x" * 129, "m1#FAULT", 42])
def test_an_event_without_a_valid_thing_is_rejected(aws, thing):
    out = dict(as_rule_output(event(device="m1", kind="FAULT"), "events"), thing=thing)
    if thing is None:
        del out["thing"]
    r = alert.handler(out, ctx())
    assert r["status"] == "rejected" and r["reason"].startswith("identity: ")
    (dead,) = dead_letters()
    assert dead["code"] == "identity"


def test_the_longest_thing_name_is_a_thing_name():
    name = "a:_-" * 32
    assert len(name) == 128 and alerts.identity_problem(name, {"device": name}) is None
    assert alerts.suppression_key(name, {"device": "other", "event": "FAULT", "reason": "overtemp"}) == \
        "alert#%s#FAULT#overtemp" % name


def test_an_invalid_event_is_rejected_not_raised(aws):
    """Raising would only make the asynchronous invoke try it twice more."""
    bad = dict(fault_on("m1", "m1"), temperature_c="hot")
    r = alert.handler(bad, ctx())
    assert r["status"] == "rejected" and r["reason"].startswith("schema: ")
    assert [d["code"] for d in dead_letters()] == ["schema"]


@pytest.fixture
def core(aws, broker):
    sent = []
    funcs = default_functions()
    real = funcs["alert"]

    def timed_alert(ev, context):
        out = real(ev, context)
        sent.append((time.monotonic(), ev.get("thing"), out))
        return out

    funcs["alert"] = timed_alert
    e = Engine(broker, functions=funcs).start()
    e.sent = sent
    yield e
    e.stop()


def test_a_forged_fault_through_the_engine_silences_no_one(core, broker):
    watch = sns_watch()
    forger, victim = Publisher(broker, "forger-1"), Publisher(broker, "victim-1")
    try:
        now = int(time.time() * 1000)
        # On its own topic, an event in the victim's name; on the victim's topic the ACL drops it.
        forger.publish("devices/forger-1/events", event(device="victim-1", kind="FAULT", reason="overtemp", t=now))
        forger.publish("devices/victim-1/events", event(device="victim-1", kind="FAULT", reason="overtemp", t=now))
        wait_for(lambda: core.sent, what="the forged event at the alert Lambda")
        assert [(thing, out["status"]) for _, thing, out in core.sent] == [("forger-1", "rejected")]
        t0 = time.monotonic()
        victim.publish("devices/victim-1/events", event(device="victim-1", kind="FAULT", reason="overtemp", seq=2))
        wait_for(lambda: len(core.sent) == 2, what="the victim's genuine fault")
        t, thing, out = core.sent[1]
        assert thing == "victim-1" and out["status"] == "sent", out
        assert t - t0 < 1.0, "the genuine alert took %.3f s" % (t - t0)
        assert subjects(watch) == [out["subject"]] and "victim-1" in out["subject"]
        alert_rejects = [d for d in dead_letters() if d.get("rejectedBy") == "alert"]
        assert [(d["thing"], d["code"]) for d in alert_rejects] == [("forger-1", "identity")]
        time.sleep(0.3)  # the message on the victim's topic, had the ACL let it through, would be here by now
        assert len(core.sent) == 2
    finally:
        forger.close()
        victim.close()
