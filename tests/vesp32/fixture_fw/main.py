# Test firmware for the Virtual ESP32 (not the product): exercises every simulated
# feature the way the real firmware does, and reports on the console with MG lines.
# An asyncio control task ticks every 5 ms: buttons -> PWM, ADC reads, WDT feed.
# Test pins (driven by the harness): 4 low = stall (stop feeding the WDT),
# 5 low = machine.reset(), 13 low = raise out of main.py, 14 low = heap churn check.
import gc
import json
import sys
import time

import asyncio
import machine
import network

from motorguard import config  # from VESP32_EXTRA_PATH (the repo's firmware dir)

try:
    with open("config.json") as f:
        cfg = config.merge(config.DEFAULTS, json.loads(f.read()))
except (OSError, ValueError):
    cfg = config.DEFAULTS
pins = cfg["pins"]

gc.collect()
print("MG BOOT cause=%d" % machine.reset_cause())
print("MG MACHINE file=%s pinbase=%d" % (getattr(machine, "__file__", "?"), hasattr(machine, "PinBase")))
print("MG HEAP free=%d total=%d" % (gc.mem_free(), gc.mem_free() + gc.mem_alloc()))

def pin_checks():
    # ESP32 pin rules: 34-39 are input-only, 6-11 belong to the flash.
    res = []
    for make in (lambda: machine.Pin(34, machine.Pin.OUT), lambda: machine.Pin(6), lambda: machine.ADC(machine.Pin(22))):
        try:
            make()
            res.append(0)
        except ValueError:
            res.append(1)
    print("MG PINCHECK in_only=%d flash=%d not_adc=%d" % tuple(res))


pin_checks()
pwm = machine.PWM(machine.Pin(pins["servo"]), freq=50, duty_u16=0)
green = machine.Pin(pins["led_green"], machine.Pin.OUT, value=0)
red = machine.Pin(pins["led_red"], machine.Pin.OUT, value=0)
adc_t = machine.ADC(machine.Pin(pins["temp_adc"]), atten=machine.ADC.ATTN_11DB)
adc_c = machine.ADC(machine.Pin(pins["current_adc"]), atten=machine.ADC.ATTN_11DB)
start = machine.Pin(pins["start_button"], machine.Pin.IN, machine.Pin.PULL_UP)
stop = machine.Pin(pins["stop_button"], machine.Pin.IN, machine.Pin.PULL_UP)
stall = machine.Pin(4, machine.Pin.IN, machine.Pin.PULL_UP)
do_reset = machine.Pin(5, machine.Pin.IN, machine.Pin.PULL_UP)
crash = machine.Pin(13, machine.Pin.IN, machine.Pin.PULL_UP)
churn = machine.Pin(14, machine.Pin.IN, machine.Pin.PULL_UP)

st = {"running": False, "irq": 0, "timer": 0}


def on_stop(pin):
    # Soft IRQ (scheduled): cut the motor at once.
    pwm.duty_ns(0)
    st["running"] = False
    st["irq"] += 1


stop.irq(handler=on_stop, trigger=machine.Pin.IRQ_FALLING)


def on_timer(t):
    st["timer"] += 1


timer = machine.Timer(0)
timer.init(period=50, mode=machine.Timer.PERIODIC, callback=on_timer)


def churn_check():
    # The simulated hot paths must not allocate (the firmware's tick does not).
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for i in range(500):
        adc_t.read_uv()
        adc_c.read_uv()
        pwm.duty_ns(1000000 + i * 1000)
        green.value(i & 1)
        stop.value()
        wdt.feed()
    used = gc.mem_alloc() - a
    gc.enable()
    pwm.duty_ns(0)
    green.value(0)
    print("MG CHURN bytes=%d" % used)


wdt = machine.WDT(timeout=cfg["control"]["wdt_timeout_ms"])


async def control():
    last_irq = 0
    n = 0
    pos = 900  # tenths of a degree
    step = 3  # 60 deg/s at 5 ms ticks = 0.3 deg per tick
    while True:
        if stall.value() == 0:
            print("MG STALL")
            while True:
                time.sleep_ms(100)  # blocks everything: no feeds, no hardware calls
        if do_reset.value() == 0:
            print("MG RESETTING")
            machine.reset()
        if crash.value() == 0:
            raise RuntimeError("fixture crash requested")
        if churn.value() == 0:
            churn_check()
            while churn.value() == 0:
                wdt.feed()
                await asyncio.sleep_ms(5)
        if start.value() == 0 and not st["running"]:
            st["running"] = True
            print("MG STATE RUNNING")
        if stop.value() == 0 and st["running"]:
            st["running"] = False
        if st["irq"] != last_irq:
            last_irq = st["irq"]
            print("MG IRQ %d" % last_irq)
            print("MG STATE STOPPED")
        if st["running"]:
            pos += step
            if (pos >= 1600 and step > 0) or (pos <= 200 and step < 0):
                step = -step
            pwm.duty_ns(1000000 + pos * 1000000 // 1800)
        else:
            pwm.duty_ns(0)
        green.value(1 if st["running"] else 0)
        t_uv = adc_t.read_uv()
        c_uv = adc_c.read_uv()
        n += 1
        if n % 20 == 0:
            print("MG ADC temp_uv=%d cur_uv=%d" % (t_uv, c_uv))
        if n % 200 == 0:
            print("MG TIMER %d" % st["timer"])
        wdt.feed()
        await asyncio.sleep_ms(5)


async def net():
    import socket

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    # ADC2 cannot convert while Wi-Fi runs; the port ignores the error and reads the floor.
    print("MG ADC2 uv=%d" % machine.ADC(machine.Pin(27), atten=machine.ADC.ATTN_11DB).read_uv())
    print("MG MAC %s" % "".join("%02x" % b for b in wlan.config("mac")))
    wlan.connect(cfg["wifi"]["ssid"], cfg["wifi"]["password"])
    up = None
    synced = False
    mq = cfg["mqtt"]
    while True:
        now = wlan.isconnected()
        if now != up:
            up = now
            rssi = wlan.status("rssi") if now else 0
            print("MG WIFI %d rssi=%d status=%d" % (1 if now else 0, rssi, wlan.status()))
            if now and not synced:
                import ntptime

                try:
                    ntptime.settime()
                    synced = True
                    print("MG NTP ok")
                except OSError as e:
                    print("MG NTP fail %r" % e)
        if mq["host"]:
            try:
                ai = socket.getaddrinfo(mq["host"], mq["port"])[0][-1]
                s = socket.socket()
                s.settimeout(0.5)
                s.connect(ai)
                s.write(b"ping\n")
                got = s.read(5)
                s.close()
                print("MG ECHO %s" % ("ok" if got == b"ping\n" else "bad %r" % got))
            except OSError as e:
                print("MG ECHO fail %r" % e)
        await asyncio.sleep_ms(300)


async def main_task():
    asyncio.create_task(net())
    await control()


print("MG STATE STOPPED")
asyncio.run(main_task())
