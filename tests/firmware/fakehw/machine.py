# In-process stand-in for the ESP32 `machine` module, for the firmware's logic
# tests (CPython and MicroPython). Hardware is the true edge here: the tests set
# pin levels and ADC voltages directly and read back PWM duty and LEDs.
# The socket-driven virtual board (vesp32/board) is used for whole-device tests.
#
# Where the firmware's logic depends on it, this stand-in refuses what the esp32 port
# (v1.26.1) refuses: duty_ns in the PWM constructor (RuntimeError "PWM is inactive"), a duty
# out of range, hard= on a pin IRQ; and the ADC reads through the chip's characteristics (the
# virtual board's model, vesp32/board/_vadc.py): a grounded input reads ~150 mV, the rail saturates.

import _vadc

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

pins = {}  # id -> Pin
held = {}  # pin id -> level driven from outside before the pin is even set up (held at boot)
adc_uv = {}  # pin id -> microvolts
pwms = {}  # pin id -> PWM
wdt_feeds = [0]
reset_cause_value = [PWRON_RESET]


def reset_all():
    pins.clear()
    held.clear()
    adc_uv.clear()
    pwms.clear()
    wdt_feeds[0] = 0


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self.level = 1 if pull == Pin.PULL_UP else 0
        if value is not None:
            self.level = value
        if id in held:
            self.level = held[id]
        self.handler = None
        self.trigger = 0
        pins[id] = self

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0

    def on(self):
        self.level = 1

    def off(self):
        self.level = 0

    def irq(self, handler=None, trigger=3, wake=None):
        self.handler = handler
        self.trigger = trigger

    def drive(self, level):
        """Test side: an external level change; runs the IRQ handler as the ESP32 would (soon after)."""
        old = self.level
        self.level = level
        if self.handler and old != level:
            if (level == 0 and self.trigger & Pin.IRQ_FALLING) or (level == 1 and self.trigger & Pin.IRQ_RISING):
                self.handler(self)


class PWM:
    def __init__(self, pin, freq=-1, *, duty=-1, duty_u16=-1, duty_ns=-1):
        if duty_ns >= 0:
            raise RuntimeError("PWM is inactive")  # checked before the channel has a timer
        if duty_u16 > 65535 or duty > 1023:
            raise ValueError("duty out of range")
        self.pin = pin
        self.f = 5000 if freq == -1 else freq
        self.ns = 0 if duty_u16 == 0 or duty == 0 else 1000000000 // self.f // 2  # no duty given: 50 %
        self.writes = 0
        pwms[pin.id] = self

    def freq(self, f=None):
        if f is None:
            return self.f
        self.f = f

    def duty_ns(self, ns=None):
        if ns is None:
            return self.ns
        if not 0 <= ns <= 1000000000 // self.f:
            raise ValueError("duty_ns must be from 0 to %d ns" % (1000000000 // self.f))
        self.ns = ns
        self.writes += 1

    def deinit(self):
        self.ns = 0


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, pin, *, atten=ATTN_11DB):
        self.id = pin.id
        self.atten = atten

    def read_uv(self):
        # What the pin sees, through the converter's floor and saturation.
        return _vadc.reading_uv(adc_uv.get(self.id, 0), self.atten)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout

    def feed(self):
        wdt_feeds[0] += 1


def reset_cause():
    return reset_cause_value[0]


def reset():
    raise SystemExit("machine.reset")


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"
