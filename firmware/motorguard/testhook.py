# Test hook: drive a real board's inputs from the serial console, for hardware-in-the-loop tests.
#
# Started only when config.json says "test_hook": true (a test configuration; never in
# production). It wraps the App's button pins, ADCs and PWM so that forced values win over
# the real ones; with the hook off none of this exists and the control path is untouched.
#
# Commands, one per line on the console (replies start with "MG HOOK"):
#   HOOK press start|stop [MS]     button low for MS (default 100) ms
#   HOOK hold start|stop           button held low; HOOK release start|stop lets it go
#   HOOK temp C|off                force the temperature reading (as the NTC would give it)
#   HOOK current A|off             force the current reading
#   HOOK uv temp|current UV|off    force an ADC reading in microvolts (as read_uv() returns them at
#                                  11 dB: an open NTC reads ~2775000, a short the floor, ~150000)
#   HOOK stop                      press stop and report stop_latency_us: injection -> PWM duty 0,
#                                  measured with the board's own ticks_us
#   HOOK state                     state, PWM duty and forced inputs
#   HOOK stall MS                  block the whole VM for MS ms (a hung loop: the watchdog must reset)
#   HOOK modules                   the firmware modules loaded now (their code is in the heap) and
#                                  the free heap

import sys
import time

import asyncio
import gc
import select

from motorguard import controller


class HookPin:
    def __init__(self, pin):
        self.pin = pin
        self.forced = None
        self.until = 0

    def value(self, *args):
        if self.forced is not None:
            if self.until and time.ticks_diff(time.ticks_ms(), self.until) >= 0:
                self.forced = None
                self.until = 0
            else:
                return self.forced
        return self.pin.value(*args)

    def irq(self, *args, **kwargs):
        return self.pin.irq(*args, **kwargs)


class HookAdc:
    def __init__(self, adc):
        self.adc = adc
        self.uv = None

    def read_uv(self):
        return self.adc.read_uv() if self.uv is None else self.uv


class HookPwm:
    def __init__(self, pwm):
        self.pwm = pwm
        self.watch_from = 0  # ticks_us of an injected stop, 0 = not watching
        self.latency_us = -1

    def duty_ns(self, ns=None):
        if ns is None:
            return self.pwm.duty_ns()
        if ns == 0 and self.watch_from:
            self.latency_us = time.ticks_diff(time.ticks_us(), self.watch_from)
            self.watch_from = 0
        return self.pwm.duty_ns(ns)


def reply(*parts):
    print("MG HOOK", *parts)


class Hook:
    def __init__(self, app):
        self.app = app
        self.start = HookPin(app.start_button.pin)
        self.stop = HookPin(app.stop_pin)
        app.start_button.pin = self.start
        app.stop_button.pin = self.stop
        app.stop_pin = self.stop
        self.temp = app.adc_temp = HookAdc(app.adc_temp)
        self.current = app.adc_current = HookAdc(app.adc_current)
        self.pwm = app.pwm = HookPwm(app.pwm)

    def pin(self, name):
        if name == "start":
            return self.start
        if name == "stop":
            return self.stop
        raise ValueError("button is start or stop")

    def handle(self, line):
        parts = line.split()
        if not parts or parts[0] != "HOOK":
            return
        cmd = parts[1] if len(parts) > 1 else ""
        try:
            if cmd == "press":
                p = self.pin(parts[2])
                p.forced = 0
                p.until = time.ticks_add(time.ticks_ms(), int(parts[3]) if len(parts) > 3 else 100)
            elif cmd == "hold":
                p = self.pin(parts[2])
                p.forced, p.until = 0, 0
            elif cmd == "release":
                p = self.pin(parts[2])
                p.forced, p.until = None, 0
            elif cmd == "temp":
                self.temp.uv = None if parts[2] == "off" else int(self.app.ntc.microvolts(float(parts[2])))
            elif cmd == "current":
                self.current.uv = None if parts[2] == "off" else int(self.app.current_sensor.microvolts(float(parts[2])))
            elif cmd == "uv":
                adc = self.temp if parts[2] == "temp" else self.current
                adc.uv = None if parts[3] == "off" else int(parts[3])
            elif cmd == "stop":
                self.pwm.latency_us = -1
                self.pwm.watch_from = time.ticks_us() if self.app.duty else 0
                self.stop.forced = 0
                self.stop.until = time.ticks_add(time.ticks_ms(), 100)
                return "latency"
            elif cmd == "stall":
                reply("stalling", parts[2])
                time.sleep_ms(int(parts[2]))
            elif cmd == "modules":
                gc.collect()
                names = [m[11:] for m in sys.modules if m.startswith("motorguard.")]
                names.sort()
                reply("modules=" + ",".join(names), "mem_free=%d" % gc.mem_free())
                return
            elif cmd == "state":
                reply("state=" + controller.STATE_NAMES[self.app.ctl.state], "duty_ns=%d" % self.app.duty,
                      "temp_uv=%s" % self.temp.uv, "current_uv=%s" % self.current.uv)
                return
            else:
                reply("error", "unknown command", cmd)
                return
            reply("ok", cmd)
        except (IndexError, ValueError) as e:
            reply("error", cmd, repr(e))

    async def run(self):
        poller = select.poll()
        poller.register(sys.stdin, select.POLLIN)
        reply("ready")
        while True:
            if poller.poll(0):
                line = sys.stdin.readline()
                if self.handle(line.strip()) == "latency":
                    for _ in range(100):  # the control tick turns the PWM off within a period
                        await asyncio.sleep_ms(5)
                        if self.pwm.latency_us >= 0:
                            break
                    reply("stop_latency_us=%d" % self.pwm.latency_us)
            await asyncio.sleep_ms(20)
