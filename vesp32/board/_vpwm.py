# machine.PWM of the virtual ESP32: the esp32 port's LEDC PWM (v1.26.1), apart from machine.py,
# which imports it. The per-GPIO state lists (STATE) are made by machine.py with its pins, before the
# heap fence, as the chip keeps this state in registers.

import _vboard as _B
import _vpins as _P

STATE = {}  # GPIO -> [gpio, active, scale, duty_u16, channel, resolution, hz]


def _gpio(dest):
    # machine._gpio's rule: a Pin (its _id) or the number of a GPIO the chip has.
    g = getattr(dest, "_id", dest)
    if isinstance(g, int) and g in STATE:
        return g
    raise ValueError("invalid pin")


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

    The state lives in a list per GPIO made before the heap fence (STATE, filled by machine.py), so a PWM object
    costs the firmware's heap what the chip's small C struct does, not a dict of attributes."""

    def __init__(self, dest, freq=-1, *, duty=-1, duty_u16=-1, duty_ns=-1, invert=False, lightsleep=False):
        g = _gpio(dest)
        if g >= 34:
            raise ValueError("PWM not supported on pin %d" % g)
        self._s = st = STATE[g]
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


