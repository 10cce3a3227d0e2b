"""A rule's Lambda action is an asynchronous invoke, locally as in AWS: a function error is tried
twice more and then lands in the function's on-failure destination with Lambda's invocation record;
the rule's error action never sees it, and the MQTT message is acknowledged only once it is kept."""

from __future__ import annotations

import base64
import json
import threading
import time

import boto3
import pytest

from cloud import resources
from cloud.local.async_invoke import AsyncInvoker
from cloud.local.engine import Engine

from messages import event
from devices import Publisher
from waiting import wait_for

DELAY = 0.1


def published(rule_output: dict):
    """The payload as the device published it, from the rule's payload_b64 (cloud/rules.py)."""
    return json.loads(base64.b64decode(rule_output["payload_b64"]))


def queued(queue_name):
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return out
        out += [json.loads(m["Body"]) for m in got]


class Flaky:
    """A handler that raises its first `failures` calls, recording when each call came."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, event, context):
        with self.lock:
            self.calls.append((time.monotonic(), event, context.function_name))
            n = len(self.calls)
        if n <= self.failures:
            raise RuntimeError("alert down on purpose (call %d)" % n)
        return {"status": "sent"}


def test_retries_twice_with_growing_delays_then_records_the_failure():
    records, done = [], threading.Event()
    fn = Flaky(failures=10)
    inv = AsyncInvoker(lambda logical, ev: fn(ev, type("C", (), {"function_name": logical})), records.append,
                       retry_attempts=2, retry_delay_s=DELAY)
    try:
        inv.submit("alert", "motorguard-alert", '{"thing": "m1", "n": 1}', done.set)
        assert len(fn.calls) == 1, "the first attempt runs at once"
        assert done.wait(5)
        times = [t for t, _, _ in fn.calls]
        assert len(times) == 3
        assert times[1] - times[0] >= DELAY and times[2] - times[1] >= 2 * DELAY  # AWS: 1 then 2 minutes
        (rec,) = records
        assert rec["requestContext"]["condition"] == "RetriesExhausted"
        assert rec["requestContext"]["approximateInvokeCount"] == 3
        assert rec["requestContext"]["functionArn"].endswith(":function:motorguard-alert:$LATEST")
        assert rec["requestPayload"] == {"thing": "m1", "n": 1}
        assert rec["responseContext"]["functionError"] == "Unhandled"
        assert rec["responsePayload"]["errorType"] == "RuntimeError"
        assert "call 3" in rec["responsePayload"]["errorMessage"]
        assert inv.stats == {"invoked": 1, "retried": 2, "failed": 1, "record_failed": 0}
    finally:
        inv.stop()


def test_each_attempt_gets_the_event_as_sent_and_a_success_ends_the_retries():
    seen, done = [], threading.Event()

    def mutating(logical, ev):
        seen.append(dict(ev))
        ev["spoiled"] = True  # a handler that changes its event must not change the next attempt's
        if len(seen) < 2:
            raise ValueError("once")

    inv = AsyncInvoker(mutating, lambda rec: pytest.fail("no record for a success"), retry_delay_s=0.01)
    try:
        inv.submit("ingest", "motorguard-ingest", '{"a": 1}', done.set)
        assert done.wait(5) and seen == [{"a": 1}, {"a": 1}]
        assert inv.stats["failed"] == 0 and inv.stats["retried"] == 1
    finally:
        inv.stop()


def test_a_record_that_cannot_be_kept_leaves_the_event_unfinished():
    done = threading.Event()

    def no_destination(rec):
        raise ConnectionError("SQS unreachable")

    inv = AsyncInvoker(lambda logical, ev: 1 / 0, no_destination, retry_attempts=0)
    inv.submit("alert", "motorguard-alert", "{}", done.set)
    assert not done.is_set() and inv.stats["record_failed"] == 1  # the broker keeps the MQTT message


@pytest.fixture
def flaky_alert(aws, broker):
    fn = Flaky(failures=10)
    stored = []
    e = Engine(broker, functions={"alert": fn, "ingest": lambda ev, c: stored.append(ev)},
               async_retry_delay_s=DELAY).start()
    fn.engine, fn.stored = e, stored
    yield fn
    e.stop()


def test_a_failing_alert_ends_in_the_failure_destination_with_its_payload_and_nothing_is_lost(flaky_alert, broker):
    e = flaky_alert.engine
    dev = Publisher(broker, "af-1")
    try:
        fault = event(device="af-1", kind="FAULT", seq=7)
        dev.publish("devices/af-1/events", fault)
        wait_for(lambda: flaky_alert.stored, what="the events rule's ingest")
        time.sleep(DELAY / 2)
        assert e.stats()["acked"] == 0, "acknowledged before the failed event was kept"
        wait_for(lambda: e.stats()["acked"] == 1, what="the PUBACK once the record is kept")
        assert len(flaky_alert.calls) == 3 and {name for _, _, name in flaky_alert.calls} == {"motorguard-alert"}
        (rec,) = queued(resources.ASYNC_FAILURE_QUEUE)
        assert "ruleName" not in rec, "a function error must not reach the rule's error action"
        assert rec["requestContext"]["condition"] == "RetriesExhausted"
        assert rec["requestContext"]["approximateInvokeCount"] == 3
        assert rec["requestContext"]["functionArn"].endswith(":function:%s:$LATEST" % resources.function_name("alert"))
        payload = rec["requestPayload"]
        assert payload["thing"] == "af-1" and published(payload) == fault  # the rule's output, whole
        assert "alert down on purpose" in rec["responsePayload"]["errorMessage"]
        st = e.stats()
        assert st["actions_failed"] == 0 and st["error_actions"] == 0
        assert st["async"]["failed"] == 1 and st["async"]["retried"] == 2
        assert st["lambda_invocations"] == 3 + 1  # each attempt is billed; and the events rule's ingest
    finally:
        dev.close()


def test_an_event_waiting_for_its_retry_survives_an_engine_restart(aws, broker):
    """The retry waits in memory, but the MQTT message is unacknowledged until it is done: after a
    restart the broker delivers it again and the function (now working) gets it."""
    first = Flaky(failures=10)
    e = Engine(broker, functions={"alert": first, "ingest": lambda ev, c: None}, async_retry_delay_s=30).start()
    dev = Publisher(broker, "af-2")
    try:
        dev.publish("devices/af-2/events", event(device="af-2", kind="ESTOP", seq=3))
        wait_for(lambda: first.calls, what="the first attempt")
        assert e.stats()["async"]["waiting"] == 1
        e.stop()
        again = Flaky(failures=0)
        e = Engine(broker, functions={"alert": again, "ingest": lambda ev, c: None}, async_retry_delay_s=30).start()
        wait_for(lambda: again.calls, what="the redelivered event")
        assert again.calls[0][1]["thing"] == "af-2" and published(again.calls[0][1])["seq"] == 3
        wait_for(lambda: e.stats()["acked"] == 1, what="the PUBACK")
        assert queued(resources.ASYNC_FAILURE_QUEUE) == []
    finally:
        dev.close()
        e.stop()
