# Safe mode: what the board does when its config is missing or corrupt. A module of its own,
# imported only then (start.load_config), so a healthy board never has this code in its heap.

import time

import machine

from motorguard.base import log


def run(reason, defaults):
    """Motor off, red LED blinking, the reason on the console, forever (the watchdog fed)."""
    pins = defaults["pins"]
    # duty_u16=0: a duty_ns in the constructor raises on the esp32 port (see App.__init__).
    machine.PWM(machine.Pin(pins["servo"]), freq=defaults["servo"]["freq_hz"], duty_u16=0)
    red = machine.Pin(pins["led_red"], machine.Pin.OUT, value=0)
    machine.Pin(pins["led_green"], machine.Pin.OUT, value=0)
    wdt = machine.WDT(timeout=defaults["control"]["wdt_timeout_ms"])
    n = 0
    while True:
        if n % 10 == 0:
            log("SAFE_MODE", "reason=" + reason.replace(" ", "_"), "msg=" + repr(reason))
        red.value(n & 1)
        wdt.feed()
        time.sleep_ms(500)
        n += 1
