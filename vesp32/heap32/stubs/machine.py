# The few machine names the firmware's App touches, as inert objects: the 32-bit heap figure
# (vesp32/heap32) counts the firmware's own code and data, and these are loaded before it counts.


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    IRQ_FALLING = 2

    def __init__(self, n, mode=None, pull=None, value=None):
        self.n = n

    def value(self, v=None):
        return 1 if v is None else None

    def irq(self, handler=None, trigger=0):
        return None


class PWM:
    def __init__(self, pin, freq=50, duty_ns=0):
        pass

    def duty_ns(self, ns=None):
        return 0


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin, atten=0):
        pass

    def read_uv(self):
        return 1650000


class WDT:
    def __init__(self, timeout=0):
        pass

    def feed(self):
        pass


def reset_cause():
    return 1


def reset():
    raise SystemExit
