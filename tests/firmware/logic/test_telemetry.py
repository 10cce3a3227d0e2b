# Messages built from the rings are valid JSON with the fields the schema needs.
# Runs under CPython and MicroPython; the schema itself is checked by tests/firmware/test_schemas.py.
import json

from motorguard import controller
from motorguard import telemetry
from motorguard.telemetry import Clock, Events, Samples

HEAD = b'{"v":1,"device":"m1","boot":"0a0b0c0d","fw":"0.1.0","uptime_s":5,"heap_free":1000,"rssi":-50'


def render(ring, k, c):
    return json.loads(b"".join(ring.pieces(k, HEAD, ring.box.dropped, c)))


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
        s.record(c, 250 + 10 * i, None if i == 2 else 500, 900, 60, controller.RUNNING)
        c.advance(1000)
    msg = render(s, 0, c)
    assert msg["seq"] == 0 and msg["dropped"] == 0 and len(msg["samples"]) == 4
    first = msg["samples"][0]
    assert first["time"] == (1795370000 - 2 + 2) * 1000 + 500
    assert first["temperature_c"] == 25.0 and first["current_a"] == 0.5
    assert first["position"] == 90.0 and first["state"] == "RUNNING"
    assert msg["samples"][2]["current_a"] is None
    assert msg["samples"][1]["temperature_c"] == 26.0
    assert msg["samples"][3]["time"] - first["time"] == 3000


def test_every_position_and_state_comes_back_as_recorded():
    # Position and state share one 16-bit slot a sample: neither may leak into the other.
    c = clock()
    cases = [(p, st) for p in (0, 1, 905, 1799, 1800) for st in range(len(controller.STATE_NAMES))]
    s = Samples(len(cases), len(cases))
    for p, st in cases:
        s.record(c, 250, 500, p, 180, st)
    got = [(round(x["position"] * 10), x["state"], x["speed"]) for x in render(s, 0, c)["samples"]]
    assert got == [(p, controller.STATE_NAMES[st], 180) for p, st in cases]


def test_sample_times_survive_the_uptime_wrap_of_the_ring():
    # The ring keeps uptime seconds modulo 65536: samples recorded on both sides of that
    # wrap, and rendered up to the oldest age config allows, keep their exact epoch times.
    for start_s in (65530, 100 * 86400 - 3, 3 * 65536 - 1):
        c = Clock()
        c.sync(1795370000)
        c.advance(start_s * 1000 + 250)
        epoch_of_first = (1795370000 + start_s) * 1000 + 250
        s = Samples(8, 4)
        for i in range(8):
            s.record(c, 250, 500, 900, 60, controller.RUNNING)
            c.advance(1000)
        for wait_s in (0, 600, 65535 - 8):  # rendered later: right after, 10 min, the oldest allowed
            later = Clock()
            later.sync(1795370000)
            later.advance((start_s + 8 + wait_s) * 1000 + 250)
            times = [x["time"] for k in (0, 1) for x in render(s, k, later)["samples"]]
            assert times == [epoch_of_first + 1000 * i for i in range(8)], (start_s, wait_s, times)


def test_events_message():
    c = clock()
    e = Events(8)
    e.record(c, controller.EV_BOOT, 0, controller.STOPPED, None, None, b"power_on")
    e.record(c, controller.EV_FAULT, controller.R_COMBINED, controller.FAULT, 355, 2000)
    boot = render(e, 0, c)
    assert boot["event"] == "BOOT" and boot["detail"] == "power_on" and "reason" not in boot
    fault = render(e, 1, c)
    assert fault["event"] == "FAULT" and fault["reason"] == "overtemp_overcurrent"
    assert fault["temperature_c"] == 35.5 and fault["current_a"] == 2.0 and fault["seq"] == 1
    assert boot["temperature_c"] is None


def test_negative_readings_format():
    c = clock()
    e = Events(4)
    e.record(c, controller.EV_STOPPED, 0, controller.STOPPED, -55, -120)
    msg = render(e, 0, c)
    assert msg["temperature_c"] == -5.5 and msg["current_a"] == -0.12


def widest_clock():
    c = Clock()
    c.sync(9999999999 - 1)  # the widest epoch before the year 2286
    c.advance(999999 * 1000 + 999)
    return c


def widest_head():
    return telemetry.head(b"x" * 128, b"ffffffff", b"9" * 32, 4294967295, 9999999, -127)


def test_every_piece_is_small():
    # The point of rendering in pieces: no piece needs a large block of heap.
    c = clock()
    s = Samples(60, 30)
    for _ in range(30):
        s.record(c, -200, -1000, 1800, 180, controller.RUNNING)
    head = telemetry.head(b"x" * 128, b"ffffffff", b"9" * 32, 4294967295, 9999999, -127)
    pieces = list(s.pieces(0, head, 0, c))
    assert max(len(p) for p in pieces) == len(head) and len(head) < 400
    assert max(len(p) for p in pieces[1:]) < 160
    assert len(json.loads(b"".join(pieces))["samples"]) == 30


def test_a_retransmission_renders_the_same_bytes():
    c = clock()
    s = Samples(8, 2)
    for _ in range(4):
        s.record(c, 250, 500, 900, 60, controller.STOPPED)
    first = b"".join(s.pieces(1, HEAD, 0, c))
    s.record(c, 999, 999, 999, 9, controller.FAULT)  # the ring moves on meanwhile
    assert b"".join(s.pieces(1, HEAD, 0, c)) == first


def test_an_overwritten_batch_is_never_rendered_under_its_old_number():
    c = clock()
    s = Samples(4, 2)  # two batches
    for _ in range(6):  # the third batch overwrites the first
        s.record(c, 250, 500, 900, 60, controller.STOPPED)
    try:
        b"".join(s.pieces(0, HEAD, 0, c))
    except telemetry.Overwritten:
        return
    raise AssertionError("batch 0 rendered after it was overwritten")
