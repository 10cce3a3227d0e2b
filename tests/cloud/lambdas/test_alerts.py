"""The alert Lambda names a device only by its topic and judges an event as ingest does before it
pages anyone: an event that names another device, sets the rule's own fields, or is dated outside
the time bounds is rejected to the dead-letter queue with its bytes, and cannot page in that
device's name, silence its real alert, or page for a fault dated years ahead."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from cloud import resources
from cloud.domain import alerts, delivery, rejects
from cloud.lambdas import alert
from cloud.local.apigw import LambdaContext
from cloud.local.engine import Engine, default_functions

from messages import as_original, as_rule_output, event
from devices import Publisher
from waiting import wait_for
from alert_watch import Pages, dead_letters


def ctx():
    return LambdaContext("motorguard-alert")


YEAR_MS = 365 * 86_400_000


def fault_on(thing, device, reason="overtemp", seq=1, fields=None):
    """The alert rule's output for a FAULT the payload says is device's, published on thing's topic;
    fields: more (or other) fields in the payload."""
    return as_original(dict(event(device=device, kind="FAULT", reason=reason, seq=seq), **(fields or {})), "events",
                       thing)


def kept(letter) -> dict:
    """The payload a dead letter keeps, parsed."""
    return json.loads(rejects.read(json.dumps(letter))["payload"]["bytes"])


def test_an_event_naming_another_device_is_rejected_and_leaves_that_devices_slot_free(aws):
    watch = Pages()
    forged = alert.handler(fault_on("m2", "m1"), ctx())  # m2 publishes, on its own topic, a fault "of m1"
    assert forged["status"] == "rejected" and forged["reason"].startswith("identity: device 'm1'")
    (dead,) = dead_letters()
    assert dead["rejectedBy"] == "alert" and dead["code"] == "identity" and dead["thing"] == "m2"
    assert dead["topic"] == "devices/m2/events" and dead["payload"]["source"] == "original"
    assert kept(dead)["device"] == "m1"  # the event, as published
    assert watch.subjects() == []
    assert boto3.resource("dynamodb").Table(resources.TABLES["state"][0]).scan()["Items"] == []
    real = alert.handler(fault_on("m1", "m1"), ctx())
    assert real["status"] == "sent" and real["subject"].startswith("MotorGuard FAULT on m1")
    assert watch.subjects() == [real["subject"]]


@pytest.mark.parametrize("thing", [None, "", "bad name", "a/b", "x" * 129, "m1#FAULT", 42])
def test_an_event_without_a_valid_thing_is_rejected(aws, thing):
    out = fault_on(thing, "m1")
    if thing is None:
        del out["thing"]
    r = alert.handler(out, ctx())
    assert r["status"] == "rejected" and r["reason"].startswith("identity: ")
    (dead,) = dead_letters()
    assert dead["code"] == "identity"


def test_the_longest_thing_name_is_a_thing_name():
    name = "a:_-" * 32
    assert len(name) == 128 and alert.verdict(fault_on(name, name)).ok
    assert alerts.suppression_key(name, {"device": "other", "event": "FAULT", "reason": "overtemp"}) == \
        "alert#%s#FAULT#overtemp" % name


def test_an_invalid_event_is_rejected_not_raised(aws):
    """Raising would only make the asynchronous invoke try it twice more."""
    r = alert.handler(fault_on("m1", "m1", fields={"temperature_c": "hot"}), ctx())
    assert r["status"] == "rejected" and r["reason"].startswith("schema: ")
    assert [d["code"] for d in dead_letters()] == ["schema"]


@pytest.mark.parametrize("field, value", [("thing", "m1"), ("thing", "m2"), ("kind", "events"), ("received_ms", 1),
                                          ("payload_b64", "e30=")])
def test_an_event_that_sets_a_field_the_rule_sets_pages_no_one(aws, field, value):
    """With SELECT * the rule would have overwritten it silently; the bytes as published show it."""
    watch = Pages()
    r = alert.handler(fault_on("m1", "m1", fields={field: value}), ctx())
    assert r["status"] == "rejected" and r["reason"] == "identity: the payload sets %s, which the rule sets" % field
    (dead,) = dead_letters()
    assert dead["code"] == "identity" and kept(dead)[field] == value and watch.subjects() == []


@pytest.mark.parametrize("offset_ms, why", [(10 * YEAR_MS, "s ahead of the receive time"),
                                            (301_000, "s ahead of the receive time"),
                                            (None, "is before 2020-01-01")])
def test_a_fault_dated_outside_the_time_bounds_pages_no_one(aws, offset_ms, why):
    watch = Pages()
    now = int(time.time() * 1000)
    t = 1_500_000_000_000 if offset_ms is None else now + offset_ms  # 2017: a clock never set
    r = alert.handler(fault_on("m1", "m1", fields={"time": t}), ctx())
    assert r["status"] == "rejected" and r["reason"].startswith("time: ") and why in r["reason"], r
    (dead,) = dead_letters()
    assert dead["rejectedBy"] == "alert" and dead["code"] == "time" and kept(dead)["time"] == t
    assert watch.subjects() == []
    assert boto3.resource("dynamodb").Table(resources.TABLES["state"][0]).scan()["Items"] == [], "no slot taken"
    real = alert.handler(fault_on("m1", "m1", fields={"time": now - 1000}), ctx())
    assert real["status"] == "sent", "and a genuine fault still pages"


def test_the_time_bounds_are_ingests_from_the_same_environment(aws, monkeypatch):
    ahead = fault_on("m1", "m1", fields={"time": int(time.time() * 1000) + 1_800_000})  # 30 min ahead
    assert alert.verdict(ahead).reason.startswith("time: ")
    monkeypatch.setenv("TIME_MAX_AHEAD_S", "3600")
    assert alert.verdict(ahead).ok and delivery.inspect_event(ahead, int(time.time() * 1000)).ok is False
    assert alert.handler(ahead, ctx())["status"] == "sent"


def test_the_rule_output_of_before_is_judged_the_same(aws):
    """SELECT *, topic(2) AS thing, timestamp() AS received_ms (no kind): the alert rule's output before
    it sent payload_b64."""
    legacy = dict(as_rule_output(event(kind="FAULT", t=int(time.time() * 1000) + YEAR_MS), "events"))
    del legacy["kind"]
    r = alert.handler(legacy, ctx())
    assert r["status"] == "rejected" and r["reason"].startswith("time: ")
    (dead,) = dead_letters()
    assert dead["payload"]["source"] == "rule_output" and dead["topic"] == "devices/m1/events"
    del legacy["time"]
    assert alert.verdict(legacy).reason.startswith("schema: ")


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
    watch = Pages()
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
        assert watch.subjects() == [out["subject"]] and "victim-1" in out["subject"]
        alert_rejects = [d for d in dead_letters() if d.get("rejectedBy") == "alert"]
        assert [(d["thing"], d["code"]) for d in alert_rejects] == [("forger-1", "identity")]
        time.sleep(0.3)  # the message on the victim's topic, had the ACL let it through, would be here by now
        assert len(core.sent) == 2
    finally:
        forger.close()
        victim.close()


def test_through_the_engine_a_fault_with_the_rules_fields_or_from_next_year_pages_no_one(core, broker):
    watch = Pages()
    dev = Publisher(broker, "dev-1")
    now = int(time.time() * 1000)
    own_thing = json.dumps(dict(event(device="dev-1", kind="FAULT", seq=1, t=now), thing="dev-1"))
    next_year = json.dumps(event(device="dev-1", kind="FAULT", reason="overcurrent", seq=2, t=now + YEAR_MS))
    try:
        for payload in (own_thing, next_year, "FAULT"):  # the last is no JSON: WHERE event = ... is Undefined
            dev.publish("devices/dev-1/events", payload)
        wait_for(lambda: len(core.sent) == 2, what="two events at the alert Lambda")
        dev.publish("devices/dev-1/events", event(device="dev-1", kind="FAULT", reason="watchdog", seq=3, t=now))
        wait_for(lambda: len(core.sent) == 3, what="the genuine fault")
        time.sleep(0.3)
        outs = [out for _, _, out in core.sent]
        assert sorted(o["status"] + " " + o.get("reason", "")[:8] for o in outs[:2]) == \
            ["rejected identity", "rejected time: 20"] and outs[2]["status"] == "sent"
        assert watch.subjects() == [outs[2]["subject"]]
        letters = {d["code"]: rejects.read(json.dumps(d)) for d in dead_letters() if d.get("rejectedBy") == "alert"}
        assert {c: d["payload"]["bytes"] for c, d in letters.items()} == {"identity": own_thing.encode(),
                                                                         "time": next_year.encode()}
    finally:
        dev.close()
