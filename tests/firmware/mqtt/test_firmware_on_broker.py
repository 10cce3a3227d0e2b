"""The shipped firmware on the virtual ESP32 against a real Mosquitto with TLS client
certificates made at test time: what the cloud sees, what the device does with commands,
and what happens to the offline buffer and the motor when the broker goes away.

Every message the service identity receives is validated against schemas/v1.
"""

from __future__ import annotations

import time

import pytest

from tests.firmware.mqtt.on_broker import BATCH, SAMPLE_MS, Cloud, boards, past_boot


@pytest.fixture
def board(tmp_path, broker):
    with boards(tmp_path, broker, "it-1") as make:
        yield make


def assert_evenly_spaced(times):
    """One sample per period, none missing or repeated (a sample's time is its control tick's,
    so it may sit a few ticks off the nominal grid)."""
    steps = [b - a for a, b in zip(times, times[1:])]
    # A late tick (a TLS handshake blocks the VM for tens of ms) delays one sample and the
    # next one catches up: no step is a missing or a repeated sample, and the grid holds.
    assert steps and all(SAMPLE_MS // 4 < d < SAMPLE_MS * 2 for d in steps), steps
    assert abs((times[-1] - times[0]) - SAMPLE_MS * len(steps)) <= SAMPLE_MS, steps


def telemetry_seqs(cloud: Cloud, boot: str) -> set[int]:
    return {m["seq"] for m in cloud.of("telemetry") if m["boot"] == boot}


def test_connects_publishes_valid_messages_and_obeys_commands(board, cloud):
    vm = board()
    vm.wait_for_line("MG NET online", 15)
    boot = cloud.event("BOOT")
    assert boot["state"] == "STOPPED" and boot["device"] == "it-1"
    status = cloud.wait(lambda c: [s for s in c.of("status") if s["online"]], 5, "status online")
    assert status[-1]["boot"] == boot["boot"]
    tel = cloud.wait(lambda c: c.of("telemetry"), 5, "telemetry")[0]
    assert len(tel["samples"]) == BATCH and tel["dropped"] == 0
    assert_evenly_spaced([s["time"] for s in tel["samples"]])

    past_boot(vm)
    cloud.command("it-1", id="c1", cmd="start")
    ack = cloud.ack("c1")
    assert ack["ok"] is True, ack
    vm.wait_for_state("RUNNING", 3)
    assert cloud.event("STARTED")["state"] == "RUNNING"
    vm.wait_until(lambda v: v.pwm_duty > 0, 2, "PWM on")

    cloud.command("it-1", id="c2", cmd="set_speed", speed=120)
    ack = cloud.ack("c2")
    assert ack["ok"] is True and ack["speed"] == 120

    cloud.command("it-1", id="c3", cmd="warp")
    assert cloud.wait(lambda c: [a for a in c.of("ack") if a["cmd"] == "invalid"], 5, "invalid-command ack")[0]["ok"] is False
    assert vm.state == "RUNNING"  # a bad command changes nothing

    # Overload while running: FAULT with its reason, then a remote start is refused while latched.
    vm.force_current(2.5)
    vm.force_temperature(40.0)
    fault = cloud.event("FAULT")
    assert fault["reason"] == "overtemp_overcurrent" and fault["state"] == "FAULT"
    assert vm.pwm_duty == 0
    cloud.command("it-1", id="c4", cmd="start")
    ack = cloud.ack("c4")
    assert ack["ok"] is False and ack["state"] == "FAULT"
    assert vm.state == "FAULT" and vm.pwm_duty == 0

    # A remote stop never resets a latched fault; only the local stop button does, once clear.
    cloud.command("it-1", id="c5", cmd="stop")
    cloud.ack("c5")
    assert vm.state == "FAULT"
    vm.press("stop")  # still overloaded: refused
    vm.wait_for_line("MG RESET_REFUSED", 3)
    vm.force_current(0.2)
    vm.force_temperature(25.0)
    time.sleep(0.3)
    vm.press("stop")
    vm.wait_for_state("STOPPED", 3)
    assert cloud.event("FAULT_CLEARED")["state"] == "STOPPED"
    assert not cloud.invalid, cloud.invalid


def test_broker_restart_loses_no_sample_and_never_restarts_the_motor(board, cloud, broker):
    vm = board()
    vm.wait_for_line("MG NET online", 15)
    boot = cloud.event("BOOT")["boot"]
    vm.press("start")
    vm.wait_for_state("RUNNING", 3)
    cloud.wait(lambda c: len(telemetry_seqs(c, boot)) >= 2, 10, "two telemetry messages")

    broker.stop()
    t_down = time.monotonic()
    vm.wait_for_line("MG NET offline", 10)
    # No TLS handshake (which blocks the VM) while the motor runs: reconnecting waits.
    vm.wait_for_line("MG NET deferred motor_running", 5)
    time.sleep(1.0)
    assert not any("wifi_up" in l.text or "NET error" in l.text
                   for l in vm.lines if l.t_ns > vm.wait_for_line("MG NET deferred", 1).t_ns)
    # The stop button works while offline; nothing may start the motor again afterwards.
    vm.press("stop")
    vm.wait_for_state("STOPPED", 3)
    time.sleep(max(0.0, 9.0 - (time.monotonic() - t_down)))  # 90 samples: three full messages buffered
    sent_before = max(telemetry_seqs(cloud, boot))
    cloud.restart_broker(broker, vm)

    # Everything the device recorded while the broker was away arrives, in batches, none lost.
    last = cloud.wait(lambda c: max(telemetry_seqs(c, boot) or {-1}) >= sent_before + 3 and telemetry_seqs(c, boot),
                      20, "the buffered telemetry")
    top = max(last)
    cloud.wait(lambda c: telemetry_seqs(c, boot) >= set(range(top + 1)), 20, "seq 0..%d without gaps" % top)
    msgs = {m["seq"]: m for m in cloud.of("telemetry") if m["boot"] == boot}
    assert all(m["dropped"] == 0 for m in msgs.values())
    assert_evenly_spaced([s["time"] for k in range(top + 1) for s in msgs[k]["samples"]])
    assert vm.boot_count == 1

    stopped = cloud.event("ESTOP")  # the stop button pressed while offline, delivered after
    assert stopped["state"] == "STOPPED"
    time.sleep(1.0)
    assert vm.state == "STOPPED" and vm.pwm_duty == 0
    assert not any(e["event"] == "STARTED" and e["seq"] > stopped["seq"] for e in cloud.of("events"))
    assert [s for _, s in vm.states].count("RUNNING") == 1
    assert not cloud.invalid, cloud.invalid


def test_overflowing_buffer_counts_what_it_dropped(board, cloud, broker):
    # A small RAM buffer (2 messages) and an outage longer than it holds, with the motor running
    # (so nothing may go on to flash: motorguard/backlog.py) until it stops before the broker returns.
    vm = board("it-2", telemetry={"buffer_samples": 2 * BATCH})
    vm.wait_for_line("MG NET online", 15)
    boot = cloud.event("BOOT")["boot"]
    cloud.wait(lambda c: telemetry_seqs(c, boot), 8, "telemetry")
    vm.press("start")
    vm.wait_for_state("RUNNING", 3)
    broker.stop()
    vm.wait_for_line("MG NET offline", 10)
    time.sleep(9.0)
    vm.press("stop")
    vm.wait_for_state("STOPPED", 3)
    cloud.restart_broker(broker, vm)
    late = cloud.wait(lambda c: [m for m in c.of("telemetry") if m["boot"] == boot and m["dropped"] > 0], 15,
                      "a message reporting drops")
    first_late = min(m["seq"] for m in late)
    cloud.wait(lambda c: max(telemetry_seqs(c, boot)) >= first_late + 1, 10, "the replay")
    seqs = telemetry_seqs(cloud, boot)
    missing = set(range(max(seqs) + 1)) - seqs
    # Whole batches were overwritten, oldest first; every sample that never arrived is counted upstream.
    assert missing, "the outage should have overflowed a 2-message buffer"
    assert max(m["dropped"] for m in late) >= BATCH * len(missing)
    assert all(k < first_late for k in missing), "only the oldest batches may be overwritten"
    assert not cloud.invalid, cloud.invalid


def test_reconnects_leave_the_heap_where_it_was(board, cloud):
    # Every reconnect imports the connect-time code again (link.py, mqtt_connect.py, dnscache.py)
    # and drops it once online; the broker's address outlives it (one blocking lookup per boot). Cycle after cycle the board must come back, with no reset and no heap kept
    # back: judged from the lowest free heap the board reports each 200 ms, at its best over a
    # few seconds online (after the publisher's idle collection), first cycle against last.
    vm = board()
    vm.wait_for_line("MG NET online", 15)

    def best_free_online(seconds=3.0):
        n = len(vm.heap_free_log)
        time.sleep(seconds)
        return max(free for _, free in vm.heap_free_log[n:])

    def cycle(offline_s=0.0):
        mark = vm.mark()
        vm.network("drop")
        vm.wait_for_line("MG NET offline", 10, since=mark)
        time.sleep(offline_s)
        vm.network("pass")
        vm.wait_for_line("MG NET online", 15, since=mark)

    # One cycle first: the first outage loads the flash backlog's code once (motorguard/backlog.py),
    # which leaves its interned names behind for good (~2 KB here); what must not grow is each cycle.
    cycle(offline_s=2.5)  # long enough for the keeper's once-a-second spill
    vm.wait_for_line("MG BACKLOG stored=", 5)
    host = vm.config["mqtt"]["host"]
    lookups = len([h for _, h in vm.dns_lookups if h == host])  # 2.5 s of failed connects may look it up again
    first = best_free_online()
    for _ in range(6):
        cycle()
    last = best_free_online()
    assert vm.boot_count == 1 and vm.state == "STOPPED" and vm.pwm_duty == 0
    assert len([l for l in vm.lines if l.text == "MG NET online"]) == 8
    assert last >= first - 512, (first, last)
    assert len([h for _, h in vm.dns_lookups if h == host]) == lookups, vm.dns_lookups  # none in the quick cycles
    assert not cloud.invalid, cloud.invalid
