"""The Virtual ESP32 proven with the fixture firmware: every simulated feature, through
the real MicroPython unix interpreter and the CPython harness."""

import os
import re
import subprocess
import time

import pytest

from vesp32 import harness as H

from vesp32_support import DEFAULTS, ntc_uv, settled_adc, BASE_CONFIG, FIXTURE_FW, ROOT

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
    # ADC2 reads its floor whatever the pin sees while Wi-Fi is on (the port ignores the driver's
    # error): a silent wrong value, which is why the pin map uses ADC1.
    vm.set_adc(27, 1800000)
    vm.wait_for_line("MG ADC2 uv=150000", 5)
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
    # What the fixture has left once it has compiled itself and imported the config (as source, with
    # the command rules it takes MAX_SPEED from): ~68 KB.
    assert 60 * 1024 < int(m.group(1)) < 110 * 1024


def test_heap_limit_flag_total_mode(make_vm):
    # 160K: in total mode the simulator's own ~70 KB (its strict PWM with its per-pin state, the ADC
    # model, the tick-grained select) comes out of the heap too, and the fixture needs the rest.
    vm = make_vm(heap="160K", heap_mode="total")
    assert vm.command[1:3] == ["-X", "heapsize=160K"]
    m = re.search(r"total=(\d+)", vm.wait_for_line("MG HEAP", 5).text)
    assert abs(int(m.group(1)) - 160 * 1024) < 2048  # the -X flag really limits the heap


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


def test_machine_reset_restarts_with_hard_reset(make_vm):
    # esp_restart() is ESP_RST_SW, which the esp32 port reports as HARD_RESET (modmachine.c).
    vm = make_vm()
    vm.wait_for_state("STOPPED", 5)
    vm.press("start")
    vm.wait_for_state("RUNNING", 2)
    vm.drive_pin(5, 0)
    vm.wait_for_line("MG RESETTING", 2)
    vm.drive_pin(5, None)
    _, cause = vm.wait_for_boot(2, 5)
    assert cause == H.HARD_RESET
    vm.wait_for_line("MG BOOT cause=2", 5)
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
    mark = vm.mark()
    vm.reset_button()
    # The EN button cuts the chip's power: the ESP32 reports a power-on reset for it.
    vm.wait_for_line("MG BOOT cause=1", 5, since=mark)
    assert [c for _, c in vm.boots] == [H.PWRON_RESET, H.PWRON_RESET, H.PWRON_RESET]
    assert [why for _, _, why in vm.resets] == ["power cycle", "reset button"]
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


def test_the_shipped_firmware_boots_on_the_strict_board_motor_off(make_vm):
    # The board refuses PWM(pin, freq=50, duty_ns=0) as the esp32 port does ("PWM is inactive"):
    # firmware that made its PWM that way crashed at every boot and reset forever. This one boots
    # once, STOPPED, with the servo's channel at 50 Hz and no pulses.
    cfg = {"thing": "vm-boot", "offline": True}
    vm = make_vm(config=cfg, firmware_dir=ROOT / "firmware", extra_path=())
    vm.wait_for_line("MG STATE STOPPED event=BOOT", 10)
    vm.wait_for_line("MG NET offline_mode", 5)
    time.sleep(2.5)  # longer than the watchdog's 2 s: a crash loop would show
    assert vm.boot_count == 1 and not vm.resets
    assert vm.pwm[DEFAULTS["pins"]["servo"]] == (0, 50)
    assert not [line for line in vm.text if "Traceback" in line or "CRASH" in line], vm.console_tail()
