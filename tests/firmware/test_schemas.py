"""What the firmware builds is valid against the versioned schemas the cloud uses."""

import json

import pytest

from cloud import schemas
from motorguard import config as cfgmod
from motorguard import controller as C
from motorguard import telemetry as T

HEAD = T.head(b"motor-1", b"0a0b0c0d", cfgmod.VERSION.encode(), 42, 51234, -61)


def render(ring, k, clock):
    return json.loads(T.render(ring.pieces(k, HEAD, ring.box.dropped, clock)))


def synced_clock():
    clock = T.Clock()
    clock.advance(3000)
    clock.sync(1795370000)
    return clock


def test_every_schema_is_valid_draft_2020_12():
    for kind in schemas.KINDS:
        assert schemas.validator(kind) is not None


def test_telemetry_batch_including_implausible_readings():
    clock = synced_clock()
    ring = T.Samples(40, 10)
    for i in range(10):
        ring.record(clock, None if i == 3 else 250 + i, -40 if i == 4 else 800, 1799, 60, i % 3)
        clock.advance(1000)
    msg = render(ring, 0, clock)
    assert schemas.errors("telemetry", msg) == []
    assert msg["samples"][3]["temperature_c"] is None


@pytest.mark.parametrize("code", range(1, len(C.EVENT_NAMES)))
def test_every_event_kind(code):
    clock = synced_clock()
    ring = T.Events(4)
    reason = C.R_COMBINED if code == C.EV_FAULT else C.R_NONE
    ring.record(clock, code, reason, C.FAULT if code == C.EV_FAULT else C.STOPPED, 345, 1800, b"power_on" if code == C.EV_BOOT else None)
    msg = render(ring, 0, clock)
    assert schemas.errors("event", msg) == []


@pytest.mark.parametrize("reason", range(1, len(C.REASON_NAMES)))
def test_every_fault_reason_is_in_the_schema(reason):
    clock = synced_clock()
    ring = T.Events(4)
    ring.record(clock, C.EV_FAULT, reason, C.FAULT, None, None)
    assert schemas.errors("event", render(ring, 0, clock)) == []


def test_status_and_ack():
    for online in (True, False):
        assert schemas.errors("status", json.loads(T.status_message("motor-1", "0a0b0c0d", "0.1.0", online))) == []
    for result in C.REFUSAL_NAMES:
        ack = T.ack_message("motor-1", "0a0b0c0d", "0.1.0", "c-1", "start", result == "ok", result, C.STOPPED, 60)
        assert schemas.errors("ack", json.loads(ack)) == []


def test_schema_rejects_what_it_should():
    clock = synced_clock()
    ring = T.Events(4)
    ring.record(clock, C.EV_FAULT, C.R_OVERTEMP, C.FAULT, 700, 100)
    msg = render(ring, 0, clock)
    del msg["reason"]
    assert any("reason" in e for e in schemas.errors("event", msg))
    fresh = {"v": 2, "id": "x", "issued_at": 1795370000000}
    assert schemas.errors("command", dict(fresh, cmd="set_speed"))  # speed required
    assert schemas.errors("command", dict(fresh, cmd="explode"))
    assert schemas.errors("command", {"cmd": "start", "id": "x"})  # a version 1 command: refused
    assert schemas.errors("command", dict(fresh, cmd="start")) == []
    assert schemas.errors("command", dict(fresh, cmd="set_speed", speed=180)) == []
    assert schemas.errors("command", dict(fresh, cmd="set_speed", speed=181))


def test_state_and_event_names_match_the_schema():
    # One source of truth: the firmware's names are exactly the schema's enums.
    event_schema = json.loads((schemas.SCHEMA_DIR / "event.schema.json").read_text())
    assert set(event_schema["properties"]["state"]["enum"]) == set(C.STATE_NAMES)
    assert set(event_schema["properties"]["event"]["enum"]) == set(C.EVENT_NAMES) - {"NONE"}
    assert set(event_schema["properties"]["reason"]["enum"]) == set(C.REASON_NAMES) - {"none"}
