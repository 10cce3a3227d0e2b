# Probe firmware for the conformance tests (tests/vesp32/test_conformance.py): calls the simulated
# machine, network and ntptime the way the esp32 port (v1.26.1) refuses or quantizes them, and
# prints one "MG PROBE <name> <outcome>" line each: "ok <value>" or the exception's type and text.
import time

import asyncio
import machine
import network
import ntptime


def probe(name, fn):
    try:
        print("MG PROBE %s ok %r" % (name, fn()))
    except Exception as e:  # noqa: BLE001 - the outcome is the point
        print("MG PROBE %s %s %s" % (name, type(e).__name__, e))


# PWM: duty_ns in the constructor, before the channel has a timer.
probe("pwm_duty_ns_in_constructor", lambda: machine.PWM(machine.Pin(18), freq=50, duty_ns=1500000))
servo = machine.PWM(machine.Pin(18), freq=50, duty_u16=0)
probe("pwm_duty_u16_in_constructor", lambda: servo.duty_ns())
servo.duty_ns(1500000)
probe("pwm_duty_ns_readback", lambda: servo.duty_ns())
probe("pwm_duty_ns_range", lambda: servo.duty_ns(20000001))
probe("pwm_default_duty_u16", lambda: machine.PWM(machine.Pin(19)).duty_u16())
spare = machine.PWM(machine.Pin(21), freq=50, duty_u16=0)
spare.deinit()
probe("pwm_after_deinit", lambda: spare.duty_ns())
# ADC: 11 dB unless told otherwise; the harness holds GPIO 34 at 0 V and 35 at 3.3 V.
probe("adc_default_atten_grounded", lambda: machine.ADC(machine.Pin(34)).read_uv())
probe("adc_rail", lambda: machine.ADC(machine.Pin(35), atten=machine.ADC.ATTN_11DB).read_uv())
probe("adc_bad_atten", lambda: machine.ADC(machine.Pin(32), atten=4))
# Pins and timers: soft IRQs only, no hard=.
probe("pin_irq_hard", lambda: machine.Pin(26, machine.Pin.IN).irq(handler=print, hard=True))
probe("pin_value_positional", lambda: machine.Pin(22, machine.Pin.OUT, -1, 1))
probe("timer_hard", lambda: machine.Timer(0, period=100, callback=print, hard=True))
probe("timer_no_such_id", lambda: machine.Timer(4))
# The watchdog: no way to stop it, and no zero timeout.
probe("wdt_zero_timeout", lambda: machine.WDT(timeout=0))
probe("wdt_has_deinit", lambda: hasattr(machine.WDT(timeout=60000), "deinit"))
# Wi-Fi: a second connect() while the driver connects.
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect("lab", "pw")
probe("wlan_connect_while_connecting", lambda: wlan.connect("lab", "pw"))
probe("wlan_connect_keyword_ssid", lambda: wlan.connect(ssid="lab"))


# asyncio: a 5 ms sleep, 20 times, ends on the FreeRTOS tick.
async def sleeps():
    t0 = time.ticks_us()
    for _ in range(20):
        await asyncio.sleep_ms(5)
    return time.ticks_diff(time.ticks_us(), t0) // 20


probe("asyncio_sleep_5ms_us", lambda: asyncio.run(sleeps()))
# time.sleep_ms is accurate on the chip (mp_hal_delay_ms finishes the delay exactly): the shortest
# of ten, so a busy host's scheduling does not count.


def shortest_sleep():
    best = 1000000
    for _ in range(10):
        t0 = time.ticks_us()
        time.sleep_ms(5)
        best = min(best, time.ticks_diff(time.ticks_us(), t0))
    return best


probe("time_sleep_5ms_us", shortest_sleep)
# ntptime: its DNS lookup is not bounded by its timeout (the harness makes lookups slow).
while not wlan.isconnected():
    time.sleep_ms(20)
ntptime.timeout = 1
t0 = time.ticks_ms()
probe("ntptime_settime", ntptime.settime)
probe("ntptime_ms", lambda: time.ticks_diff(time.ticks_ms(), t0))
# Flash: a write or a delete stalls the whole VM, no soft IRQ runs meanwhile (ESP-IDF suspends
# tasks while the SPI flash is written or erased). 8 KB written in one go crosses two 4 KB blocks.
hits = []
machine.Timer(1, period=1, callback=lambda t: hits.append(1))


def flash_write():
    data = bytes(8192)
    t0 = time.ticks_us()
    n = len(hits)
    with open("probe.bin", "wb") as f:
        f.write(data)
    return (time.ticks_diff(time.ticks_us(), t0), len(hits) - n)


def flash_remove():
    import os

    t0 = time.ticks_us()
    os.remove("probe.bin")
    return time.ticks_diff(time.ticks_us(), t0)


probe("flash_write_8k", flash_write)
probe("flash_remove", flash_remove)
machine.Timer(1).deinit()
print("MG PROBE done")
