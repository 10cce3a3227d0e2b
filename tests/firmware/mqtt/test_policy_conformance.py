"""Every packet the shipped firmware sends, held to the device policy AWS IoT Core gets.

The virtual ESP32 runs the files that go onto the board through a whole life against the local IoT
Core: connect with its retained Will, the retained "online" status, the BOOT and state events,
telemetry, commands and their acks, an outage with a replay of the buffered telemetry, a broker
restart and the reconnects. The gateway records the header of every packet the device sends
(LocalBroker.record); each one is then judged, independently of the gateway's own verdict, by
provisioning/policy_eval.py against provisioning/policy.py's document. A firmware change that sends
something the policy does not allow (a topic, a retained flag, a subscription, a persistent session)
fails here, not in the field, where AWS would close the connection on every connect."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import contract
from cloud.local.broker import LocalBroker, free_port
from provisioning import policy
from provisioning.policy_eval import Context, connect_attributes, connect_requests, evaluate_all, publish_requests
from vesp32.harness import VirtualESP32

from tests.firmware.mqtt.on_broker import Cloud, device_dir, past_boot

ROOT = Path(__file__).resolve().parents[3]
THING = "conform-1"

pytestmark = pytest.mark.broker


def requests_of(record: dict) -> list:
    """The policy requests one recorded packet makes, as AWS IoT Core would evaluate them."""
    kind = record["type"]
    if kind == "CONNECT":
        return connect_requests(record["client_id"], record["will_topic"], record["will_retain"])
    if kind == "PUBLISH":
        return publish_requests(record["topic"], record["retain"])
    if kind == "SUBSCRIBE":
        return [("iot:Subscribe", f) for f in record["filters"]]
    return []


def violations(records: list, doc: dict, thing: str) -> list:
    """Each recorded packet of `thing` that the policy document would refuse, with the reason."""
    out, attrs, client_id = [], frozenset(), thing
    for r in records:
        if r.get("client") != thing:
            continue
        if r["type"] == "CONNECT":
            attrs = connect_attributes(r["clean"], r["will_topic"] is not None)
            client_id = r["client_id"]
            if r["will_topic"] is not None and r["will_qos"] > 1:
                out.append((r, "a Will at QoS %d" % r["will_qos"]))
        if r["type"] == "PUBLISH" and r["qos"] > 1:
            out.append((r, "QoS %d" % r["qos"]))
        d = evaluate_all(doc, requests_of(r), Context(thing=thing, client_id=client_id, connect_attributes=attrs))
        if not d:
            out.append((r, d.reason))
    return out


def test_the_checker_refuses_what_the_policy_refuses():
    """The judge itself: packets a careless firmware change could send are each reported."""
    doc = policy.document()
    ok_connect = {"client": THING, "type": "CONNECT", "client_id": THING, "clean": True,
                  "will_topic": contract.topic(THING, contract.STATUS), "will_retain": True, "will_qos": 1}
    bad = [
        {"client": THING, "type": "PUBLISH", "topic": contract.topic(THING, contract.TELEMETRY), "qos": 1, "retain": True},
        {"client": THING, "type": "PUBLISH", "topic": contract.topic("other", contract.EVENTS), "qos": 1, "retain": False},
        {"client": THING, "type": "PUBLISH", "topic": contract.topic(THING, contract.EVENTS), "qos": 2, "retain": False},
        {"client": THING, "type": "SUBSCRIBE", "filters": ["devices/+/cmd"]},
        dict(ok_connect, clean=False),
        dict(ok_connect, will_topic=contract.topic(THING, contract.EVENTS)),
        dict(ok_connect, client_id="motor-else"),
    ]
    assert violations([ok_connect], doc, THING) == []
    for r in bad:
        assert len(violations([ok_connect, r], doc, THING)) == 1, r


@pytest.fixture
def recorded_broker(tmp_path):
    b = LocalBroker.with_new_pki(tmp_path / "broker", free_port())
    b.record = tmp_path / "packets.jsonl"
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_every_packet_of_a_whole_life_is_allowed_by_the_device_policy(tmp_path, recorded_broker):
    broker = recorded_broker
    cloud = Cloud(broker)
    vm = VirtualESP32(device_dir(tmp_path, broker, THING), firmware_dir=ROOT / "firmware",
                      broker="%s:%d" % (broker.host, broker.port))
    vm.start()
    try:
        vm.wait_for_line("MG NET online", 15)
        boot = cloud.event("BOOT")["boot"]
        cloud.wait(lambda c: [m for m in c.of("telemetry") if m["boot"] == boot], 8, "telemetry")
        past_boot(vm)
        cloud.command(THING, id="k1", cmd="start")
        assert cloud.ack("k1")["ok"] is True
        cloud.command(THING, id="k2", cmd="set_speed", speed=90)
        cloud.ack("k2")
        cloud.command(THING, id="k3", cmd="stop")
        cloud.ack("k3")
        vm.wait_for_state("STOPPED", 3)
        # An outage with the motor stopped: telemetry is buffered, then replayed on the reconnect.
        mark = vm.mark()
        vm.network("drop")
        vm.wait_for_line("MG NET offline", 10, since=mark)
        time.sleep(4.0)
        vm.network("pass")
        vm.wait_for_line("MG NET online", 15, since=mark)
        cloud.wait(lambda c: len([m for m in c.of("status") if m["online"]]) >= 2, 10, "the second online status")
        time.sleep(1.0)
        # The broker restarts under the board: it reconnects once more.
        broker.stop()
        mark = vm.mark()
        vm.wait_for_line("MG NET offline", 10, since=mark)
        cloud.restart_broker(broker, vm)
        cloud.wait(lambda c: len([m for m in c.of("status") if m["online"]]) >= 3, 10, "the third online status")
        time.sleep(1.5)
    finally:
        vm.stop()
        cloud.close()
    records = [json.loads(line) for line in broker.record.read_text().splitlines()]
    mine = [r for r in records if r.get("client") == THING]
    kinds = {(r["type"], r.get("topic", "").rsplit("/", 1)[-1], r.get("retain")) for r in mine}
    connects = [r for r in mine if r["type"] == "CONNECT"]
    # The whole life was seen: three connects with the retained Will on the status topic, the retained
    # status, events, telemetry (the replay among it), acks, and the command subscription.
    assert len(connects) >= 3, connects
    assert all(c["will_topic"] == contract.topic(THING, contract.STATUS) and c["will_retain"] for c in connects)
    for needed in [("PUBLISH", "status", True), ("PUBLISH", "events", False), ("PUBLISH", "telemetry", False),
                   ("PUBLISH", "ack", False)]:
        assert needed in kinds, (needed, sorted(kinds))
    assert any(r["type"] == "SUBSCRIBE" for r in mine)
    second = mine.index(connects[1])
    assert len([r for r in mine[second:] if r.get("topic", "").endswith("/telemetry")]) >= 2, "no replay seen"
    # Each one allowed by the document AWS gets, and the gateway refused nothing.
    assert violations(records, policy.document(), THING) == []
    assert [r for r in records if r["type"] in ("DENIED", "REFUSED")] == []
    assert not cloud.invalid, cloud.invalid
