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


def test_every_value_the_settings_allow_comes_back_exactly():
    # The ring packs a sample into 8 bytes (telemetry.REC): every field at both ends of its range,
    # implausible readings, and the gaps two samples can have (a tick's catch-up of 0 ms up to
    # the longest the config allows) come back exactly, at an uptime of 100 days too.
    temps = (None, -999, -1, 0, 1, 3009)
    currents = (None, -16000, -1, 0, 1, 16000)
    gaps = (1000, 0, 1, 999, 1001, 65535, 7)
    cases = []
    for n in range(60):
        cases.append((gaps[n % len(gaps)], temps[n % len(temps)], currents[(n // 2) % len(currents)],
                      (0, 1, 255, 256, 1799, 1800)[n % 6], n % len(controller.STATE_NAMES), (0, 1, 127, 128, 179, 180)[(n // 3) % 6]))
    for start_ms in (2500, 100 * 86400 * 1000 + 999):
        c = Clock()
        c.sync(1795370000)
        c.advance(start_ms)
        s = Samples(len(cases), 20)
        want = []
        for gap, temp, cur, pos, st, speed in cases:
            c.advance(gap)
            s.record(c, temp, cur, pos, speed, st)
            want.append((c.now_ms(), temp, cur, pos, controller.STATE_NAMES[st], speed))
        got = []
        for k in range(3):
            for x in render(s, k, c)["samples"]:
                t = x["temperature_c"]
                a = x["current_a"]
                got.append((x["time"], None if t is None else round(t * 10), None if a is None else round(a * 1000),
                            round(x["position"] * 10), x["state"], x["speed"]))
        assert got == want, [(g, w) for g, w in zip(got, want) if g != w][:3]


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


def test_the_default_ring_holds_15_minutes_offline_and_the_batch_in_flight():
    # The README's promise: a board offline 15 minutes at the default cadence, running (so
    # nothing goes to flash), loses no sample, even when the link went with a batch unacknowledged.
    from motorguard.config import DEFAULTS

    tel = DEFAULTS["telemetry"]
    s = Samples(tel["buffer_samples"], tel["samples_per_message"])
    c = clock()
    batch = tel["samples_per_message"]
    for _ in range(batch):
        s.record(c, 250, 500, 900, 60, controller.RUNNING)
        c.advance(tel["sample_period_ms"])
    s.box.sent(0)  # published; the link goes before its PUBACK
    for _ in range(15 * 60 * 1000 // tel["sample_period_ms"]):
        s.record(c, 250, 500, 900, 60, controller.RUNNING)
        c.advance(tel["sample_period_ms"])
    assert s.box.dropped == 0 and s.box.base == 0
    times = [x["time"] for k in range(s.box.complete()) for x in render(s, k, c)["samples"]]
    assert len(times) == batch + 900 and times == sorted(set(times))


def test_every_event_field_comes_back_as_recorded():
    # An event packs into 12 bytes (telemetry.EV_REC): every code, state and reason, readings at
    # both ends of their range or implausible, and an uptime of 400 days come back exactly.
    cases = []
    for code in range(1, len(controller.EVENT_NAMES)):
        for st in range(len(controller.STATE_NAMES)):
            r = (code + st) % len(controller.REASON_NAMES)
            cases.append((code, r, st, (None, -999, 3009, 0)[code % 4], (None, -16000, 16000, -1)[st % 4]))
    e = Events(len(cases))
    c = Clock()
    c.sync(1795370000)
    c.advance(400 * 86400 * 1000 + 7)
    for code, r, st, temp, cur in cases:
        e.record(c, code, r, st, temp, cur, b"x" if code == 2 else None)
    for k, (code, r, st, temp, cur) in enumerate(cases):
        msg = render(e, k, c)
        assert msg["time"] == c.now_ms() and msg["event"] == controller.EVENT_NAMES[code], msg
        assert msg["state"] == controller.STATE_NAMES[st]
        got_t = msg["temperature_c"]
        got_c = msg["current_a"]
        assert (None if got_t is None else round(got_t * 10)) == temp, msg
        assert (None if got_c is None else round(got_c * 1000)) == cur, msg
        if code == controller.EV_FAULT:
            assert msg["reason"] == controller.REASON_NAMES[r]
        assert ("detail" in msg) == (code == 2)
