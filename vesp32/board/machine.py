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

import _vadc as _A
import _vboard as _B
import _vpwm as _M
from _vpwm import PWM  # noqa: F401 - machine.PWM, the LEDC model in a module of its own
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

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
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

    def irq(self, handler=None, trigger=3, wake=None):
        # The esp32 port takes handler, trigger and wake only (ports/esp32/machine_pin.c): every
        # handler is scheduled (a soft IRQ), so hard= or priority= is a TypeError, as here. The
        # handler goes into the pin's slot, made before the fence: the chip keeps it in a static
        # table too, so registering one allocates nothing.
        irq = _P.irqs[self._id]
        irq[0] = handler
        irq[1] = trigger if handler is not None else 0
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
    _M.STATE[_g] = [_g, 0, 0, 0, 0, 16, 0]


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


class ADC:
    """ADC1/ADC2 channels as the esp32 port (v1.26.1) has them: static per channel, 11 dB unless told
    otherwise, read_uv() calibrated in whole millivolts with the converter's floor and saturation
    (_vadc). ADC2 cannot convert while Wi-Fi runs; the port ignores the driver's error, so the read
    returns the code 0's value (the floor), not an exception."""

    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    def __new__(cls, pin, *args, **kw):
        # Static per channel on the chip (ports/esp32/machine_adc.c), its attenuation too.
        a = _ADCS.get(_gpio(pin))
        if a is None:
            raise ValueError("invalid pin")
        return a

    def __init__(self, pin, *, atten=-1):
        self.atten(3 if atten == -1 else atten)  # the port's default is ADC_ATTEN_MAX (11 dB)
        self._bits = 12

    def init(self, *, atten=-1):
        if atten != -1:
            self.atten(atten)

    def atten(self, a):
        if not 0 <= a <= 3:
            raise ValueError("invalid attenuation")
        self._atten = a

    def width(self, w):
        if not 9 <= w <= 12:
            raise ValueError("invalid bit-width")
        self._bits = w

    def _uv_on_pin(self):
        _B.poll()
        if self._g in _ADC2:
            import network

            if network._sta_active():
                return 0  # the conversion failed; the port reads the code 0 regardless
        return _P.adc_read_uv(self._g)

    def read_uv(self):
        return _A.reading_uv(self._uv_on_pin(), self._atten)

    def read_u16(self):
        return _A.raw12(self._uv_on_pin(), self._atten) << 4

    def read(self):
        return _A.raw12(self._uv_on_pin(), self._atten) >> (12 - self._bits)


_ADCS = {}
for _g in _ADC1 + _ADC2:
    _a = object.__new__(ADC)
    _a._g = _g
    _a._atten = 3
    _a._bits = 12
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
    """The esp32 port's hardware timers (v1.26.1, ports/esp32/machine_timer.c): ids 0-3, one object
    per id, keyword-only settings (mode, callback, period, tick_hz, freq). The callback is
    scheduled like a soft IRQ, at the next hardware access here. v1.26.1 knows no hard=, so it is
    a TypeError; later releases (1.27+) take it and raise ValueError for hard=True."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __new__(cls, id, *args, **kw):
        if type(id) is not int or not 0 <= id <= 3:
            raise ValueError("invalid Timer number")
        t = _TIMERS.get(id)
        if t is None:
            t = _TIMERS[id] = object.__new__(Timer)
            t._id = id
            t._armed = False
            t._set = False
        return t

    def __init__(self, id, *, mode=1, callback=None, period=-1, tick_hz=1000, freq=None):
        if callback is not None or period != -1 or freq is not None:
            self.init(mode=mode, callback=callback, period=period, tick_hz=tick_hz, freq=freq)

    def init(self, *, mode=1, callback=None, period=-1, tick_hz=1000, freq=None):
        self.deinit()
        if freq is not None:
            us = int(1000000 // freq)
        elif period != -1:
            us = period * 1000000 // tick_hz
        else:
            raise ValueError("period or freq required")
        self._period = us if us > 0 else 1
        self._periodic = mode == Timer.PERIODIC
        self._cb = callback
        self._next = time.ticks_add(time.ticks_us(), self._period)
        self._set = True
        if callback is not None:
            self._armed = True
            _T.timers.append(self)

    def deinit(self):
        self._set = False
        if self._armed:
            self._armed = False
            if self in _T.timers:
                _T.timers.remove(self)

    def value(self):
        if not self._set:
            raise ValueError("timer not set")
        if not self._armed:
            return 0
        return max(0, time.ticks_diff(self._next, time.ticks_us()) // 1000)


_TIMERS = {}


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
    # esp_restart(): ESP_RST_SW, which the port reports as HARD_RESET (ports/esp32/modmachine.c).
    _B.reset(HARD_RESET)


def soft_reset():
    # Ends main.py with SystemExit; the launcher soft-reboots: the next boot reports SOFT_RESET.
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
