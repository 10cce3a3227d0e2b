# The few machine names the firmware's App touches, as stand-ins the heap measurements drive
# (vesp32/heap32): levels and adc_uv are what the pins see. They take what the esp32 port takes
# (a PWM given duty_ns in its constructor raises, as the chip's does) and are loaded before the
# counting starts, so they add nothing to the figures.

levels = {}  # gpio -> 0/1 (buttons: pull-up, 1 = released)
adc_uv = {34: 1650000, 35: 1666667}  # 25 C and 0 A on the default pin map


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    IRQ_FALLING = 2

    def __init__(self, n, mode=-1, pull=-1, *, value=None):
        self.n = n

    def value(self, v=None):
        if v is None:
            return levels.get(self.n, 1)
        return None

    def irq(self, handler=None, trigger=3, wake=None):
        return None


class PWM:
    def __init__(self, pin, freq=-1, *, duty=-1, duty_u16=-1, duty_ns=-1):
        if duty_ns >= 0:
            raise RuntimeError("PWM is inactive")
        self.ns = 0

    def duty_ns(self, ns=None):
        if ns is None:
            return self.ns
        self.ns = ns


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin, *, atten=3):
        self.n = pin.n

    def read_uv(self):
        return adc_uv[self.n]


class WDT:
    def __init__(self, id=0, timeout=5000):
        pass

    def feed(self):
        pass


def reset_cause():
    return 1


def reset():
    raise SystemExit
