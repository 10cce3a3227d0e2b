"""End to end on one machine: the shipped firmware on a virtual ESP32 -> Mosquitto (mTLS) -> the rules
engine -> the real Lambdas -> DynamoDB, S3 and SNS in a moto server. Every sample is stored exactly
once across a broker restart, and a FAULT alert goes out within a second of the event."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
import requests
from boto3.dynamodb.conditions import Key

from cloud import resources
from cloud.domain import history
from cloud.local.core import LocalCore
from cloud.local.engine import default_functions
from provisioning import local as local_backend
from cloud.local.broker import free_port
from vesp32.harness import VirtualESP32
from waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_MS = 50  # the shipped 30 samples a message, sampled fast: a full message every 1.5 s
BATCH = 30


@pytest.fixture
def core(tmp_path):
    alerts = []
    funcs = default_functions()
    real_alert = funcs["alert"]

    def timed_alert(event, context):
        out = real_alert(event, context)
        alerts.append((time.time_ns(), out))
        return out

    funcs["alert"] = timed_alert
    c = LocalCore(tmp_path / "home", broker_port=free_port(), functions=funcs).start()
    c.alerts = alerts
    yield c
    c.stop()


def stored_batches(thing):
    t = boto3.resource("dynamodb").Table(resources.TABLES["telemetry"][0])
    items, kw = [], {}
    while True:
        r = t.query(KeyConditionExpression=Key("device").eq(thing), **kw)
        items += r["Items"]
        if "LastEvaluatedKey" not in r:
            return items
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def test_device_to_dynamodb_exactly_once_and_alert_within_a_second(core):
    home = core.home
    r = local_backend.provision_device(home, "e2e-1", wifi_ssid="lab", wifi_password="secret123")
    bundle = Path(r["bundle"])
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["telemetry"] = {"sample_period_ms": SAMPLE_MS}
    cfg["mqtt"].update(backoff_min_ms=200, backoff_max_ms=1000)
    (bundle / "config.json").write_text(json.dumps(cfg))
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    watch = sqs.create_queue(QueueName="e2e-alerts")["QueueUrl"]
    watch_arn = sqs.get_queue_attributes(QueueUrl=watch, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=core.moto.arns["alerts_topic_arn"], Protocol="sqs", Endpoint=watch_arn)

    vm = VirtualESP32(bundle, firmware_dir=ROOT / "firmware", broker="%s:%d" % (core.broker.host, core.broker.port))
    try:
        vm.start()
        vm.wait_for_line("MG NET online", 15)
        vm.press("start")
        vm.wait_for_state("RUNNING", 3)
        wait_for(lambda: len(stored_batches("e2e-1")) >= 3, 10, "three stored batches")

        # The broker goes down and comes back; the motor is stopped meanwhile (reconnects wait for that).
        core.broker.stop()
        vm.wait_for_line("MG NET offline", 10)
        time.sleep(2.0)
        vm.press("stop")
        vm.wait_for_state("STOPPED", 3)
        mark = vm.mark()
        core.broker.start()
        vm.wait_for_line("MG NET online", 20, since=mark)
        wait_for(core.engine.connected, 10, "the rules engine back on the broker")

        # A FAULT: the alert must be out within a second of the board's state change.
        vm.press("start")
        vm.wait_for_state("RUNNING", 3)
        vm.force_current(3.5)
        t_fault = vm.wait_for_state("FAULT", 3)
        t_alert, out = wait_for(lambda: [a for a in core.alerts if "FAULT on e2e-1" in a[1].get("subject", "")],
                                5, "the FAULT alert")[0]
        assert out["status"] == "sent"
        assert (t_alert - t_fault) / 1e9 < 1.0, "alert %.0f ms after the FAULT" % ((t_alert - t_fault) / 1e6)
        notes = []
        wait_for(lambda: notes.extend(sqs.receive_message(QueueUrl=watch, MaxNumberOfMessages=10).get("Messages", []))
                 or len(notes) >= 2, 5, "both alerts on SNS")
        assert any("FAULT on e2e-1" in json.loads(n["Body"])["Subject"] for n in notes)

        # Every batch the board made, stored exactly once, samples one period apart without a gap.
        vm.force_current(None)
        time.sleep(1.5)
        top = max(history.unpack(i["payload"])["seq"] for i in stored_batches("e2e-1"))
        items = wait_for(lambda: (lambda b: b if sorted(history.unpack(i["payload"])["seq"] for i in b) == list(range(top + 1)) else None)(
            stored_batches("e2e-1")), 20, "batches 0..%d" % top)
        samples = sorted((s for i in items for s in history.samples_of(i)), key=lambda s: s["time"])
        assert len(samples) == (top + 1) * BATCH
        steps = [b["time"] - a["time"] for a, b in zip(samples, samples[1:])]
        # A late tick (a TLS handshake blocks the VM) delays one sample and the next catches up;
        # a gap or a duplicate would shift the grid by a whole period.
        assert all(SAMPLE_MS // 4 < d < SAMPLE_MS * 2 for d in steps), "gap or duplicate: %s" % steps
        assert abs(samples[-1]["time"] - samples[0]["time"] - SAMPLE_MS * len(steps)) <= SAMPLE_MS
        assert all(history.unpack(i["payload"])["dropped"] == 0 for i in items)
        st = core.engine.stats()
        assert st["actions_failed"] == 0 and st["error_actions"] == 0

        # The API sees the same: the device in FAULT, its history, its events.
        dev = requests.get(core.api.url + "/devices/e2e-1").json()
        assert dev["state"] == "FAULT" and dev["reason"] in ("overcurrent", "overtemp_overcurrent")
        events = requests.get(core.api.url + "/devices/e2e-1/events",
                              params={"from": samples[0]["time"] - 60_000}).json()["events"]
        kinds = [e["event"] for e in events]
        assert kinds.count("FAULT") == 1 and "ESTOP" in kinds and kinds[0] == "BOOT"
        # A command through the API reaches the board.
        r = requests.post(core.api.url + "/devices/e2e-1/commands", json={"cmd": "stop", "id": "api-1"})
        assert r.status_code == 202
        vm.wait_for_line("MG CMD stop", 5)
    finally:
        vm.stop()
