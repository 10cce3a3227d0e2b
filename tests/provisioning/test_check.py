"""`provision check` end to end against the local IoT Core (Mosquitto behind the gateway that enforces
the device policy as AWS IoT Core does and publishes AWS's lifecycle events): the retained Will and
the retained status are proven, a policy that refuses them fails the check at the step that uses
them, a forbidden step counts as refused only by its AUTH_ERROR event, and a takeover by the live
device is reported as such, not as a refusal."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest

import contract
from provisioning import check, errors, lifecycle, policy

from tests.mqtt_device import Client

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
THING = "chk-001"
STATUS_SCHEMA = json.loads((ROOT / "schemas" / "v1" / "status.schema.json").read_text())


@pytest.fixture
def device(local_broker, cli):
    assert cli("device", THING).exit_code == 0
    return THING


def enforce(broker, doc: dict):
    """The gateway enforces doc from now on (as if it were the policy attached in AWS)."""
    broker.policy_path.write_text(json.dumps(doc))
    broker.reload()


def without(sid: str) -> dict:
    doc = policy.document()
    doc["Statement"] = [s for s in doc["Statement"] if s["Sid"] != sid]
    return doc


def test_the_check_proves_the_will_and_the_retained_status(device, local_broker, cli, home):
    r = cli("check", THING, "--json")
    assert r.exit_code == 0, r.output
    steps = json.loads(r.stdout)["steps"]
    names = [s["step"] for s in steps]
    assert names[0] == "listen for the lifecycle events of %s" % THING
    assert names[1].startswith("connect as %s " % THING)
    assert "retained Last Will on devices/%s/status" % THING in names[1]
    assert names[3] == "publish a retained status to devices/%s/status" % THING
    assert all(s["ok"] for s in steps) and len(steps) == 6
    assert steps[3]["detail"] == "PUBACK, and the connection still up 1 s later"
    # Both forbidden steps were refused as AWS refuses: the connection closed, AUTH_ERROR its reason.
    refused = "the broker closed the connection: AUTH_ERROR (the policy refused it)"
    assert [s["detail"] for s in steps[4:]] == [refused] * 2
    # What the check left retained is a schema-valid offline status, marked as the check's.
    cert, key = local_broker.service_credentials(contract.SERVICE_IDENTITY)
    svc = Client(local_broker, "whoever", cert, key)
    try:
        svc.subscribe(contract.topic(THING, contract.STATUS))
        assert svc.wait_for(contract.topic(THING, contract.STATUS))
        retained = json.loads(svc.got[0][1])
    finally:
        svc.close()
    jsonschema.validate(retained, STATUS_SCHEMA)
    assert retained == {"v": 1, "device": THING, "online": False, "boot": "00000000", "fw": "provision-check"}


def test_the_wills_payload_is_a_schema_valid_offline_status():
    jsonschema.validate(json.loads(check.offline_status("motor-042")), STATUS_SCHEMA)
    assert json.loads(check.offline_status("motor-042"))["online"] is False


def test_a_policy_without_retain_publish_refuses_the_will_at_connect(device, local_broker, cli):
    enforce(local_broker, without("RetainOwnStatus"))
    r = cli("check", THING, "--json")
    assert r.exit_code == errors.CHECK_FAILED, r.output
    steps = json.loads(r.stdout)["steps"]
    assert [s["ok"] for s in steps] == [True, False]  # it stops at the connect: nothing after it ran
    assert "refused with the Will, accepted without it" in steps[1]["detail"]
    assert "iot:RetainPublish" in steps[1]["detail"]


def test_a_policy_without_the_will_attribute_refuses_the_connect(device, local_broker, cli):
    doc = policy.document()
    connect = next(s for s in doc["Statement"] if s["Sid"] == "ConnectAsItself")
    connect["Condition"]["ForAllValues:StringEquals"]["iot:ConnectAttributes"] = ["PersistentConnect"]
    enforce(local_broker, doc)
    r = cli("check", THING)
    assert r.exit_code == errors.CHECK_FAILED
    assert "FAIL connect as %s" % THING in r.output and "iot:ConnectAttributes LastWill" in r.output


def test_a_denied_retained_publish_shows_as_a_refusal_right_after_that_step(device, local_broker, cli, monkeypatch):
    # The gateway (like AWS) refuses a retained Will at connect already. To see the retained publish
    # step catch a denial on its own, the check connects without its Will here.
    class NoWill(check._Device):
        def __init__(self, *a, **kw):
            kw["will"] = False
            super().__init__(*a, **kw)

    monkeypatch.setattr(check, "_Device", NoWill)
    enforce(local_broker, without("RetainOwnStatus"))
    r = cli("check", THING, "--json")
    assert r.exit_code == errors.CHECK_FAILED, r.output
    steps = json.loads(r.stdout)["steps"]
    retained = steps[3]
    assert retained["step"].startswith("publish a retained status") and retained["ok"] is False
    assert "AUTH_ERROR" in retained["detail"] and "iot:RetainPublish on devices/%s/status" % THING in retained["detail"]
    # The check went on with a new connection, and the forbidden steps were still refused.
    assert [s["ok"] for s in steps[4:]] == [True, True]


def test_a_takeover_by_the_live_device_is_not_a_refusal(device, local_broker, cli, home):
    bundle = home / "devices" / THING
    live = Client(local_broker, THING, bundle / "device.crt.pem", bundle / "device.key.pem")
    live.client.reconnect_delay_set(min_delay=0.2, max_delay=0.2)  # a device that comes straight back
    assert live.connected
    try:
        r = cli("check", THING, "--json")
        assert r.exit_code == errors.CHECK_FAILED, r.output
        data = json.loads(r.stdout)
        assert data["device_online"] is True
        last = data["steps"][-1]
        assert last["verdict"] == check.TAKEOVER and last["ok"] is False
        assert "DUPLICATE_CLIENTID" in last["detail"] and "while the device is offline" in last["detail"]
        assert not any(s["ok"] and s["step"].endswith("is refused") for s in data["steps"]), \
            "a takeover must never pass as a refusal"
        assert "error: %s is online" % THING in r.stderr and "hint: run provision check while the device is offline" \
            in r.stderr
        time.sleep(1.0)
        assert live.client.is_connected(), "the check gave the session back to the device and stayed off"
    finally:
        live.close()


def test_without_lifecycle_events_an_interruption_is_not_called_a_refusal(device, local_broker, cli, monkeypatch):
    deaf = check._Observer._on_message

    def drop_lifecycle(self, client, userdata, msg):
        if not msg.topic.startswith(contract.LIFECYCLE_PREFIX):
            deaf(self, client, userdata, msg)

    monkeypatch.setattr(check._Observer, "_on_message", drop_lifecycle)
    monkeypatch.setattr(lifecycle, "WAIT_S", 0.5)
    r = cli("check", THING, "--json")
    assert r.exit_code == errors.CHECK_FAILED, r.output
    forbidden = [s for s in json.loads(r.stdout)["steps"] if s["step"].endswith("is refused")]
    assert len(forbidden) == 2 and not any(s["ok"] for s in forbidden)
    assert all("a refusal cannot be told from a takeover" in s["detail"] for s in forbidden)


def run_as_in_aws(broker, bundle_dir: Path) -> list:
    """The check's steps as it runs them against AWS: only the lifecycle events to go by, no service
    that could see what was delivered (the local listener stands in for the IAM one)."""
    listener = check._Observer(broker, THING)
    try:
        cfg = json.loads((bundle_dir / "config.json").read_text())
        return check._Check(bundle_dir, THING, cfg["mqtt"]["host"], cfg["mqtt"]["port"], listener.events,
                            observer=None).run()
    finally:
        listener.close()


def test_as_in_aws_the_refusals_are_told_by_their_events(device, local_broker, home):
    steps = run_as_in_aws(local_broker, home / "devices" / THING)
    assert [s["ok"] for s in steps] == [True] * 5, steps
    assert steps[2]["detail"] == "PUBACK, and the connection still up 1 s later"
    assert all("AUTH_ERROR" in s["detail"] for s in steps[3:])


def test_as_in_aws_a_policy_that_allows_too_much_fails_the_check(device, local_broker, home):
    doc = policy.document()
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    by_sid["PublishOwnTopics"]["Resource"].append("arn:aws:iot:*:*:topic/devices/*/telemetry")
    by_sid["SubscribeOwnCommands"]["Resource"] = "arn:aws:iot:*:*:topicfilter/devices/*/cmd"
    enforce(local_broker, doc)
    steps = run_as_in_aws(local_broker, home / "devices" / THING)
    by_name = {s["step"]: s for s in steps}
    sub = by_name["subscribe to devices/%s/cmd is refused" % check.OTHER]
    pub = by_name["publish to devices/%s/telemetry is refused" % check.OTHER]
    assert sub["ok"] is False and "the policy allows it" in sub["detail"]
    assert pub["ok"] is False and "the policy allows it" in pub["detail"]
