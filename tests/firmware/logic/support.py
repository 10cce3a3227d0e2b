# Shared by the dual-runtime logic tests: build an App on the fake hardware and
# drive it tick by tick. Runs under CPython and MicroPython alike.

import gc
import sys

import machine
from motorguard import commands as cmds
from motorguard import config
from motorguard import controller
from motorguard import start
from motorguard.sensors import NTC, CurrentSensor

PINS = config.DEFAULTS["pins"]
NTC_CONV = NTC(config.DEFAULTS["ntc"])
CUR_CONV = CurrentSensor(config.DEFAULTS["current"])
MICROPYTHON = sys.implementation.name == "micropython"
TICK_MS = config.DEFAULTS["control"]["period_ms"]
BOOT_TICKS = 8  # 40 ms: longer than the 30 ms debounce


def make_config(**overrides):
    text = '{"thing": "motor-test", "mqtt": {"host": "localhost"}}'
    cfg = config.parse(text)
    for key in overrides:
        section, name = key.split("__")
        cfg[section] = dict(cfg[section])  # the config shares untouched sections with DEFAULTS
        cfg[section][name] = overrides[key]
    return cfg


class Rig:
    """An App on fake hardware with sensor values in engineering units."""

    def __init__(self, cfg=None, temp_c=25.0, current_a=0.0, held=()):
        machine.reset_all()
        for name in held:  # buttons already down when the board powers up
            machine.held[PINS[name]] = 0
        if MICROPYTHON:
            gc.collect()  # the previous rig's rings are garbage now; keep the small heap unfragmented
        self.cfg = cfg or make_config()
        self.set_temp(temp_c)
        self.set_current(current_a)
        self.app = start.build(dict(self.cfg))  # build() drops the sections it has built from
        start.boot(self.app)
        self.run(BOOT_TICKS)  # the buttons are seen released (a press only counts after that)

    def set_temp(self, c):
        # c may be "open"/"short" to simulate wiring faults
        if c == "open":
            uv = 3300000
        elif c == "short":
            uv = 0
        else:
            uv = int(NTC_CONV.microvolts(c))
        machine.adc_uv[PINS["temp_adc"]] = uv

    def set_current(self, a):
        if a == "open":
            uv = 0
        elif a == "short":
            uv = 3300000
        else:
            uv = int(CUR_CONV.microvolts(a))
        machine.adc_uv[PINS["current_adc"]] = uv

    def pin(self, name):
        return machine.pins[PINS[name]]

    def button(self, name, down):
        self.pin(name).drive(0 if down else 1)

    def press(self, name, hold_ticks=10):
        self.button(name, True)
        self.run(hold_ticks)
        self.button(name, False)
        self.run(hold_ticks)  # released long enough to debounce too

    def run(self, ticks=1):
        for _ in range(ticks):
            self.app.tick(TICK_MS)

    def duty(self):
        return machine.pwms[PINS["servo"]].ns

    def led(self, name):
        return self.pin(name).level

    def state(self):
        return self.app.ctl.state

    def remote(self, code, arg=0):
        """A remote command as the network task hands it over (after its own checks)."""
        app = self.app
        if code == cmds.CMD_STOP:
            app.request_stop()
            self.run(1)
            return controller.OK
        app.mailbox.post(code, arg, app.stop_gen)
        self.run(1)
        return app.mailbox.result
