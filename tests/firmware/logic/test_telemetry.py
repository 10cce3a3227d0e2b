# Messages built from the rings are valid JSON with the fields the schema needs.
# Runs under CPython and MicroPython; the schema itself is checked by tests/firmware/test_schemas.py.
import json

from motorguard import controller as C
from motorguard.telemetry import Clock, Events, Samples

HEAD = '{"v":1,"device":"m1","boot":"0a0b0c0d","fw":"0.1.0","uptime_s":5,"heap_free":1000,"rssi":-50'


def clock():
    c = Clock()
    c.advance(2500)
    c.sync(1795370000)
    return c


def test_clock_keeps_small_ints():
    c = Clock()
    for _ in range(1000):
        c.advance(7)
    assert (c.up_s, c.up_ms) == (7, 0)


def test_samples_message():
    c = clock()
    s = Samples(40, 4)
    for i in range(4):
        s.record(c, 250 + 10 * i, None if i == 2 else 500, 900, 60, C.RUNNING)
        c.advance(1000)
    msg = json.loads(s.message(0, HEAD, c))
    assert msg["seq"] == 0 and msg["dropped"] == 0 and len(msg["samples"]) == 4
    first = msg["samples"][0]
    assert first["time"] == (1795370000 - 2 + 2) * 1000 + 500
    assert first["temperature_c"] == 25.0 and first["current_a"] == 0.5
    assert first["position"] == 90.0 and first["state"] == "RUNNING"
    assert msg["samples"][2]["current_a"] is None
    assert msg["samples"][1]["temperature_c"] == 26.0
    assert msg["samples"][3]["time"] - first["time"] == 3000


def test_events_message():
    c = clock()
    e = Events(8)
    e.record(c, C.EV_BOOT, 0, C.STOPPED, None, None, "power_on")
    e.record(c, C.EV_FAULT, C.R_COMBINED, C.FAULT, 355, 2000)
    boot = json.loads(e.message(0, HEAD, c))
    assert boot["event"] == "BOOT" and boot["detail"] == "power_on" and "reason" not in boot
    fault = json.loads(e.message(1, HEAD, c))
    assert fault["event"] == "FAULT" and fault["reason"] == "overtemp_overcurrent"
    assert fault["temperature_c"] == 35.5 and fault["current_a"] == 2.0 and fault["seq"] == 1
    assert boot["temperature_c"] is None


def test_negative_readings_format():
    c = clock()
    e = Events(4)
    e.record(c, C.EV_STOPPED, 0, C.STOPPED, -55, -120)
    msg = json.loads(e.message(0, HEAD, c))
    assert msg["temperature_c"] == -5.5 and msg["current_a"] == -0.12
