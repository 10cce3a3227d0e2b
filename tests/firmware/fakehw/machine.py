# In-process stand-in for the ESP32 `machine` module, for the firmware's logic
# tests (CPython and MicroPython). Hardware is the true edge here: the tests set
# pin levels and ADC voltages directly and read back PWM duty and LEDs.
# The socket-driven virtual board (vesp32/board) is used for whole-device tests.

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

    def irq(self, handler=None, trigger=3, hard=False):
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
    def __init__(self, pin, freq=50, duty_ns=0):
        self.pin = pin
        self.f = freq
        self.ns = duty_ns
        self.writes = 0
        pwms[pin.id] = self

    def freq(self, f=None):
        if f is None:
            return self.f
        self.f = f

    def duty_ns(self, ns=None):
        if ns is None:
            return self.ns
        self.ns = ns
        self.writes += 1

    def deinit(self):
        self.ns = 0


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, pin, atten=ATTN_0DB):
        self.id = pin.id

    def read_uv(self):
        return adc_uv.get(self.id, 0)


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
