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
_PWM_STATE = {}
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
    _PWM_STATE[_g] = [_g, 0, 0, 0, 0, 16, 0]


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


# LEDC numbers of the esp32 port (ports/esp32/machine_pwm.c): duty is kept in 16 bits, the timer
# counts from the 80 MHz APB clock (1 MHz REF_TICK below 10 Hz) with at most 16 bits of resolution.
_U16 = 65536
_APB_HZ = 80000000
_REF_HZ = 1000000


def _resolution(hz):
    # ledc_find_suitable_duty_resolution: the bits of one period of the source clock, at most 16.
    ticks = (_REF_HZ if hz < 10 else _APB_HZ) // hz
    bits = 0
    while ticks > 1:
        ticks >>= 1
        bits += 1
    return 16 if bits > 16 else bits


class PWM:
    """LEDC PWM as the esp32 port (v1.26.1) has it.

    A new object has no timer until its constructor finishes: a duty_ns given to the constructor is
    checked against that timer and raises RuntimeError("PWM is inactive"); duty_u16 or duty there
    are fine. A channel given no duty starts at 50 %. Duty is kept in 16 bits and written to the
    timer's resolution, so duty_ns() reads back the quantized value (305 ns steps at 50 Hz).
    deinit() stops the pulses and leaves the object inactive.

    The state lives in a list per GPIO made before the heap fence (_PWM_STATE), so a PWM object
    costs the firmware's heap what the chip's small C struct does, not a dict of attributes."""

    def __init__(self, dest, freq=-1, *, duty=-1, duty_u16=-1, duty_ns=-1, invert=False, lightsleep=False):
        g = _gpio(dest)
        if g >= 34:
            raise ValueError("PWM not supported on pin %d" % g)
        self._s = st = _PWM_STATE[g]
        st[_ACT] = st[_SCALE] = st[_UI] = 0  # the port's self_reset(): a new object has no timer
        self.init(freq, duty=duty, duty_u16=duty_u16, duty_ns=duty_ns, invert=invert, lightsleep=lightsleep)

    def init(self, freq=-1, *, duty=-1, duty_u16=-1, duty_ns=-1, invert=False, lightsleep=False):
        st = self._s
        if freq != -1:
            _check_freq(freq)
        if duty_u16 >= 0:
            _check_u16(st, duty_u16)
        elif duty_ns >= 0:
            _check_ns(st, duty_ns)  # before a timer exists: RuntimeError, as on the chip
        elif duty >= 0:
            _check_u10(st, duty)
        elif st[_SCALE] == 0:
            st[_SCALE], st[_UI] = 16, _U16 // 2
        if freq == -1:
            freq = _P.pwm_hz.get(st[_GPIO]) or 5000  # the channel's timer, else the default 5 kHz
        _set_freq(st, freq)
        _apply(st)

    def deinit(self):
        st = self._s
        st[_ACT] = st[_SCALE] = 0
        _B.poll()
        _P.pwm_off(st[_GPIO])

    def freq(self, f=None):
        st = self._s
        _inactive(st)
        if f is None:
            return st[_HZ]
        _check_freq(f)
        if f != st[_HZ]:
            _set_freq(st, f)
            _apply(st)

    def duty_ns(self, ns=None):
        st = self._s
        if ns is None:
            return _read_ns(st)
        _check_ns(st, ns)
        _apply(st)

    def duty_u16(self, v=None):
        st = self._s
        if v is None:
            return _read_u16(st)
        _check_u16(st, v)
        _apply(st)

    def duty(self, v=None):
        st = self._s
        if v is None:
            return _read_u16(st) >> 6
        _check_u10(st, v)
        _apply(st)

    def __repr__(self):
        st = self._s
        if not st[_ACT]:
            return "PWM(Pin(%d))" % st[_GPIO]
        return "PWM(Pin(%d), freq=%d, duty_ns=%d)" % (st[_GPIO], st[_HZ], _read_ns(st))


# A PWM's state, one list per GPIO: [gpio, timer assigned (the port's self->timer >= 0),
# duty scale (0 none yet, 16 duty_u16, 10 duty, 1 duty_ns), duty as given, channel duty in timer
# counts, timer resolution in bits, frequency].
_GPIO, _ACT, _SCALE, _UI, _CHAN, _RES, _HZ = 0, 1, 2, 3, 4, 5, 6


def _inactive(st):
    if not st[_ACT]:
        raise RuntimeError("PWM is inactive")


def _check_freq(hz):
    if not 0 < hz <= 40000000:
        raise ValueError("frequency must be from 1Hz to 40MHz")


def _check_u16(st, d):
    if not 0 <= d <= _U16 - 1:
        raise ValueError("duty_u16 must be from 0 to %d" % _U16)
    st[_SCALE], st[_UI] = 16, (_U16 if d == _U16 - 1 else d)


def _check_u10(st, d):
    if not 0 <= d <= 1023:
        raise ValueError("duty must be from 0 to 1023")
    st[_SCALE], st[_UI] = 10, (1024 if d == 1023 else d)


def _check_ns(st, ns):
    most = _to_ns(st, _U16)
    if not 0 <= ns <= most:
        raise ValueError("duty_ns must be from 0 to %d ns" % most)
    st[_SCALE], st[_UI] = 1, ns


def _to_ns(st, d16):
    _inactive(st)
    hz = st[_HZ]
    return (d16 * 1000000000 + hz * (_U16 // 2)) // (hz * _U16)


def _to_u16(st, ns):
    _inactive(st)
    d = (ns * _U16 * st[_HZ] + 500000000) // 1000000000
    if ns > 0 and d == 0:
        return 1
    return _U16 if d > _U16 else d


def _set_freq(st, hz):
    _check_freq(hz)
    st[_HZ] = hz
    st[_RES] = _resolution(hz)
    st[_ACT] = 1


def _apply(st):
    _inactive(st)
    scale = st[_SCALE]
    if scale == 16:
        d = st[_UI]
    elif scale == 10:
        d = st[_UI] << 6
    else:
        d = _to_u16(st, st[_UI])
    st[_CHAN] = d >> (16 - st[_RES])
    _B.poll()
    _P.pwm_set(st[_GPIO], _read_ns(st), st[_HZ])


def _read_u16(st):
    _inactive(st)
    d = st[_CHAN] << (16 - st[_RES])
    return _U16 - 1 if d == _U16 else d


def _read_ns(st):
    return _to_ns(st, _read_u16(st))


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
