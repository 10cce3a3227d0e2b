"""An alert is never lost to its own de-duplication: the slot is "sent" only for a page SNS took; a
failed publish releases it and raises, so the asynchronous retry (or the failure destination) has
the alert; concurrent deliveries of one alert page once; and every subject fits SNS's rules.
Judged from what reaches the SNS topic, the state table and the dead-letter queue."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from cloud import resources
from cloud.domain import alerts
from cloud.lambdas import alert
from cloud.local import actions
from cloud.local.apigw import LambdaContext
from cloud.local.engine import Engine, default_functions

from alert_watch import Pages, SnsTrouble, atomic_dynamodb, failure_records, slots
from devices import Publisher
from messages import as_original, event
from waiting import wait_for

DELAY = 0.1  # the engine's asynchronous retry delay here (AWS: 1 and 2 minutes)


def ctx(timeout_s=30):
    return LambdaContext("motorguard-alert", timeout_s=timeout_s)


def fault(thing="m1", seq=1, reason="overtemp"):
    return as_original(event(device=thing, kind="FAULT", reason=reason, seq=seq), "events")


@pytest.fixture
def sns(aws, monkeypatch):
    """moto with SNS's limits, DynamoDB's atomic conditional writes, and a page watcher."""
    actions.install_sns_limits()
    atomic_dynamodb(monkeypatch)
    return Pages()


@pytest.fixture
def trouble():
    made = []

    def make(**kw):
        made.append(SnsTrouble(**kw))
        return made[-1]

    yield make
    for t in made:
        t.remove()


def run_in_thread(fn, *args):
    out = {}

    def run():
        try:
            out["result"] = fn(*args)
        except Exception as e:  # noqa: BLE001 - the test reads it
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


# ------------------------------------------------------------------ in-process


def test_a_failed_publish_releases_the_slot_and_the_next_attempt_pages(sns, trouble):
    down = trouble(failures=1)
    with pytest.raises(ClientError, match="InternalError"):
        alert.handler(fault(), ctx())
    assert slots() == [], "a failed delivery must not keep the slot"
    assert sns.subjects() == []
    again = alert.handler(fault(), ctx())  # what Lambda's retry does
    assert again["status"] == "sent" and down.calls == 2
    assert sns.subjects() == [again["subject"]]
    (slot,) = slots()
    assert slot["state"] == "sent" and int(slot["expiration"]) >= time.time() + 290
    assert alert.handler(fault(seq=2), ctx())["status"] == "suppressed", "and the window holds once sent"
    assert sns.subjects() == [again["subject"]]


def test_a_delivery_waits_on_a_concurrent_one_and_takes_over_when_it_fails(sns, trouble):
    gate = threading.Event()
    first = trouble(failures=1, gate=gate)
    a, a_out = run_in_thread(alert.handler, fault(seq=1), ctx())
    assert first.entered.wait(5), "the first invocation never reached SNS"
    b, b_out = run_in_thread(alert.handler, fault(seq=2), ctx())  # the same alert, delivered again
    time.sleep(0.3)
    assert b.is_alive(), "the second delivery must wait for the first one's outcome"
    gate.set()  # the first publish now fails
    a.join(5)
    b.join(5)
    assert isinstance(a_out.get("error"), ClientError)
    assert b_out["result"]["status"] == "sent"
    assert sns.subjects() == [b_out["result"]["subject"]]
    assert alert.handler(fault(seq=1), ctx())["status"] == "suppressed", "the first one's retry finds it sent"
    assert len(sns.subjects()) == 1


def test_concurrent_deliveries_while_one_publishes_page_once(sns, trouble):
    gate = threading.Event()
    slow = trouble(gate=gate)
    a, a_out = run_in_thread(alert.handler, fault(seq=1), ctx())
    assert slow.entered.wait(5)
    others = [run_in_thread(alert.handler, fault(seq=2 + i), ctx()) for i in range(4)]
    time.sleep(0.3)
    assert all(t.is_alive() for t, _ in others), "each waits for the delivery under way"
    gate.set()
    for t, _ in [(a, a_out)] + others:
        t.join(5)
    assert a_out["result"]["status"] == "sent"
    assert [out["result"]["status"] for _, out in others] == ["suppressed"] * 4
    assert sns.subjects() == [a_out["result"]["subject"]] and slow.calls == 1


def test_a_claim_left_by_a_dead_invocation_blocks_until_it_lapses_then_is_taken_over(sns):
    key = alerts.suppression_key("m1", event(kind="FAULT", reason="overtemp"))
    state = boto3.resource("dynamodb").Table(resources.TABLES["state"][0])
    live = alerts.claim_item(key, "dead-owner", time.time(), lease_s=60)
    state.put_item(Item=live)
    t0 = time.monotonic()
    with pytest.raises(alert.AlertBusy, match="another invocation"):
        alert.handler(fault(), ctx(alert.PUBLISH_RESERVE_S + 0.5))  # half a second of patience
    assert 0.4 < time.monotonic() - t0 < 3, "it waited its patience, no longer"
    assert sns.subjects() == [] and slots() == [live], "raised for a retry; the claim untouched"
    state.put_item(Item=alerts.claim_item(key, "dead-owner", time.time() - 120, lease_s=60))  # lapsed
    r = alert.handler(fault(), ctx())
    assert r["status"] == "sent" and sns.subjects() == [r["subject"]]


def test_a_slot_written_before_states_existed_still_suppresses(sns):
    key = alerts.suppression_key("m1", event(kind="FAULT", reason="overtemp"))
    boto3.resource("dynamodb").Table(resources.TABLES["state"][0]).put_item(
        Item={"id": key, "expiration": int(time.time()) + 300})
    assert alert.handler(fault(), ctx())["status"] == "suppressed"
    assert sns.subjects() == []


def test_the_longest_thing_name_pages_within_snss_subject_limit(sns):
    """The old cut at 100 characters made a subject SNS refuses (fewer than 100, it says)."""
    name = "a:_-" * 32  # 128 characters, a valid thing name
    r = alert.handler(as_original(event(device=name, kind="FAULT", reason="overcurrent"), "events", name), ctx())
    assert r["status"] == "sent"
    (subject,) = sns.subjects()
    assert subject == r["subject"] and len(subject) == alerts.SNS_SUBJECT_MAX_CHARS and subject.endswith("...")
    assert subject.startswith("MotorGuard FAULT on a:_-")


def test_a_subject_from_any_device_string_is_accepted_by_snss_limits(sns):
    wild = ("line one\nline two\r\n\tcaf\u00e9 \u2603 \u65e5\u672c \x00\x1b[31m" * 20)[:300]
    assert len(wild) == 300
    subject, body = alerts.format_alert(wild, event(kind="FAULT", reason="overtemp"))
    assert len(subject) <= 99 and all(" " <= ch <= "~" for ch in subject) and not subject.startswith(" ")
    assert subject.startswith("MotorGuard FAULT on line one line two cafe ? ??")
    assert actions.sns_publish_problem({"Subject": subject, "Message": body}) is None
    client = boto3.client("sns")
    topic = client.create_topic(Name=resources.ALERTS_TOPIC)["TopicArn"]
    assert client.publish(TopicArn=topic, Subject=subject, Message=body)["MessageId"]
    assert sns.subjects() == [subject]
    with pytest.raises(client.exceptions.InvalidParameterException):  # the text as it was: refused
        client.publish(TopicArn=topic, Subject=("MotorGuard FAULT on " + wild)[:100], Message=body)


@pytest.mark.parametrize("text, subject", [
    ("MotorGuard FAULT on m1: motor too hot", "MotorGuard FAULT on m1: motor too hot"),
    ("  two\n\nlines\tand\x07bell  ", "two lines and bell"),
    ("Z\u00fcrich \u00e9t\u00e9 \u2603", "Zurich ete ?"),
    ("\n\t ", "MotorGuard alert"),
    ("x" * 99, "x" * 99),
    ("x" * 100, "x" * 96 + "..."),
    ("word " * 30, ("word " * 20)[:96] + "..."),
])
def test_sns_subject(text, subject):
    assert alerts.sns_subject(text) == subject
    assert actions.sns_publish_problem({"Subject": subject}) is None


def test_a_body_is_cut_to_snss_bytes_at_a_character_boundary():
    assert alerts.fit_utf8("short", 100) == "short"
    cut = alerts.fit_utf8("\u00e9" * 200, 101)
    assert len(cut.encode()) <= 101 and cut.endswith("...") and cut.startswith("\u00e9" * 49)


def test_slot_verdicts():
    now = 1_000_000.0
    claim = alerts.claim_item("k", "me", now, lease_s=15)
    assert claim["state"] == "pending" and claim["expiration"] == 1_000_016
    assert alerts.slot_verdict(None, now) == "free"
    assert alerts.slot_verdict(claim, now) == "pending"
    assert alerts.slot_verdict(claim, now + 16) == "free", "a claim lapses with its lease"
    assert alerts.slot_verdict(dict(claim, state="sent", expiration=now + 300), now + 200) == "sent"
    assert alerts.slot_verdict({"id": "k", "expiration": now + 1}, now) == "sent", "a slot from before states"


# ------------------------------------------------------------------ through the engine


@pytest.fixture
def engine(sns, broker):
    """The rules engine with the real Lambdas; each alert attempt's outcome (or error) recorded."""
    funcs = default_functions()
    real = funcs["alert"]
    outcomes, lock = [], threading.Lock()

    def recorded(ev, context):
        try:
            out = real(ev, context)
        except Exception as e:
            with lock:
                outcomes.append(("raised", type(e).__name__))
            raise
        with lock:
            outcomes.append((out["status"], out.get("subject")))
        return out

    funcs["alert"] = recorded
    e = Engine(broker, functions=funcs, async_retry_delay_s=DELAY).start()
    e.outcomes = outcomes
    yield e
    e.stop()


def publish_fault(broker, thing, seq=1):
    dev = Publisher(broker, thing)
    try:
        dev.publish_acked("devices/%s/events" % thing, event(device=thing, kind="FAULT", reason="overtemp", seq=seq))
    finally:
        dev.close()


def test_through_the_engine_a_first_publish_that_fails_is_delivered_by_the_retry(engine, broker, sns, trouble):
    down = trouble(failures=1)
    publish_fault(broker, "retry-1")
    wait_for(lambda: engine.stats()["acked"] == 1, what="the event done with")
    assert [o[0] for o in engine.outcomes] == ["raised", "sent"]
    (subject,) = sns.subjects()
    assert subject == engine.outcomes[1][1] and "retry-1" in subject and down.calls == 2
    st = engine.stats()["async"]
    assert st["retried"] == 1 and st["failed"] == 0
    assert failure_records() == []


def test_through_the_engine_an_alert_that_always_fails_ends_in_the_failure_destination(engine, broker, sns, trouble):
    trouble(failures=100)
    publish_fault(broker, "down-1")
    wait_for(lambda: engine.stats()["acked"] == 1, what="the failure record kept")
    assert engine.outcomes == [("raised", "ClientError")] * 3, "never suppressed, every attempt failed"
    (record,) = failure_records()
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"]["thing"] == "down-1"
    assert "InternalError" in record["responsePayload"]["errorMessage"]
    assert sns.subjects() == [] and slots() == [], "no page, and no slot left to silence the next one"


def test_through_the_engine_two_concurrent_deliveries_of_one_alert_page_once(engine, broker, sns, trouble):
    engine.invoker.duplicates = 1  # AWS's at-least-once: the same event twice, at once
    trouble(pause_s=0.3)  # a slow SNS: the two deliveries overlap
    publish_fault(broker, "twice-1")
    wait_for(lambda: len(engine.outcomes) == 2, what="both deliveries done")
    assert sorted(o[0] for o in engine.outcomes) == ["sent", "suppressed"]
    assert len(sns.subjects()) == 1 and failure_records() == []
