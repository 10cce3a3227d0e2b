"""The same checks on the virtual ESP32 and on a real board (--board serial)."""

from __future__ import annotations

import re
import time

import pytest


def test_boots_into_stopped(board):
    assert board.state() == "STOPPED"
    assert board.hook("state", r"MG HOOK state=").split()[2] == "state=STOPPED"
    assert "duty_ns=0" in board.hook("state", r"MG HOOK state=")


def test_start_and_stop(board):
    board.press("start")
    board.wait_for_state("RUNNING")
    assert "duty_ns=0" not in board.hook("state", r"MG HOOK state=")
    board.press("stop")
    board.wait_for_state("STOPPED")
    assert "duty_ns=0" in board.hook("state", r"MG HOOK state=")


def test_fault_latches_refuses_start_and_resets_only_once_clear(board):
    board.press("start")
    board.wait_for_state("RUNNING")
    board.hook("temp 40")
    board.hook("current 2.0")
    board.wait_for_state("FAULT")
    board.wait_for(r"MG STATE FAULT reason=overtemp_overcurrent")
    mark = board.mark()
    board.press("start")
    board.wait_for("MG START_REFUSED", since=mark)
    mark = board.mark()
    board.press("stop")  # still hot and loaded: refused
    board.wait_for("MG RESET_REFUSED", since=mark)
    assert board.state() == "FAULT"
    board.hook("temp 25")
    board.hook("current 0.3")
    board.press("stop")
    board.wait_for_state("STOPPED")
    board.wait_for("MG STATE STOPPED event=FAULT_CLEARED")
    board.hook("temp off")
    board.hook("current off")


def test_open_sensor_faults_in_any_state(board):
    # What the ESP32's ADC (11 dB) returns for an open NTC, the node at the 3.3 V rail: a saturated
    # reading well below 3.3 V (vesp32/board/_vadc.py), not the rail itself.
    board.hook("uv temp 2775000")
    board.wait_for(r"MG STATE FAULT reason=temp_sensor_implausible")
    board.hook("uv temp off")


def test_shorted_sensor_faults_not_over_temperature(board):
    # A shorted NTC reads the ADC's floor (~150 mV at 11 dB), never 0: still a sensor fault, not a
    # temperature of ~117 C (which the old 100 mV bound let through as an over-temperature).
    board.hook("uv temp 150000")
    board.wait_for(r"MG STATE FAULT reason=temp_sensor_implausible")
    board.hook("uv temp off")


def test_watchdog_resets_a_hung_loop_motor_off(board, site):
    if not site.virtual:
        pytest.skip("stalling a real board resets it through its watchdog: run with --run-watchdog by hand")
    board.press("start")
    board.wait_for_state("RUNNING")
    mark = board.mark()
    board.write("HOOK stall 3000\n")
    line = board.wait_for(r"MG BOOT .*cause=watchdog", 10, mark)
    assert "cause=watchdog" in line
    board.wait_for_state("STOPPED")  # never an automatic restart


def test_stop_latency_on_the_boards_own_clock(board, capsys):
    board.press("start")
    board.wait_for_state("RUNNING")
    figures = []
    for _ in range(5):
        line = board.hook("stop", r"MG HOOK stop_latency_us=")
        figures.append(int(re.search(r"stop_latency_us=(-?\d+)", line).group(1)))
        board.wait_for_state("STOPPED")
        time.sleep(0.2)  # the injected stop press is released
        board.press("start")
        board.wait_for_state("RUNNING")
    assert all(f >= 0 for f in figures), figures  # -1 would mean the PWM never went off
    with capsys.disabled():
        print("\nhil stop_latency_us max=%d values=%s" % (max(figures), figures))


def test_tls_connection_and_valid_messages(board, observer):
    board.wait_for("MG NET online", 30)
    board.press("start")
    board.wait_for_state("RUNNING")
    observer.wait(lambda k, b: k == "events" and b["event"] == "STARTED", what="STARTED event")
    observer.wait(lambda k, b: k == "telemetry", 15, "telemetry")
    assert observer.invalid() == []


def test_commands_and_acks(board, observer):
    board.wait_for("MG NET online", 30)
    time.sleep(2.5)  # a start issued within the clock tolerance of boot is refused (docs/commands.md)
    observer.command(id="hil-1", cmd="start")
    ack = observer.wait(lambda k, b: k == "ack" and b["id"] == "hil-1", what="ack")[0]
    assert ack["ok"] is True
    board.wait_for_state("RUNNING")
    observer.command(id="hil-2", cmd="stop")
    observer.wait(lambda k, b: k == "ack" and b["id"] == "hil-2", what="ack")
    board.wait_for_state("STOPPED")


def test_connect_time_code_is_out_of_the_heap_while_online(board):
    # The config loader (boot only), the fleet contract (once the topics are made) and the connect
    # steps (link, mqtt_connect, dnscache) are dropped once done, so a session runs without their
    # code in the heap; what it needs stays loaded.
    board.wait_for("MG NET online", 30)
    reply = board.hook("modules", r"MG HOOK modules=")
    loaded = set(reply.split("modules=")[1].split()[0].split(","))
    assert {"app", "net", "mqtt", "mqtt_reader", "telemetry", "commands", "controller"} <= loaded, reply
    assert not loaded & {"config", "link", "mqtt_connect", "dnscache", "contract"}, reply
    assert int(reply.split("mem_free=")[1].split()[0]) > 0
