"""What the firmware builds is valid against the versioned schemas the cloud uses."""

import json

import pytest

import contract
from cloud.domain import messages
from motorguard import VERSION
from motorguard import controller
from motorguard import telemetry

HEAD = telemetry.head(b"motor-1", b"0a0b0c0d", VERSION.encode(), 42, 51234, -61)


def render(ring, k, clock):
    return json.loads(b"".join(ring.pieces(k, HEAD, ring.box.dropped, clock)))


def synced_clock():
    clock = telemetry.Clock()
    clock.advance(3000)
    clock.sync(1795370000)
    return clock


def test_every_schema_is_valid_draft_2020_12():
    for kind in contract.MESSAGE_KINDS:
        assert messages.validator(kind) is not None


def test_telemetry_batch_including_implausible_readings():
    clock = synced_clock()
    ring = telemetry.Samples(40, 10)
    for i in range(10):
        ring.record(clock, None if i == 3 else 250 + i, -40 if i == 4 else 800, 1799, 60, i % 3)
        clock.advance(1000)
    msg = render(ring, 0, clock)
    assert messages.errors("telemetry", msg) == []
    assert msg["samples"][3]["temperature_c"] is None


@pytest.mark.parametrize("code", range(1, len(controller.EVENT_NAMES)))
def test_every_event_kind(code):
    clock = synced_clock()
    ring = telemetry.Events(4)
    reason = controller.R_COMBINED if code == controller.EV_FAULT else controller.R_NONE
    ring.record(clock, code, reason, controller.FAULT if code == controller.EV_FAULT else controller.STOPPED, 345, 1800, b"power_on" if code == controller.EV_BOOT else None)
    msg = render(ring, 0, clock)
    assert messages.errors("event", msg) == []


@pytest.mark.parametrize("reason", range(1, len(controller.REASON_NAMES)))
def test_every_fault_reason_is_in_the_schema(reason):
    clock = synced_clock()
    ring = telemetry.Events(4)
    ring.record(clock, controller.EV_FAULT, reason, controller.FAULT, None, None)
    assert messages.errors("event", render(ring, 0, clock)) == []


def test_status_and_ack():
    for online in (True, False):
        assert messages.errors("status", json.loads(telemetry.status_message("motor-1", "0a0b0c0d", "0.1.0", online))) == []
    for result in controller.REFUSAL_NAMES:
        ack = telemetry.ack_message("motor-1", "0a0b0c0d", "0.1.0", "c-1", "start", result == "ok", result, controller.STOPPED, 60)
        assert messages.errors("ack", json.loads(ack)) == []


def test_schema_rejects_what_it_should():
    clock = synced_clock()
    ring = telemetry.Events(4)
    ring.record(clock, controller.EV_FAULT, controller.R_OVERTEMP, controller.FAULT, 700, 100)
    msg = render(ring, 0, clock)
    del msg["reason"]
    assert any("reason" in e for e in messages.errors("event", msg))
    fresh = {"v": 2, "id": "x", "issued_at": 1795370000000}
    assert messages.errors("command", dict(fresh, cmd="set_speed"))  # speed required
    assert messages.errors("command", dict(fresh, cmd="explode"))
    assert messages.errors("command", {"cmd": "start", "id": "x"})  # a version 1 command: refused
    assert messages.errors("command", dict(fresh, cmd="start")) == []
    assert messages.errors("command", dict(fresh, cmd="set_speed", speed=180)) == []
    assert messages.errors("command", dict(fresh, cmd="set_speed", speed=181))


def test_state_and_event_names_match_the_schema():
    # One source of truth: the firmware's names are exactly the schema's enums.
    event_schema = json.loads((messages.schema_dir() / "event.schema.json").read_text())
    assert set(event_schema["properties"]["state"]["enum"]) == set(controller.STATE_NAMES)
    assert set(event_schema["properties"]["event"]["enum"]) == set(controller.EVENT_NAMES) - {"NONE"}
    assert set(event_schema["properties"]["reason"]["enum"]) == set(controller.REASON_NAMES) - {"none"}
