"""The simulator cannot drift from the firmware: every message a simulated device makes, in every
situation the plant and the command rules produce, passes the cloud's own validation against
schemas/v1 (cloud/domain/messages.py), and commands are answered under the firmware's rules."""

from __future__ import annotations

import json
import time

import pytest

import contract
from cloud.domain import messages
from sim import device
from sim.device import Device, Settings


def _all_messages(d: Device):
    for q in d.queues.values():
        for m in q:
            yield m


def _check(d: Device):
    n = 0
    for m in _all_messages(d):
        thing, kind = contract.parse_topic(m.topic)
        body = json.loads(m.payload)
        assert thing == d.thing == body["device"]
        assert messages.problems(contract.MESSAGE_OF_TOPIC[kind], body) is None, (kind, body)
        ok, why = messages.check(kind, body, thing, int(time.time() * 1000)) if kind in contract.INGESTED_KINDS \
            else (True, None)
        assert ok, (kind, why)
        n += 1
    assert messages.problems("status", json.loads(d.status(True))) is None
    topic, will, qos, retain = d.will()
    assert topic == contract.topic(d.thing, contract.STATUS) and qos == 1 and retain
    assert json.loads(will)["online"] is False
    return n


def test_telemetry_events_and_faults_are_schema_valid_with_firmware_cadence():
    t0 = int(time.time() * 1000) - 3_600_000
    # a fault rate high enough that an hour shows every state change
    d = Device("sim-00001", Settings({"SIM_FAULTS_PER_HOUR": "30"}), seed=7, t_ms=t0)
    d.advance(t0 + 3_600_000)
    tel = [json.loads(m.payload) for m in d.queues["telemetry"]]
    assert len(tel) == device.BUFFER_MESSAGES  # the ring holds 930 samples; the rest was dropped and counted
    assert all(len(t["samples"]) == 30 for t in tel)
    newest = 120 - 1  # an hour at 1 Hz: 120 messages of 30 samples, the newest kept
    assert [t["seq"] for t in tel] == list(range(newest - device.BUFFER_MESSAGES + 1, newest + 1))
    assert tel[-1]["dropped"] >= (newest - device.BUFFER_MESSAGES) * 30  # counted as the ring drops
    assert {t["boot"] for t in tel} == {d.boot}
    gaps = {b["time"] - a["time"] for t in tel for a, b in zip(t["samples"], t["samples"][1:])}
    assert gaps == {1000}
    events = [json.loads(m.payload)["event"] for m in d.queues["events"]]
    assert "FAULT" in events and "FAULT_CLEARED" in events and "STARTED" in events
    assert _check(d) > 20


def test_commands_follow_the_firmware_rules():
    d = Device("sim-00002", Settings({"SIM_REMOTE_START": "1"}), seed=1)
    now = int(time.time() * 1000)
    d.advance(now + 3000)  # the operator has started it
    cmd = lambda **kw: json.dumps(dict({"v": 2, "id": "c1", "issued_at": now + 3000, "cmd": "set_speed",
                                        "speed": 90}, **kw)).encode()
    assert d.command(cmd(), retained=True, t_ms=now + 3000)["result"] == "retained"
    assert d.command(cmd(), retained=False, t_ms=now + 3000)["ok"] is True
    assert d.command(cmd(), retained=False, t_ms=now + 3000)["result"] == "duplicate"
    assert d.command(cmd(id="c2", issued_at=now - 20000), False, now + 3000)["result"] == "stale"
    assert d.command(cmd(id="c3", issued_at=now + 9000), False, now + 3000)["result"] == "from_future"
    assert d.command(cmd(id="c4", v=1), False, now + 3000)["result"].startswith("unsupported_version")
    assert d.command(cmd(id="c5", speed=500), False, now + 3000)["result"].startswith("bad_speed")
    assert d.command(b"not json", False, now + 3000)["result"] == "not_json"
    stop = d.command(json.dumps({"v": 2, "id": "s1", "issued_at": now, "cmd": "stop"}).encode(), True, now + 4000)
    assert stop["ok"] and stop["state"] == "STOPPED"  # a stop is never refused, retained or not
    late = d.command(json.dumps({"v": 2, "id": "c6", "issued_at": now + 3500, "cmd": "start"}).encode(), False,
                     now + 4500)
    assert late["result"] == "stopped_since_issued"
    assert d.command(json.dumps({"v": 2, "id": "c7", "issued_at": now + 7000, "cmd": "start"}).encode(), False,
                     now + 7000)["ok"]
    # the acks go out first, oldest first, and each is schema-valid
    assert d.queues["ack"][0].payload and _check(d)
    no_remote = Device("sim-00003", seed=2)
    r = no_remote.command(json.dumps({"v": 2, "id": "x", "issued_at": now + 5000, "cmd": "start"}).encode(), False,
                          now + 5000)
    assert r["result"] == "remote_start_disabled"


def test_bad_settings_are_refused_with_the_variable_named():
    with pytest.raises(ValueError, match="SIM_SAMPLE_PERIOD_MS"):
        Settings({"SIM_SAMPLE_PERIOD_MS": "fast"})
    with pytest.raises(ValueError, match="thing name"):
        Device("no spaces allowed")
