"""The Virtual ESP32 proven with the fixture firmware: every simulated feature, through
the real MicroPython unix interpreter and the CPython harness."""

import math
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from vesp32 import harness as H
from vesp32.netproxy import NetProxy

from vesp32_support import BASE_CONFIG, FIXTURE_FW, ROOT

ADC_RE = re.compile(r"MG ADC temp_uv=(\d+) cur_uv=(\d+)")
DEFAULTS = H.config_module().DEFAULTS


def ntc_uv(celsius, ntc=DEFAULTS["ntc"]):
    """The NTC divider, written out independently of the board code."""
    r = ntc["r0_ohm"] * math.exp(ntc["beta"] * (1 / (celsius + 273.15) - 1 / (ntc["t0_c"] + 273.15)))
    return ntc["supply_uv"] * r / (ntc["fixed_ohm"] + r)


def current_uv(amps, cur=DEFAULTS["current"]):
    return cur["zero_uv"] + cur["uv_per_a"] * amps


def next_adc(vm, since):
    line = vm.wait_for_line(ADC_RE, 3, since=since)
    m = ADC_RE.search(line.text)
    return int(m.group(1)), int(m.group(2))


def settled_adc(vm):
    """An ADC report taken wholly after the last command was applied."""
    if vm.last_command is not None:
        vm.wait_applied()
    since = vm.mark()
    next_adc(vm, since)  # may straddle the change
    return next_adc(vm, vm.mark())


# --------------------------------------------------------------------------- boot


def test_machine_py_shadows_the_builtin_and_path(make_vm):
    vm = make_vm()
    line = vm.wait_for_line("MG MACHINE", 5).text
    assert "file=%s" % (H.BOARD / "machine.py") in line
    assert "pinbase=0" in line  # the unix built-in machine has PinBase; ours does not
    # And directly: a machine.py first on MicroPython's path wins over the built-in.
    out = subprocess.run(
        [vm.micropython, "-c", "import sys; sys.path.insert(0, %r); import machine; print(machine.__file__)" % str(H.BOARD)],
        capture_output=True,
        text=True,
        timeout=10,
        env=dict(os.environ, VESP32_CTRL=""),
    )
    assert out.stdout.strip().endswith("board/machine.py"), out


def test_boot_cause_and_console(make_vm):
    vm = make_vm()
    vm.wait_for_line("MG BOOT cause=1", 5)
    assert vm.boots[0][1] == H.PWRON_RESET
    vm.wait_for_state("STOPPED", 5)
    assert all(isinstance(t, int) for t, _, _ in vm.lines)


def test_esp32_pin_rules_and_identity(make_vm):
    vm = make_vm(mac="240ac4abcdef")
    assert "in_only=1 flash=1 not_adc=1" in vm.wait_for_line("MG PINCHECK", 5).text
    vm.wait_for_line("MG ADC2 busy", 5)  # ADC2 refuses while Wi-Fi is on; the pin map uses ADC1
    vm.wait_for_line("MG MAC 240ac4abcdef", 5)


def test_heap_limit_flag_firmware_mode(make_vm):
    vm = make_vm()
    cmd = open("/proc/%d/cmdline" % vm.pid, "rb").read().split(b"\0")
    assert b"-X" in cmd and any(a.startswith(b"heapsize=") for a in cmd)
    assert vm.command[1:3] == ["-X", "heapsize=%dK" % ((vm.heap + vm.heap_reserve) // 1024)]
    # The simulator's own footprint is fenced off: the firmware starts with ~110K.
    info = vm.heap_info
    assert info["ballast"] > 0 and info["sim_bytes"] > 0
    assert abs(info["mem_free"] - (110 * 1024 - 1024)) < 2048, info
    m = re.search(r"free=(\d+)", vm.wait_for_line("MG HEAP", 5).text)
    assert 80 * 1024 < int(m.group(1)) < 110 * 1024


def test_heap_limit_flag_total_mode(make_vm):
    vm = make_vm(heap="110K", heap_mode="total")
    assert vm.command[1:3] == ["-X", "heapsize=110K"]
    m = re.search(r"total=(\d+)", vm.wait_for_line("MG HEAP", 5).text)
    assert abs(int(m.group(1)) - 110 * 1024) < 2048  # the -X flag really limits the heap


def test_hot_paths_do_not_allocate(make_vm):
    vm = make_vm()
    vm.wait_for_line("MG STATE STOPPED", 5)
    vm.drive_pin(14, 0)
    m = re.search(r"bytes=(\d+)", vm.wait_for_line("MG CHURN", 5).text)
    # 3,000 hardware calls; only the once-a-second clock rebase (~350 bytes) allocates.
    assert int(m.group(1)) < 1024
    vm.drive_pin(14, None)


# --------------------------------------------------------------------------- buttons, PWM, LEDs


def test_button_irq_pwm_and_latency(make_vm):
    vm = make_vm()
    vm.wait_for_state("STOPPED", 5)
    t_start = vm.press("start")
    vm.wait_for_state("RUNNING", 2)
    vm.wait_until(lambda v: v.pwm_duty > 0 and v.leds["green"] == 1, 1, "PWM and green LED on")
    assert vm.pwm_log[-1][0] > t_start
    assert 1_000_000 <= vm.pwm_duty <= 2_000_000
    assert vm.pwm[DEFAULTS["pins"]["servo"]][1] == 50  # 50 Hz
    time.sleep(0.2)
    t0 = vm.press("stop")
    latency = vm.watch_pwm_off_after(t0, 1)
    applied = vm.wait_applied()
    vm.wait_for_line("MG IRQ 1", 2)  # the soft IRQ handler ran
    vm.wait_for_state("STOPPED", 2)
    assert 0 < latency < 50_000_000  # within one 5 ms control period, with slack for CI
    assert t0 <= applied <= t0 + latency  # input taken in, then the IRQ cut the PWM
    vm.wait_until(lambda v: v.leds["green"] == 0, 1, "green LED off")
    assert vm.watch_pwm_off_after(time.time_ns(), 0.1) == 0  # already off: zero latency


def test_hold_button_survives_as_level(make_vm):
    vm = make_vm()
    vm.wait_for_state("STOPPED", 5)
    vm.button("start", True)
    vm.wait_for_state("RUNNING", 2)
    vm.button("start", False)
    vm.wait_applied()
    with pytest.raises(ValueError):
        vm.press("nonexistent")


# --------------------------------------------------------------------------- plant and sensors


def test_adc_voltages_match_the_config_formulas(make_vm):
    vm = make_vm()
    vm.wait_for_state("STOPPED", 5)
    # No PWM, no forced current: 0 A; temperature at the 25 C ambient -> mid-rail.
    t_uv, c_uv = settled_adc(vm)
    assert abs(t_uv - 1_650_000) < 1_000
    assert abs(t_uv - ntc_uv(25.0)) < 500
    assert abs(c_uv - current_uv(0.0)) <= 1
    for celsius in (0.0, 34.0, 60.0, 100.0):
        vm.force_temperature(celsius)
        t_uv, _ = settled_adc(vm)
        assert abs(t_uv - ntc_uv(celsius)) < 500, celsius
    for amps in (0.5, 1.0, 2.2, 3.0):
        vm.force_current(amps)
        _, c_uv = settled_adc(vm)
        assert abs(c_uv - current_uv(amps)) <= 1, amps
    vm.force_current(None)
    vm.force_temperature(None)


def _adc_lines(vm, n):
    first = vm.wait_for_line(ADC_RE, 5)
    out = [first.text]
    while len(out) < n:
        line = vm.wait_for_line(ADC_RE, 5, since=vm.lines.index(first) + len(out))
        out.append(line.text)
    return out


def test_sensor_noise_is_deterministic_with_a_seed(make_vm):
    a = make_vm(name="a", plant={"noise_uv": 2000, "seed": 7})
    b = make_vm(name="b", plant={"noise_uv": 2000, "seed": 7})
    c = make_vm(name="c", plant={"noise_uv": 2000, "seed": 8})
    la, lb, lc = _adc_lines(a, 3), _adc_lines(b, 3), _adc_lines(c, 3)
    assert la == lb and la != lc
    for text in la:
        t_uv, c_uv = map(int, ADC_RE.search(text).groups())
        assert abs(t_uv - ntc_uv(25.0)) <= 2001 and abs(c_uv - current_uv(0)) <= 2001


def test_config_overrides_reach_the_plant(make_vm):
    cfg = dict(BASE_CONFIG, current={"zero_uv": 1_500_000, "uv_per_a": 200_000})
    vm = make_vm(config=cfg)
    vm.wait_for_state("STOPPED", 5)
    vm.force_current(1.0)
    _, c_uv = settled_adc(vm)
    assert c_uv == 1_700_000


def test_sensor_open_and_short_rails(make_vm):
    vm = make_vm()
    vm.wait_for_state("STOPPED", 5)
    vm.sensor("temp", "open")
    assert settled_adc(vm)[0] == 3_300_000
    vm.sensor("temp", "short")
    assert settled_adc(vm)[0] == 0
    vm.sensor("temp", "ok")
    assert abs(settled_adc(vm)[0] - 1_650_000) < 1_000
    vm.sensor("current", "open")
    assert settled_adc(vm)[1] == 0
    vm.sensor("current", "short")
    assert settled_adc(vm)[1] == 3_300_000
    vm.sensor("current", "ok")
    assert abs(settled_adc(vm)[1] - current_uv(0)) <= 1


def test_running_current_and_overload_heating(make_vm):
    # time_scale 10: 10 s of motor heating per second of wall time.
    vm = make_vm(time_scale=10)
    vm.wait_for_state("STOPPED", 5)
    vm.press("start")
    vm.wait_for_state("RUNNING", 2)
    time.sleep(0.5)
    normal = vm.plant
    assert 0.6 <= normal["amps"] <= 0.9, normal  # sweeping at normal load
    # Normal running settles well below 34 C: T_inf = 25 + 0.11*60*0.75^2 = 28.7 C.
    assert normal["temp_c"] < 30
    t0 = time.time()
    vm.set_load(3.4)  # ~2.2 A
    vm.wait_until(lambda v: v.plant.get("amps", 0) > 2.0, 2, "overload current")
    assert abs(vm.plant["amps"] - 2.19) < 0.15
    vm.wait_until(lambda v: v.plant.get("temp_c", 0) > 34.0, 5, "motor past 34 C")
    model_s = (time.time() - t0) * 10
    assert 8 <= model_s <= 25, model_s  # "crosses 34 C within about 10-20 s"
    # The NTC voltage the firmware reads tracks the plant temperature.
    t_uv, c_uv = next_adc(vm, vm.mark())
    assert t_uv < ntc_uv(34.0)
    assert c_uv > current_uv(2.0)


def test_no_pulses_no_current_position_holds(make_vm):
    vm = make_vm()
    vm.wait_for_state("STOPPED", 5)
    vm.press("start")
    vm.wait_for_state("RUNNING", 2)
    time.sleep(0.3)
    vm.press("stop")
    vm.wait_for_state("STOPPED", 2)
    time.sleep(0.5)
    p1 = vm.plant
    time.sleep(0.3)
    p2 = vm.plant
    assert p1["amps"] == 0 and p2["amps"] == 0
    assert p1["pos_deg"] == p2["pos_deg"]


# --------------------------------------------------------------------------- resets


def test_watchdog_reset_when_feeding_stops(make_vm):
    vm = make_vm()
    vm.wait_for_state("STOPPED", 5)
    vm.wait_until(lambda v: v.wdt_timeout_ms == 1000, 2, "WDT armed")
    vm.drive_pin(4, 0)  # the fixture blocks without feeding
    stall = vm.wait_for_line("MG STALL", 2)
    vm.drive_pin(4, None)  # not held after the reset
    _, cause = vm.wait_for_boot(2, 5)
    assert cause == H.WDT_RESET
    t_reset, cause, why = vm.resets[-1]
    assert (cause, why) == (H.WDT_RESET, "watchdog")
    gap_ms = (t_reset - stall.t_ns) / 1e6
    assert 900 <= gap_ms <= 1400, gap_ms  # 1000 ms after the last feed (<= 50 ms report lag)
    vm.wait_for_line("MG BOOT cause=3", 5)


def test_machine_reset_restarts_with_soft_reset(make_vm):
    vm = make_vm()
    vm.wait_for_state("STOPPED", 5)
    vm.press("start")
    vm.wait_for_state("RUNNING", 2)
    vm.drive_pin(5, 0)
    vm.wait_for_line("MG RESETTING", 2)
    vm.drive_pin(5, None)
    _, cause = vm.wait_for_boot(2, 5)
    assert cause == H.SOFT_RESET
    vm.wait_for_line("MG BOOT cause=5", 5)
    assert vm.pwm_log[-1][1] == 0 or vm.pwm_duty == 0  # the reset stopped the pulses
    assert vm.leds["green"] == 0


def test_crash_drops_to_repl_then_watchdog(make_vm):
    vm = make_vm()
    vm.wait_for_state("STOPPED", 5)
    vm.drive_pin(13, 0)
    vm.wait_for_line("fixture crash requested", 2)
    vm.wait_for_line("REPL idle", 2)
    vm.wait_until(lambda v: v.halted is not None, 2, "halted")
    vm.drive_pin(13, None)
    _, cause = vm.wait_for_boot(2, 5)  # the WDT was armed: it brings the board back
    assert cause == H.WDT_RESET


def test_power_cycle_and_reset_button(make_vm):
    vm = make_vm()
    vm.wait_for_state("STOPPED", 5)
    vm.force_temperature(40.0)
    vm.reboot()
    vm.wait_for_line("MG BOOT cause=1", 5, since=1)
    vm.reset_button()
    vm.wait_for_line("MG BOOT cause=2", 5)
    assert [c for _, c in vm.boots] == [H.PWRON_RESET, H.PWRON_RESET, H.HARD_RESET]
    # The plant (outside the chip) keeps its settings across resets.
    t_uv, _ = settled_adc(vm)
    assert abs(t_uv - ntc_uv(40.0)) < 500


# --------------------------------------------------------------------------- Wi-Fi, timers, NTP


def test_wifi_down_and_up(make_vm):
    vm = make_vm()
    vm.wait_for_line("MG WIFI 1 rssi=-55 status=1010", 5)
    vm.wait_for_line("MG NTP ok", 2)
    vm.set_rssi(-71)
    mark = vm.mark()
    vm.wifi(False)
    vm.wait_for_line("MG WIFI 0 rssi=0 status=201", 2, since=mark)
    mark = vm.mark()
    t_up = vm.wifi(True)
    line = vm.wait_for_line("MG WIFI 1 rssi=-71", 3, since=mark)
    assert (line.t_ns - t_up) / 1e6 >= 290  # the join takes ~300 ms


def test_ntp_fails_while_wifi_is_down_at_boot(make_vm):
    vm = make_vm(wifi=False)
    vm.wait_for_line("MG WIFI 0", 5)
    time.sleep(0.5)
    assert "MG WIFI 1" not in "\n".join(vm.text)
    vm.wifi(True)
    vm.wait_for_line("MG NTP ok", 3)


def test_timer_callbacks_run(make_vm):
    vm = make_vm()
    first = vm.wait_for_line("MG TIMER", 5)
    second = vm.wait_for_line("MG TIMER", 5, since=first.index + 1)
    n1 = int(first.text.split()[-1])
    n2 = int(second.text.split()[-1])
    dt = (second.t_ns - first.t_ns) / 1e9
    assert abs((n2 - n1) / dt - 20) < 4  # period 50 ms


def test_empty_ssid_never_connects(make_vm):
    cfg = dict(BASE_CONFIG, wifi={"ssid": "", "password": ""})
    vm = make_vm(config=cfg)
    vm.wait_for_line("MG WIFI 0", 5)
    time.sleep(0.5)
    assert not any("MG WIFI 1" in s for s in vm.text)


# --------------------------------------------------------------------------- network path


def _roundtrip(port, payload=b"hello\n", timeout=0.5):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.settimeout(timeout)
    try:
        s.sendall(payload)
        return s.recv(100)
    finally:
        s.close()


def test_netproxy_modes(echo_server):
    with NetProxy(("127.0.0.1", echo_server.port)) as proxy:
        assert _roundtrip(proxy.port) == b"hello\n"
        # blackhole: accepted and read, nothing comes back ...
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        c.sendall(b"one\n")
        assert c.recv(100) == b"one\n"
        proxy.set_mode("blackhole")
        time.sleep(0.05)
        c.sendall(b"held\n")
        c.settimeout(0.3)
        with pytest.raises(socket.timeout):
            c.recv(100)
        with pytest.raises(socket.timeout):
            _roundtrip(proxy.port, timeout=0.3)
        # ... and what was held is delivered when the path comes back, as TCP would.
        proxy.set_mode("pass")
        c.settimeout(2)
        assert c.recv(100) == b"held\n"
        # drop: existing connections are closed, new ones closed at once.
        proxy.set_mode("drop")
        c.settimeout(2)
        try:
            assert c.recv(100) == b""
        except ConnectionResetError:
            pass
        c.close()
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        s.settimeout(2)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        s.close()
        assert proxy.stats["refused"] >= 1
        proxy.set_mode("pass")
        assert _roundtrip(proxy.port) == b"hello\n"
        with pytest.raises(ValueError):
            proxy.set_mode("flaky")


def test_netproxy_unreachable_upstream():
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    with NetProxy(("127.0.0.1", port)) as proxy:
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        s.settimeout(2)
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
        s.close()
        deadline = time.time() + 2
        while proxy.stats["upstream_failed"] < 1 and time.time() < deadline:
            time.sleep(0.01)
        assert proxy.stats["upstream_failed"] >= 1


def test_device_reaches_broker_through_proxy_and_faults(make_vm, echo_server):
    cfg = dict(BASE_CONFIG, mqtt={"host": "broker.invalid", "port": 8883, "tls": False})
    vm = make_vm(config=cfg, broker="127.0.0.1:%d" % echo_server.port)
    # The configured host name resolves to the proxy, which forwards to the echo server.
    vm.wait_for_line("MG ECHO ok", 5)
    assert echo_server.accepted >= 1
    assert vm.proxy.stats["accepted"] >= 1
    mark = vm.mark()
    vm.network("drop")
    vm.wait_for_line("MG ECHO fail", 3, since=mark)
    vm.network("pass")
    vm.wait_for_line("MG ECHO ok", 3, since=vm.mark())
    # Wi-Fi down: name resolution fails on the board.
    mark = vm.mark()
    vm.wifi(False)
    line = vm.wait_for_line("MG ECHO fail", 3, since=mark)
    assert "-202" in line.text or "OSError" in line.text
    vm.wifi(True)
    vm.wait_for_line("MG ECHO ok", 3, since=vm.mark())


# --------------------------------------------------------------------------- the real firmware


@pytest.mark.parametrize("flash", ["missing", "corrupt", "incomplete"])
def test_real_firmware_safe_mode_on_a_bad_config(make_vm, tmp_path, flash):
    vm = make_vm(config="none", firmware_dir=ROOT / "firmware", extra_path=(), start=False)
    if flash == "corrupt":
        (vm.device_dir / "config.json").write_text('{"thing": "x", "mqtt": ')
    elif flash == "incomplete":
        (vm.device_dir / "config.json").write_text('{"thing": "x"}')  # no broker host
    vm.start()
    line = vm.wait_for_line("MG SAFE_MODE", 10)
    assert "reason=" in line.text
    assert vm.pwm_duty == 0
    # The red LED blinks and the watchdog is fed: no reset.
    vm.wait_until(lambda v: any(p == DEFAULTS["pins"]["led_red"] and val == 1 for _, p, val in v.pin_log), 3, "red LED on")
    time.sleep(1.5)
    assert vm.boot_count == 1
    assert vm.wdt_timeout_ms == DEFAULTS["control"]["wdt_timeout_ms"]


def test_real_firmware_start_stop_on_110k(make_vm):
    # Runs what is flashed: main.py as source, the modules as xtensawin .mpy (compile=True).
    cfg = {"thing": "vm-001", "wifi": {"ssid": "lab", "password": "pw"}, "mqtt": {"host": "127.0.0.1", "port": 9, "tls": False}}
    vm = make_vm(config=cfg, firmware_dir=ROOT / "firmware", extra_path=())
    assert vm.run_dir != vm.firmware_dir and (vm.run_dir / "motorguard" / "app.mpy").is_file()
    vm.wait_for_line("MG BOOT", 10)
    vm.wait_for_state("STOPPED", 5)
    from vesp32.bench import start_running

    start_running(vm)  # presses again if one lands in a (refused) blocking network step
    t0 = vm.press("stop")
    assert vm.watch_pwm_off_after(t0, 2) is not None  # how fast: make bench-firmware
    vm.wait_for_state("STOPPED", 3)
    assert vm.boot_count == 1  # no crash, no watchdog on the ESP32-sized heap


def test_fixture_firmware_is_used_by_default_in_tests(make_vm):
    vm = make_vm(start=False)
    assert vm.firmware_dir == FIXTURE_FW.resolve()
    assert vm.command[-1].endswith("vesp32_boot.py")
