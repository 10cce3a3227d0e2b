"""The local event source mapping (cloud/local/esm.py): batches as AWS forms them, partial batch
responses, redelivery and redrive, back-pressure, and nothing let go before it is stored."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time

import pytest

from cloud.domain import rejects
from cloud.local.esm import EventSourceMapping

from waiting import wait_for


class Function:
    """A queue-fed function that records its batches; fail(body) decides which records it reports."""

    def __init__(self, fail=lambda body, count: False, raises=False, hold=None):
        self.batches = []
        self.fail = fail
        self.raises = raises
        self.hold = hold

    def __call__(self, event):
        self.batches.append(event["Records"])
        if self.hold is not None:
            self.hold.wait(10)
        if self.raises:
            raise RuntimeError("boom")
        return {"batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r in event["Records"]
            if self.fail(r["body"], int(r["attributes"]["ApproximateReceiveCount"]))]}


def mapping(fn, **kw):
    kw.setdefault("batch_size", 10)
    kw.setdefault("window_s", 0.2)
    kw.setdefault("retry_delay_s", 0.05)
    return EventSourceMapping("test-queue", fn, **kw).start()


def test_a_full_batch_goes_at_once_and_a_partial_one_after_the_window():
    fn, done = Function(), []
    esm = mapping(fn, batch_size=10, window_s=0.5, concurrency=1)
    try:
        t0 = time.monotonic()
        for i in range(10):
            esm.add("m%d" % i, done.append)
        wait_for(lambda: len(done) == 10, what="the full batch")
        assert time.monotonic() - t0 < 0.4, "a full batch must not wait for the window"
        t1 = time.monotonic()
        for i in range(3):
            esm.add("p%d" % i, done.append)
        wait_for(lambda: len(done) == 13, what="the partial batch")
        assert time.monotonic() - t1 >= 0.45, "a partial batch waits for the window"
        assert [len(b) for b in fn.batches] == [10, 3]
        assert [r["body"] for b in fn.batches for r in b] == ["m%d" % i for i in range(10)] + ["p0", "p1", "p2"]
    finally:
        esm.stop()


def test_records_look_like_what_aws_sends():
    fn = Function()
    esm = mapping(fn, batch_size=1)
    try:
        esm.add('{"a": 1}')
        wait_for(lambda: fn.batches)
        (r,) = fn.batches[0]
        assert r["eventSource"] == "aws:sqs" and r["awsRegion"] == "us-east-1"
        assert r["eventSourceARN"].endswith(":test-queue") and r["eventSourceARN"].startswith("arn:aws:sqs:")
        assert r["md5OfBody"] == hashlib.md5(b'{"a": 1}').hexdigest()
        assert r["attributes"]["ApproximateReceiveCount"] == "1" and int(r["attributes"]["SentTimestamp"]) > 0
        assert r["messageId"] and r["receiptHandle"] and r["messageAttributes"] == {}
    finally:
        esm.stop()


def test_only_reported_failures_are_delivered_again_and_done_waits_for_them():
    fn, done = Function(fail=lambda body, count: body == "bad" and count < 3), []
    esm = mapping(fn, batch_size=3, window_s=0.05)
    try:
        for body in ("a", "bad", "b"):
            esm.add(body, lambda m: done.append((m.body, m.receive_count)))
        wait_for(lambda: len(done) == 3, what="every message done")
        assert sorted(done) == [("a", 1), ("b", 1), ("bad", 3)]
        assert [[r["body"] for r in b] for b in fn.batches] == [["a", "bad", "b"], ["bad"], ["bad"]]
        assert [b[0]["attributes"]["ApproximateReceiveCount"] for b in fn.batches[1:]] == ["2", "3"]
        assert esm.stats["delivered"] == 3 and esm.stats["failed_deliveries"] == 2 and esm.held() == 0
    finally:
        esm.stop()


def test_a_raise_fails_the_whole_batch_and_max_receives_redrive_to_the_dead_letter_queue():
    dead, done = [], []
    esm = mapping(Function(raises=True), batch_size=2, window_s=0.05, max_receive_count=3, dead_letter=dead.append)
    try:
        esm.add("x", done.append)
        esm.add("y", done.append)
        wait_for(lambda: len(done) == 2, what="both messages given up on")
        letters = [rejects.read(d) for d in dead]
        assert sorted(d["payload"]["bytes"] for d in letters) == [b"x", b"y"], "the body, whole, in the envelope"
        assert {d["code"] for d in letters} == {"retries_exhausted"} and {d["receiveCount"] for d in letters} == {3}
        assert sorted(d["messageId"] for d in letters) == sorted(m.id for m in done)
        assert all(d["payload"]["source"] == "queued_body" and not d["payload"]["truncated"] for d in letters)
        assert all(m.receive_count == 3 for m in done)
        assert esm.stats["redriven"] == 2
    finally:
        esm.stop()


def test_without_wrapping_the_body_goes_to_the_dead_letter_queue_unchanged_as_sqs_does():
    dead, done = [], []
    esm = mapping(Function(raises=True), batch_size=1, window_s=0, max_receive_count=2, dead_letter=dead.append,
                  wrap_dead_letters=False)
    try:
        esm.add("x", done.append)
        wait_for(lambda: done, what="the message given up on")
        assert dead == ["x"]
    finally:
        esm.stop()


def test_an_exhausted_rule_output_keeps_its_topic_receive_time_and_original_bytes():
    original = b'{"v": 1, "device": "m1", "samples": []}'
    body = json.dumps({"payload_b64": base64.b64encode(original).decode(), "thing": "m1", "kind": "telemetry",
                       "received_ms": 1790000000000})
    merged = json.dumps({"v": 1, "device": "m2", "thing": "m2", "kind": "telemetry", "received_ms": 1790000000001})
    huge = "z" * 600_000  # bigger than any queue takes: the envelope must still fit
    dead, done = [], []
    esm = mapping(Function(raises=True), batch_size=3, window_s=0.05, max_receive_count=1, dead_letter=dead.append)
    try:
        for b in (body, merged, huge):
            esm.add(b, done.append)
        wait_for(lambda: len(done) == 3, what="all three given up on")
        by_source = {rejects.read(d)["payload"]["source"]: rejects.read(d) for d in dead}
        a, b, c = by_source["original"], by_source["rule_output"], by_source["queued_body"]
        assert (a["topic"], a["thing"], a["receivedMs"], a["payload"]["bytes"]) == (
            "devices/m1/telemetry", "m1", 1790000000000, original)
        assert (b["topic"], b["receivedMs"], b["payload"]["bytes"]) == (
            "devices/m2/telemetry", 1790000000001, merged.encode())
        assert all(len(d) <= rejects.SQS_MAX_BYTES for d in dead)
        assert c["payload"]["truncated"] and c["payload"]["size"] == 600_000
        assert c["payload"]["sha256"] == hashlib.sha256(huge.encode()).hexdigest()
        assert c["payload"]["bytes"] == huge.encode()[:len(c["payload"]["bytes"])] and c["payload"]["keptBytes"] > 150_000
    finally:
        esm.stop()


def test_a_failed_redrive_keeps_the_message():
    attempts = []

    def broken_dlq(body):
        attempts.append(body)
        raise ConnectionError("dlq down")

    done = []
    esm = mapping(Function(raises=True), batch_size=1, window_s=0, max_receive_count=1, dead_letter=broken_dlq)
    try:
        esm.add("keep", done.append)
        wait_for(lambda: len(attempts) >= 3, what="repeated redrive attempts")
        assert done == [] and esm.held() == 1 and esm.stats["redrive_failed"] >= 3
    finally:
        esm.stop()


def test_an_identifier_not_in_the_batch_fails_the_whole_batch():
    calls = []

    def fn(event):
        calls.append([r["body"] for r in event["Records"]])
        return {"batchItemFailures": [{"itemIdentifier": "not-a-message-id"}]} if len(calls) == 1 else {}

    done = []
    esm = mapping(fn, batch_size=2, window_s=0.05)
    try:
        esm.add("a", done.append)
        esm.add("b", done.append)
        wait_for(lambda: len(done) == 2)
        assert calls == [["a", "b"], ["a", "b"]]
    finally:
        esm.stop()


def test_add_blocks_at_capacity_until_a_batch_is_done():
    release = threading.Event()
    fn = Function(hold=release)
    esm = mapping(fn, batch_size=2, window_s=0, capacity=2, concurrency=1)
    added = []
    try:
        esm.add("a")
        esm.add("b")
        t = threading.Thread(target=lambda: added.append(esm.add("c")))
        t.start()
        time.sleep(0.3)
        assert added == [] and esm.held() == 2, "a third message must wait while two are held"
        release.set()
        t.join(5)
        assert added == [True]
    finally:
        release.set()
        esm.stop()


def test_stop_leaves_waiting_messages_undone():
    done = []
    esm = mapping(Function(), batch_size=100, window_s=30)
    esm.add("waiting", done.append)
    esm.stop()
    assert done == [], "an unacknowledged message is the broker's to deliver again"
    assert esm.add("late") is False


@pytest.mark.parametrize("bad", [0, -1])
def test_capacity_is_at_least_a_batch(bad):
    esm = EventSourceMapping("q", Function(), batch_size=5, capacity=bad)
    assert esm.capacity == 5
