# Simulated `machine` module of the Virtual ESP32 (MicroPython ESP32 semantics).
#
# Placed first on sys.path, it shadows the unix port's built-in `machine`
# (machine is one of MicroPython's extensible built-ins). Every call that
# touches hardware polls the harness channel first (_vboard.poll), then works
# on the shared signal state (_vpins) or the clocks (_vtimers).
#
# Implemented: Pin, Signal, PWM, ADC, WDT, Timer, RTC (minimal), reset,
# soft_reset, reset_cause, unique_id, freq, idle, lightsleep, deepsleep,
# disable_irq/enable_irq. Not simulated: I2C, SPI, UART, DAC, TouchPad, bitstream.

import time

import _vboard as _B
import _vpins as _P
import _vtimers as _T

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

PIN_WAKE = 2
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6

# GPIOs an ESP32 (WROOM) exposes to MicroPython; 6-11 belong to the flash.
_GPIOS = (0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
_ADC1 = (32, 33, 34, 35, 36, 37, 38, 39)
_ADC2 = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27)
_cpu_hz = [160000000]


def _gpio(pin):
    if isinstance(pin, Pin):
        return pin._id
    if isinstance(pin, int) and pin in _GPIOS:
        return pin
    raise ValueError("invalid pin")


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    PULL_HOLD = 4
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __new__(cls, id, *args, **kw):
        # On the chip Pin(n) is the one static object of GPIO n (ports/esp32/machine_pin.c),
        # so a pin costs the firmware no heap; here too: every Pin is made before the fence.
        p = _PINS.get(id) if type(id) is int else None
        if p is None:
            raise ValueError("invalid pin")
        return p

    def __init__(self, id, mode=-1, pull=-1, value=None, drive=None, hold=None):
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None, drive=None, hold=None):
        g = self._id
        if (mode == Pin.OUT or mode == Pin.OPEN_DRAIN) and g >= 34:
            raise ValueError("pin can only be input")
        if value is not None:
            _P.out[g] = 1 if value else 0
        _B.poll()
        _P.configure(g, None if mode == -1 else mode, None if pull == -1 else pull)

    def value(self, v=None):
        _B.poll()
        if v is None:
            return _P.level(self._id)
        _P.set_out(self._id, v)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, priority=1, wake=None, hard=False):
        # The handler goes into the pin's slot, made before the fence: the chip keeps it in a
        # static table too, so registering one allocates nothing.
        irq = _P.irqs[self._id]
        irq[0] = handler
        irq[1] = trigger if handler is not None else 0
        irq[3] = hard
        return self._irq

    def __repr__(self):
        return "Pin(%d)" % self._id


class _PinIRQ:
    def __init__(self, g):
        self._g = g

    def trigger(self):
        return _P.irqs[self._g][1]

    def flags(self):
        return 0


# The static objects of the chip, made at import (before the heap fence): GPIO n's pin, with
# its IRQ object and handler slot.
_PINS = {}
for _g in _GPIOS:
    _p = object.__new__(Pin)
    _p._id = _g
    _p._irq = _PinIRQ(_g)
    _PINS[_g] = _p
    _P.irqs[_g] = [None, 0, _p, False]
    # Every GPIO's entry exists before the fence too (the values the absent ones meant), so
    # configuring a pin only overwrites them: the chip keeps this state in registers.
    _P.mode[_g] = _P.IN
    _P.pull[_g] = -1
    _P.out[_g] = 0


class Signal:
    def __init__(self, pin, *args, invert=False, **kw):
        self._pin = pin if isinstance(pin, Pin) else Pin(pin, *args, **kw)
        self._inv = 1 if invert else 0

    def value(self, v=None):
        if v is None:
            return self._pin.value() ^ self._inv
        self._pin.value((1 if v else 0) ^ self._inv)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class PWM:
    """LEDC PWM. A new channel starts at 50 % duty unless a duty is given (as on
    the ESP32); deinit() stops the pulses (reported as duty 0)."""

    def __init__(self, dest, *, freq=-1, duty=-1, duty_u16=-1, duty_ns=-1, invert=False):
        self._g = _gpio(dest)
        if self._g >= 34:
            raise ValueError("PWM not supported on pin %d" % self._g)
        self._hz = _P.pwm_hz.get(self._g) or 5000
        self._ns = None
        self.init(freq=freq, duty=duty, duty_u16=duty_u16, duty_ns=duty_ns)

    def init(self, *, freq=-1, duty=-1, duty_u16=-1, duty_ns=-1, invert=False):
        if freq != -1:
            if not 0 < freq <= 40000000:
                raise ValueError("freq must be from 1Hz to 40MHz")
            self._hz = freq
        ns = self._ns
        if duty_ns != -1:
            ns = duty_ns
        elif duty_u16 != -1:
            ns = duty_u16 * (1000000000 // self._hz) // 65535
        elif duty != -1:
            ns = duty * (1000000000 // self._hz) // 1023
        elif ns is None:
            # An active channel keeps its duty; a new one starts at 50 %.
            ns = _P.pwm_ns[self._g] if self._g in _P.pwm_hz else 500000000 // self._hz
        self._set(ns)

    def _set(self, ns):
        period = 1000000000 // self._hz
        if ns < 0:
            ns = 0
        elif ns > period:
            ns = period
        self._ns = ns
        _B.poll()
        _P.pwm_set(self._g, ns, self._hz)

    def deinit(self):
        self._ns = 0
        _B.poll()
        _P.pwm_off(self._g)

    def freq(self, f=None):
        if f is None:
            return self._hz
        ns = self._ns or 0
        self._hz = f
        self._set(ns)

    def duty_ns(self, ns=None):
        if ns is None:
            return self._ns or 0
        self._set(ns)

    def duty_u16(self, v=None):
        period = 1000000000 // self._hz
        if v is None:
            return (self._ns or 0) * 65535 // period
        self._set(v * period // 65535)

    def duty(self, v=None):
        period = 1000000000 // self._hz
        if v is None:
            return (self._ns or 0) * 1023 // period
        self._set(v * period // 1023)

    def __repr__(self):
        return "PWM(Pin(%d), freq=%d, duty_ns=%d)" % (self._g, self._hz, self._ns or 0)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12
    _FULL = (950000, 1250000, 1750000, 3300000)  # input range per attenuation, uV

    def __new__(cls, pin, *args, **kw):
        # Static per channel on the chip (ports/esp32/machine_adc.c), its attenuation too.
        a = _ADCS.get(_gpio(pin))
        if a is None:
            raise ValueError("invalid pin for ADC")
        return a

    def __init__(self, pin, *, atten=0):
        self._atten = atten

    def init(self, *, atten=None):
        if atten is not None:
            self._atten = atten

    def atten(self, a):
        self._atten = a

    def width(self, w):
        pass

    def read_uv(self):
        if self._g in _ADC2:
            import network

            if network._sta_active():
                raise OSError("ADC2 is in use by Wi-Fi")
        _B.poll()
        uv = _P.adc_read_uv(self._g)
        full = ADC._FULL[self._atten]
        if uv < 0:
            return 0
        return full if uv > full else uv

    def read_u16(self):
        return self.read_uv() * 65535 // ADC._FULL[self._atten]

    def read(self):
        return self.read_uv() * 4095 // ADC._FULL[self._atten]


_ADCS = {}
for _g in _ADC1 + _ADC2:
    _a = object.__new__(ADC)
    _a._g = _g
    _a._atten = 0
    _ADCS[_g] = _a


class WDT:
    """The task watchdog. The harness holds the timer: it SIGKILLs this process
    when no feed arrives in time and restarts it with reset_cause() == WDT_RESET."""

    def __new__(cls, id=0, timeout=5000):
        return _WDT  # one static object on the chip (ports/esp32/machine_wdt.c)

    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError("only WDT(0)")
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        _T.wdt_start(timeout)

    def feed(self):
        _B.poll()
        _T.wdt_feed()


_WDT = object.__new__(WDT)


class Timer:
    """Soft timers: due callbacks are scheduled (micropython.schedule) at the
    next hardware access, so they run within one control period of the firmware."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=0, **kw):
        self._id = id
        self._armed = False
        if kw:
            self.init(**kw)

    def init(self, *, mode=PERIODIC, period=-1, freq=-1, callback=None, tick_hz=1000):
        self.deinit()
        if freq != -1:
            us = 1000000 // freq
        elif period != -1:
            us = period * 1000000 // tick_hz
        else:
            raise ValueError("period or freq required")
        self._period = us if us > 0 else 1
        self._periodic = mode == Timer.PERIODIC
        self._cb = callback
        self._next = time.ticks_add(time.ticks_us(), self._period)
        if callback is not None:
            self._armed = True
            _T.timers.append(self)

    def deinit(self):
        if self._armed:
            self._armed = False
            if self in _T.timers:
                _T.timers.remove(self)

    def value(self):
        if not self._armed:
            return 0
        return max(0, time.ticks_diff(self._next, time.ticks_us()) // 1000)


class RTC:
    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        if dt is None:
            t = time.localtime()
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        # Host time is the simulated RTC; setting it is accepted and ignored.

    def init(self, dt=None):
        pass

    def memory(self, data=None):
        return b""


def reset():
    # esp_restart(): the next boot reports SOFT_RESET on the ESP32.
    _B.reset(SOFT_RESET)


def soft_reset():
    # Ends main.py with SystemExit; the launcher soft-reboots (same reset cause).
    raise SystemExit


def reset_cause():
    return _B.CAUSE


def wake_reason():
    return TIMER_WAKE if _B.CAUSE == DEEPSLEEP_RESET else 0


def unique_id():
    return _B.MAC


def freq(hz=None):
    if hz is None:
        return _cpu_hz[0]
    if hz not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _cpu_hz[0] = hz


def idle():
    _B.poll()


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def lightsleep(time_ms=None):
    # Soft IRQs and timers still run, at 5 ms granularity.
    t0 = time.ticks_ms()
    while time_ms is None or time.ticks_diff(time.ticks_ms(), t0) < time_ms:
        time.sleep_ms(5)
        _B.poll()


sleep = lightsleep


def deepsleep(time_ms=0):
    _B.reset(DEEPSLEEP_RESET, sleep_ms=time_ms)
