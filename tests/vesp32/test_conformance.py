"""The virtual board refuses what the esp32 port (MicroPython v1.26.1, the release make flash writes)
refuses, with the same exception, and quantizes what it quantizes: one test per row of the table in
docs/virtual-esp32.md ("As strict as the chip"). The probe firmware (probe_fw/main.py) makes each
call once on one board and prints the outcome; the reset-cause rows use the fixture firmware."""

import re
import time

import pytest

from vesp32 import harness as H

from vesp32_support import BASE_CONFIG, ROOT

PROBE_FW = ROOT / "tests" / "vesp32" / "probe_fw"
DNS_DELAY_MS = 1500


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    from vesp32_support import write_device

    dev = write_device(tmp_path_factory.mktemp("probe"), BASE_CONFIG)
    vm = H.VirtualESP32(dev, firmware_dir=PROBE_FW, proxy=False)
    vm.set_adc(34, 0)  # grounded
    vm.set_adc(35, 3_300_000)  # at the rail
    vm.set_dns_delay(DNS_DELAY_MS)
    vm.start()
    try:
        vm.wait_for_line("MG PROBE done", 30)
        outcomes = {}
        for line in vm.text:
            m = re.match(r"MG PROBE (\S+) (\S+) ?(.*)$", line)
            if m:
                outcomes[m.group(1)] = (m.group(2), m.group(3))
        yield outcomes
    finally:
        vm.stop()


def test_pwm_duty_ns_in_the_constructor_raises(probe):
    assert probe["pwm_duty_ns_in_constructor"] == ("RuntimeError", "PWM is inactive")
    assert probe["pwm_duty_u16_in_constructor"] == ("ok", "0")  # what the firmware does instead


def test_pwm_duty_ns_reads_back_quantized_to_16_bit_ledc_steps(probe):
    # 1.5 ms at 50 Hz: round(1.5e6 * 65536 / 2e7) = 4915 steps of 305.18 ns = 1,499,939 ns.
    assert probe["pwm_duty_ns_readback"] == ("ok", "1499939")
    assert probe["pwm_duty_ns_range"] == ("ValueError", "duty_ns must be from 0 to 20000000 ns")


def test_pwm_without_a_duty_starts_at_half_and_deinit_leaves_it_inactive(probe):
    assert probe["pwm_default_duty_u16"] == ("ok", "32768")
    assert probe["pwm_after_deinit"] == ("RuntimeError", "PWM is inactive")


def test_adc_defaults_to_11db_and_reads_its_floor_for_a_grounded_input(probe):
    assert probe["adc_default_atten_grounded"] == ("ok", "150000")  # not 0


def test_adc_saturates_below_the_rail(probe):
    status, value = probe["adc_rail"]
    assert status == "ok" and 2_450_000 < int(value) < 3_300_000 and int(value) % 1000 == 0
    assert probe["adc_bad_atten"] == ("ValueError", "invalid attenuation")


def test_pin_irq_has_no_hard_and_pin_value_is_keyword_only(probe):
    assert probe["pin_irq_hard"] == ("TypeError", "unexpected keyword argument 'hard'")
    assert probe["pin_value_positional"][0] == "TypeError"


def test_timer_has_no_hard_in_v1_26_1_and_four_ids(probe):
    assert probe["timer_hard"] == ("TypeError", "unexpected keyword argument 'hard'")
    assert probe["timer_no_such_id"] == ("ValueError", "invalid Timer number")


def test_wdt_cannot_be_stopped_nor_set_to_zero(probe):
    assert probe["wdt_zero_timeout"] == ("ValueError", "WDT timeout too short")
    assert probe["wdt_has_deinit"] == ("ok", "False")


def test_wlan_connect_while_connecting_raises_as_the_driver_does(probe):
    assert probe["wlan_connect_while_connecting"] == ("OSError", "Wifi Internal Error")
    assert probe["wlan_connect_keyword_ssid"][0] == "TypeError"  # ssid and key are positional only


def test_asyncio_waits_end_on_the_freertos_tick(probe):
    # asyncio.sleep_ms(5) lasts 5-15 ms, ~10 ms on average (100 Hz tick; the unix port's own wait
    # would give ~5.1 ms); time.sleep_ms stays exact.
    mean_us = int(probe["asyncio_sleep_5ms_us"][1])
    assert 8_000 <= mean_us <= 15_000, mean_us
    assert 4_000 <= int(probe["time_sleep_5ms_us"][1]) < 7_000


def test_ntptime_dns_lookup_is_not_bounded_by_its_timeout(probe):
    assert probe["ntptime_settime"][0] == "ok"
    assert int(probe["ntptime_ms"][1]) >= DNS_DELAY_MS  # timeout = 1 s, yet 1.5 s in the lookup


def test_flash_writes_and_deletes_stall_the_whole_board(probe):
    # 8 KB: 32 pages of 1 ms and two 4 KB blocks' erase slices of 20 ms, plus the close's commit;
    # the 1 ms timer's callback does not run meanwhile (it may run once as the write returns).
    us, callbacks = eval(probe["flash_write_8k"][1])
    assert us >= 32 * 1000 + 2 * 20000 + 1000, us
    assert callbacks <= 2, callbacks
    assert int(probe["flash_remove"][1]) >= 20000


# --------------------------------------------------------------------------- reset causes


def test_soft_reboot_reports_soft_reset_and_the_watchdog_survives_it(make_vm):
    # A 3 s watchdog: the soft reset must come before it fires, however slow a shared machine is.
    vm = make_vm(config=dict(BASE_CONFIG, control={"wdt_timeout_ms": 3000}))
    vm.wait_for_state("STOPPED", 5)
    vm.wait_until(lambda v: v.wdt_timeout_ms == 3000, 2, "WDT armed")
    vm.drive_pin(13, 0)  # the fixture raises out of main.py: the board sits at the REPL
    vm.wait_until(lambda v: v.halted is not None, 3, "at the REPL")
    vm.drive_pin(13, None)
    vm.serial_write("\x01\x04")  # raw REPL, then Ctrl-D: a soft reset that runs no main.py
    _, cause = vm.wait_for_boot(2, 5)
    assert cause == H.SOFT_RESET
    # Nothing feeds the watchdog the first boot armed: it resets the board (the old simulator
    # disarmed it on every soft reboot).
    _, cause = vm.wait_for_boot(3, 8)
    assert cause == H.WDT_RESET
    assert [why for _, _, why in vm.resets] == ["soft reboot", "watchdog"]
    vm.wait_for_line("MG BOOT cause=3", 5)

