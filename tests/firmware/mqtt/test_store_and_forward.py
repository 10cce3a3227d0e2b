"""Store and forward (firmware/motorguard/backlog.py) on the virtual ESP32, whose file writes and
deletes stall the interpreter as the chip's flash does (vesp32/board/_vflash.py), through the real
broker: outages longer than the RAM ring holds lose nothing, with the motor stopped, running, or
the power cut in the middle or during a flash write; a full backlog reports exactly what it
dropped; events are not held up behind a drain.

The shipped settings (30 samples a message, a 930-sample RAM ring, the default backlog), sampled
every 50 ms instead of every second, so 30 s of outage is the 600 samples of a 10-minute one.
Judged from what the cloud receives (every message validated against schemas/v1)."""

from __future__ import annotations

import time

import pytest

from tests.cloud.waiting import waited
from tests.firmware.mqtt.on_broker import boards

pytestmark = pytest.mark.broker

SAMPLE_MS = 50
BATCH = 30


@pytest.fixture
def board(tmp_path, broker):
    with boards(tmp_path, broker, "sf-1", telemetry={"sample_period_ms": SAMPLE_MS}) as make:
        yield make


def of_boot(cloud, boot):
    """{seq: message} of one boot's telemetry (a batch sent twice is stored once, as in the cloud)."""
    return {m["seq"]: m for m in cloud.of("telemetry") if m["boot"] == boot}


def samples(msgs: dict) -> list:
    return [s for k in sorted(msgs) for s in msgs[k]["samples"]]


def assert_no_gap(times, period_ms=SAMPLE_MS):
    """One sample a period, none missing or repeated. A flash write stalls the board (with the motor
    stopped): the sample after it is late and the next one catches up, so a step may be short or
    long, but never a hole, and the count matches the span."""
    steps = [b - a for a, b in zip(times, times[1:])]
    assert steps and all(0 < d < 3 * period_ms for d in steps), [d for d in steps if not 0 < d < 3 * period_ms][:10]
    assert abs((times[-1] - times[0]) - period_ms * len(steps)) <= period_ms, (times[-1] - times[0], len(steps))


def boots(cloud) -> list:
    return [e["boot"] for e in cloud.of("events") if e["event"] == "BOOT"]


def outage(broker, vm, seconds):
    broker.stop()
    vm.wait_for_line("MG NET offline", 10)
    time.sleep(seconds)


def drained(cloud, boot, at_least, timeout=40):
    """Waits for seq 0..n of boot, n + 1 >= at_least messages, without gaps; returns them."""
    def done(c):
        msgs = of_boot(c, boot)
        return msgs if len(msgs) >= at_least and set(msgs) == set(range(max(msgs) + 1)) else None

    return cloud.wait(done, timeout, "%d messages of boot %s without gaps" % (at_least, boot))


def test_an_outage_longer_than_the_ram_ring_with_the_motor_stopped_loses_nothing(board, cloud, broker):
    """And an event during the drain is not held up behind it."""
    vm = board()
    vm.wait_for_line("MG NET online", 15)
    boot = cloud.event("BOOT")["boot"]
    outage(broker, vm, 50.0)  # 1,000 samples: the RAM ring holds 930; ~34 messages, drained at 20 a second
    t_back = time.time()
    cloud.restart_broker(broker, vm)
    vm.press("start")  # a STARTED event while the backlog drains
    started = cloud.wait(lambda c: [e for e in c.of("events") if e["event"] == "STARTED"], 10, "STARTED")[0]
    msgs = drained(cloud, boot, 1000 // BATCH + 2)
    assert cloud.received_at(started) < max(cloud.received_at(m) for m in msgs.values()), \
        "the event waited until the backlog was drained"
    vm.press("stop")
    got = samples(msgs)
    assert all(m["dropped"] == 0 for m in msgs.values())
    assert_no_gap([s["time"] for s in got])
    assert got[-1]["time"] >= (t_back - 1) * 1000, "the samples up to the broker's return are there"
    assert any("MG BACKLOG stored=" in l.text for l in vm.lines)
    # Drained and acknowledged: the keeper deletes the segments (the motor is stopped).
    assert waited(lambda: not list((vm.device_dir / "backlog").iterdir()), 10, step=0.1), "segments left on flash"
    assert not cloud.invalid, cloud.invalid


def test_an_outage_with_the_motor_running_loses_nothing_once_it_stops(board, cloud, broker):
    """Running, the board writes no flash and does not reconnect: the RAM ring holds the outage
    and the time until someone stops the motor. Here a 10-minute outage and 2 minutes more
    (30 s + 6 s at 20 Hz: 720 of its 930 samples), which then go on to flash and out."""
    vm = board()
    vm.wait_for_line("MG NET online", 15)
    boot = cloud.event("BOOT")["boot"]
    vm.press("start")
    vm.wait_for_state("RUNNING", 3)
    outage(broker, vm, 30.0)
    vm.network("drop")
    broker.start()  # the broker is back, the board still runs and waits
    time.sleep(6.0)
    writes_before = flash_writes(vm)
    assert writes_before == 0, "the board wrote flash while its motor ran"
    vm.press("stop")
    vm.wait_for_state("STOPPED", 3)
    vm.network("pass")
    vm.wait_for_line("MG NET online", 20)
    msgs = drained(cloud, boot, 720 // BATCH + 1)
    assert all(m["dropped"] == 0 for m in msgs.values())
    assert_no_gap([s["time"] for s in samples(msgs)])
    assert not cloud.invalid, cloud.invalid


def flash_writes(vm) -> int:
    """Segments the board has on flash now (a running board must not have written any)."""
    d = vm.device_dir / "backlog"
    return sum(f.stat().st_size for f in d.iterdir()) if d.exists() else 0


def test_a_power_cut_in_the_middle_of_an_outage_loses_nothing(board, cloud, broker):
    vm = board()
    vm.wait_for_line("MG NET online", 15)
    first = cloud.event("BOOT")["boot"]
    outage(broker, vm, 15.0)
    t_cut = time.time()
    vm.reboot()  # the power goes, and comes back, while the broker is still away
    time.sleep(10.0)
    cloud.restart_broker(broker, vm)
    second = cloud.wait(lambda c: [b for b in boots(c) if b != first], 20, "the second boot's BOOT event")[0]
    before = drained(cloud, first, 15000 // SAMPLE_MS // BATCH)
    got = samples(before)
    assert_no_gap([s["time"] for s in got])
    # Stored up to the cut. The board's clock is NTP's, in whole seconds: up to 1 s off this host's;
    # sampled faster than 1 Hz, the board writes once a second, so up to 1 s more is not on flash yet.
    assert got[-1]["time"] >= t_cut * 1000 - 2000 - 2 * SAMPLE_MS - 250, (got[-1]["time"], t_cut)
    after = drained(cloud, second, 10000 // SAMPLE_MS // BATCH)
    assert_no_gap([s["time"] for s in samples(after)])
    assert all(m["dropped"] == 0 for m in list(before.values()) + list(after.values()))
    assert not cloud.invalid, cloud.invalid


@pytest.mark.parametrize("cut_after", [7, 26, 400])  # in the header, at its end, a few entries in
def test_a_power_cut_during_a_flash_write_keeps_what_was_stored_before_it(board, cloud, broker, cut_after):
    """The power goes cut_after bytes into the next writes (a header is 26 bytes, a sample 12):
    what reached flash before the torn write is delivered intact, the torn part is never read as a
    sample, and the next boot goes on."""
    vm = board()
    vm.wait_for_line("MG NET online", 15)
    first = cloud.event("BOOT")["boot"]
    outage(broker, vm, 6.0)
    mark = vm.mark()
    vm.cut_power_in_flash_write(cut_after)
    vm.wait_for_line("MG BOOT", 15, since=mark)
    time.sleep(3.0)
    cloud.restart_broker(broker, vm)
    cloud.wait(lambda c: len(boots(c)) >= 2, 20, "the second boot")
    time.sleep(4.0)
    msgs = of_boot(cloud, first)
    got = samples(msgs)
    assert set(msgs) == set(range(max(msgs) + 1)), sorted(msgs)
    assert_no_gap([s["time"] for s in got])
    assert len(got) >= 6000 // SAMPLE_MS - 2 * BATCH, len(got)  # the outage's samples, up to the torn write
    assert not cloud.invalid, cloud.invalid


def test_a_full_backlog_drops_its_oldest_samples_and_says_exactly_how_many(board, cloud, broker):
    """2 samples a message: the smallest backlog allowed is 2 segments of 32 messages, 128
    samples; a 15 s outage records 300."""
    vm = board(telemetry={"samples_per_message": 2, "backlog_samples": 128})
    vm.wait_for_line("MG NET online", 15)
    boot = cloud.event("BOOT")["boot"]
    outage(broker, vm, 15.0)
    cloud.restart_broker(broker, vm)
    events = cloud.wait(lambda c: [e for e in c.of("events") if e["event"] == "BACKLOG_DROPPED"], 20,
                        "BACKLOG_DROPPED")
    time.sleep(6.0)
    msgs = of_boot(cloud, boot)
    reported = sum(int(e["detail"].split()[0]) for e in cloud.of("events") if e["event"] == "BACKLOG_DROPPED")
    missing = set(range(max(msgs) + 1)) - set(msgs)
    # Exactly what it dropped unacknowledged: a batch in flight when the broker went (at most
    # max_inflight, 2) may have reached the cloud although its PUBACK never came back.
    assert missing and 2 * len(missing) <= reported <= 2 * (len(missing) + 2), (reported, sorted(missing))
    assert max(m["dropped"] for m in msgs.values()) == reported
    oldest_kept = min(k for k in msgs if k > min(missing))
    assert all(k < oldest_kept for k in missing), "only the oldest samples may go"
    assert events[0]["state"] == "STOPPED"
    assert not cloud.invalid, cloud.invalid
