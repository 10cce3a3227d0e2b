"""Adversarial messages through the real path: a device's publish -> Mosquitto (mTLS) -> the rules
engine with the shipped rules -> the telemetry queue's event source mapping (or the events rule's
Lambda action) -> ingest -> DynamoDB and the dead-letter queue in a moto server.

Each bad message is published between two valid ones from the same device, and each case checks:
nothing of it is stored, its dead letter names the expected reason, the letter holds the bytes as
published (whole, or their start, with their size and SHA-256), and both batch-mates are stored
(sharing its batch where it reached one). The rules send the payload as published
(encode(*, 'base64'), cloud/rules.py), so ingest judges every byte: a payload that sets the rule's
own fields is rejected (identity) instead of being overwritten, and one that is not JSON reaches
ingest and is rejected with its precise reason.
"""

from __future__ import annotations

import json
import time
from typing import NamedTuple

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from cloud import resources
from cloud.domain import delivery, history
from cloud.local import moto_env
from cloud.local.engine import Engine, default_functions

from adversarial import Letter, drain, limit_dead_letter_queue
from devices import Publisher
from messages import event, telemetry
from waiting import wait_for

DEVICE, OTHER = "adv-1", "adv-2"
YEAR_MS = 365 * 86_400_000


class Case(NamedTuple):
    name: str
    topic: str
    payload: bytes
    expected: tuple  # (layer, code) of its dead letter: ingest's reject, or the engine's error action
    via: str = "mqtt"  # or "engine": handed to Engine.process (topics and sizes the broker refuses)


def _t(seq, now, **kw):
    return telemetry(device=DEVICE, seq=seq, n=5, t0=now - 3_000_000 + seq * 5000, **kw)  # all in the past


def _bytes(msg) -> bytes:
    return json.dumps(msg).encode()


def _deep(depth) -> list:
    inner = root = []
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return root


def corpus(now: int) -> list[Case]:
    tel = "devices/%s/telemetry" % DEVICE
    valid = _bytes(_t(500, now))
    deep_value = _t(501, now)
    deep_value["samples"][0]["temperature_c"] = _deep(50)
    no_seq = _t(502, now)
    del no_seq["seq"]
    nan = _bytes(_t(503, now)).replace(b'"current_a": 0.8', b'"current_a": NaN', 1)
    assert b"NaN" in nan
    ingest = "ingest"
    return [
        Case("malformed", tel, valid[:-40], (ingest, "not_json")),
        Case("not_json", tel, b"\x00\xffMG telemetry?\x01", (ingest, "not_json")),
        Case("empty", tel, b"", (ingest, "not_json")),
        Case("nan", tel, nan, (ingest, "not_json")),
        Case("array", tel, b'[{"v": 1}]', (ingest, "not_object")),
        Case("scalar", tel, b'"adv-1"', (ingest, "not_object")),
        Case("oversized", tel, _bytes(dict(_t(504, now), fw="x" * 200_000)), ("engine", "too_large"), via="engine"),
        Case("deep_value", tel, _bytes(deep_value), (ingest, "too_deep")),
        Case("deep_root", tel, b"[" * 2000 + b"]" * 2000, (ingest, "too_deep")),
        Case("spoofed_device", tel, _bytes(telemetry(device=OTHER, seq=505, n=5, t0=now - 60_000)),
             (ingest, "identity")),
        Case("empty_segment", "devices//telemetry", _bytes(_t(506, now)), (ingest, "identity"), via="engine"),
        Case("invalid_thing", "devices/bad name/telemetry", _bytes(dict(_t(507, now), device="bad name")),
             (ingest, "identity"), via="engine"),
        Case("long_thing", "devices/%s/telemetry" % ("x" * 129), _bytes(dict(_t(508, now), device="x" * 129)),
             (ingest, "identity"), via="engine"),
        Case("far_future", tel, _bytes(_t(509, now + 10 * YEAR_MS)), (ingest, "time")),
        Case("pre_epoch", tel, _bytes(telemetry(device=DEVICE, seq=510, n=5, t0=1_500_000_000_000)), (ingest, "time")),
        Case("reserved_thing", tel, _bytes(dict(_t(511, now), thing=DEVICE)), (ingest, "identity")),
        Case("reserved_kind", tel, _bytes(dict(_t(512, now), kind="events", received_ms=1)), (ingest, "identity")),
        Case("reserved_original", tel, _bytes(dict(_t(515, now), payload_b64="e30=")), (ingest, "identity")),
        Case("schema", tel, _bytes(no_seq), (ingest, "schema")),
        Case("huge_number", tel, _bytes(dict(_t(513, now), uptime_s=10 ** 30)), (ingest, "schema")),
        Case("future_event", "devices/%s/events" % DEVICE,
             _bytes(event(device=DEVICE, kind="STARTED", seq=514, t=now + YEAR_MS)), (ingest, "time")),
        Case("reserved_event", "devices/%s/events" % DEVICE,
             _bytes(dict(event(device=DEVICE, kind="STOPPED", seq=516, t=now - 1000), thing=OTHER)),
             (ingest, "identity")),
    ]


def stored_seqs(table="telemetry") -> dict:
    t = boto3.resource("dynamodb").Table(resources.TABLES[table][0])
    items = t.query(KeyConditionExpression=Key("device").eq(DEVICE))["Items"]
    if table == "telemetry":
        return {history.unpack(i["payload"])["seq"]: i for i in items}
    return {int(i["seq"]): i for i in items}


def body_is(payload: bytes, body: str) -> bool:
    """Whether a queued body (the telemetry rule's output) carries this payload."""
    return delivery.original_of(json.loads(body)) == payload


@pytest.fixture(scope="module")
def outcome(moto_server, tmp_path_factory):
    """Publishes the whole corpus once and gathers what became of each case."""
    from cloud.local.broker import LocalBroker, free_port

    import requests

    requests.post(moto_server.url + "/moto-api/reset")
    moto_env.create_resources(moto_server.url)
    moto_env.use_endpoint(moto_server.url)
    limit_dead_letter_queue()
    batches = []
    functions = default_functions()
    real_ingest = functions["ingest"]

    def recording_ingest(evt, ctx):
        if "Records" in evt:
            batches.append([r["body"] for r in evt["Records"]])
        return real_ingest(evt, ctx)

    recording_ingest.handler_path = real_ingest.handler_path
    functions["ingest"] = recording_ingest
    broker = LocalBroker.with_new_pki(tmp_path_factory.mktemp("broker"), free_port()).start()
    engine = Engine(broker, functions=functions, async_retry_delay_s=0.05).start()
    dev = Publisher(broker, DEVICE)
    now = int(time.time() * 1000)
    cases = corpus(now)
    try:
        for k, case in enumerate(cases):
            kind = case.topic.rsplit("/", 1)[1]
            mates = [(_t(2 * k + s, now) if kind == "telemetry" else
                      event(device=DEVICE, kind="STOPPED", seq=2 * k + s, t=now - 60_000 + 2 * k + s)) for s in (0, 1)]
            mate_topic = "devices/%s/%s" % (DEVICE, kind)
            dev.publish_acked(mate_topic, _bytes(mates[0]))
            if case.via == "engine":
                engine.process(case.topic, case.payload)
            else:
                dev.publish_acked(case.topic, case.payload)
            dev.publish_acked(mate_topic, _bytes(mates[1]))
        tel_mates = {2 * k + s for k, c in enumerate(cases) if c.topic.endswith("telemetry") for s in (0, 1)}
        ev_mates = {2 * k + s for k, c in enumerate(cases) if c.topic.endswith("events") for s in (0, 1)}
        wait_for(lambda: tel_mates <= set(stored_seqs()) and ev_mates <= set(stored_seqs("events")), 60,
                 "every batch-mate stored")
        letters, deadline = [], time.monotonic() + 20
        while len(drain(letters)) < len(cases) and time.monotonic() < deadline:  # fewer: the cases say which
            time.sleep(0.2)
        time.sleep(1.5)  # anything late (a second letter for one message would be a fault)
        drain(letters)
        yield {"cases": cases, "letters": [Letter(d) for d in letters],
               "telemetry": stored_seqs(), "events": stored_seqs("events"), "batches": batches,
               "devices": boto3.resource("dynamodb").Table(resources.TABLES["devices"][0]).scan()["Items"],
               "stats": engine.stats(), "now": now}
    finally:
        dev.close()
        engine.stop()
        broker.stop()


@pytest.mark.broker
@pytest.mark.parametrize("name", [c.name for c in corpus(0)])
def test_a_bad_message_is_rejected_with_its_reason_and_bytes_and_its_batch_mates_are_stored(outcome, name):
    k, case = next((k, c) for k, c in enumerate(outcome["cases"]) if c.name == name)
    kind = case.topic.rsplit("/", 1)[1]
    stored = outcome["telemetry"] if kind == "telemetry" else outcome["events"]
    assert {2 * k, 2 * k + 1} <= set(stored), "a batch-mate of %s was not stored" % name
    mine = [x for x in outcome["letters"] if x.holds(case.payload)]  # the bytes as published, nothing else
    assert len(mine) == 1, "%d dead letters for %s: %s" % (len(mine), name, [x.doc for x in outcome["letters"]][:3])
    letter = mine[0]
    assert (letter.layer, letter.code) == case.expected, letter.doc
    assert letter.doc.get("reason"), "every reject says why"
    seq = _parsed(case.payload).get("seq") if isinstance(_parsed(case.payload), dict) else None
    assert seq is None or int(seq) not in stored, "%s was stored" % name
    if letter.layer == "ingest":
        assert letter.doc["receivedMs"] and abs(letter.doc["receivedMs"] - outcome["now"]) < 120_000
        assert letter.doc["topic"] == case.topic
        if kind == "telemetry":  # it reached a batch, and valid messages of that batch were stored
            batch = next(b for b in outcome["batches"] if any(body_is(case.payload, body) for body in b))
            assert any(_seq_of(body) in stored for body in batch if not body_is(case.payload, body))


def _parsed(payload: bytes):
    """The payload's JSON, integers read as floats (as the rules engine's SQL holds them)."""
    try:
        return json.loads(payload, parse_int=float)
    except (ValueError, RecursionError):
        return None


def _seq_of(body: str):
    out = _parsed(delivery.original_of(json.loads(body)) or b"")
    return out.get("seq") if isinstance(out, dict) else None


@pytest.mark.broker
def test_nothing_from_the_future_becomes_latest_and_the_engine_lost_nothing(outcome):
    (dev,) = [d for d in outcome["devices"] if d["device"] == DEVICE]
    assert int(dev["last_event_ms"]) < outcome["now"] + 300_000, "a future event moved the latest state"
    newest = max(history.first_ms(i) for i in outcome["telemetry"].values())
    assert newest < outcome["now"], "a future batch would be the newest history item"
    mates = {2 * k + s for k, c in enumerate(outcome["cases"]) if c.topic.endswith("/telemetry") for s in (0, 1)}
    assert set(outcome["telemetry"]) == mates, "stored: the batch-mates and nothing else"
    assert len(outcome["letters"]) == len(outcome["cases"]), "one dead letter a case, no more"
    assert {i["device"] for i in boto3.resource("dynamodb").Table(resources.TABLES["telemetry"][0]).scan()["Items"]} \
        == {DEVICE}, "nothing stored under another name"
    st = outcome["stats"]
    assert st["evaluation_errors"] == 0 and st["error_action_failed"] == 0
    assert st["too_large"] == 1 and st["not_json"] == st["not_object"] == st["too_deep"] == 0, "ingest judged them"
    q = st["queues"][resources.TELEMETRY_QUEUE]
    assert q["failed_deliveries"] == 0 and q["redriven"] == 0 and q["held"] == 0, q
