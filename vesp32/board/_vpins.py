# Virtual ESP32 signal state: GPIO levels and IRQs, PWM channels, ADC inputs.
#
# State lives here keyed by GPIO number, so every machine.Pin(n) / PWM / ADC
# object for the same GPIO shares it, as on the chip. These are the firmware's
# hot paths (a pin write, a PWM change, an ADC read), so nothing here allocates:
# changes go to the harness through the codec's preallocated buffer. The caller
# (the simulated machine module) polls the harness channel before each access.

import time
import micropython

import _vwire as _W
import _vplant

_us = time.ticks_us

IN = 1
OUT = 3
OPEN_DRAIN = 7
PULL_DOWN = 1
PULL_UP = 2
IRQ_RISING = 1
IRQ_FALLING = 2

mode = {}  # gpio -> mode
pull = {}  # gpio -> pull
out = {}  # gpio -> output latch 0/1
drive = {}  # gpio -> level forced by the outside world (buttons), absent = floating
irqs = {}  # gpio -> [handler or None, trigger, pin object, spare]: one slot per GPIO (machine.py)
releases = []  # [gpio, deadline_us] pending button releases (see press())


def level(g):
    """The level on the wire: outside drive, else our output, else the pull resistor."""
    d = drive.get(g)
    if d is not None:
        return d
    m = mode.get(g, IN)
    if m == OUT or (m == OPEN_DRAIN and out.get(g, 0) == 0):
        return out.get(g, 0)
    return 1 if pull.get(g, -1) == PULL_UP else 0


def _edge(g, new):
    irq = irqs.get(g)
    if irq is None or irq[0] is None:
        return
    if (new == 0 and irq[1] & IRQ_FALLING) or (new == 1 and irq[1] & IRQ_RISING):
        # Scheduled, never run in the "ISR": the esp32 port has soft pin IRQs only.
        try:
            micropython.schedule(irq[0], irq[2])
        except RuntimeError:
            pass  # schedule queue full: the event is lost, as on the chip


def set_drive(g, lvl):
    old = level(g)
    if lvl is None:
        if g in drive:
            del drive[g]
    else:
        drive[g] = lvl
    new = level(g)
    if new != old:
        _edge(g, new)


def press(g, hold_ms, now):
    """A button (active low, pull-up) goes down now and is let go hold_ms later."""
    set_drive(g, 0)
    releases.append([g, time.ticks_add(now, int(hold_ms) * 1000)])


def release_due(now):
    """Let go of the buttons whose press has lasted long enough."""
    i = 0
    while i < len(releases):
        if time.ticks_diff(now, releases[i][1]) >= 0:
            g = releases.pop(i)[0]
            set_drive(g, None)
        else:
            i += 1


def _report_pin(g, v):
    p = _W.begin(b"pin", _us())
    p = _W.field(p, b"pin", g)
    _W.end(_W.field(p, b"v", v))


def set_out(g, v):
    """Firmware writes an output latch; a change on the wire goes to the harness."""
    old = level(g)
    out[g] = 1 if v else 0
    new = level(g)
    if new != old:
        m = mode.get(g, IN)
        if m == OUT or m == OPEN_DRAIN:
            _report_pin(g, new)
        _edge(g, new)


def configure(g, m, pl):
    """Pin.init(): mode/pull changes (None = keep). Outputs report their level."""
    old = level(g)
    if m is not None:
        mode[g] = m
    if pl is not None:
        pull[g] = pl
    new = level(g)
    m = mode.get(g, IN)
    if m == OUT or m == OPEN_DRAIN:
        _report_pin(g, new)
    if new != old:
        _edge(g, new)


# ---------------------------------------------------------------------------
# PWM (LEDC). The servo's pin drives the plant.
pwm_ns = {}  # gpio -> duty in ns (0 = no pulses)
pwm_hz = {}
servo_pin = -1  # from the harness's init


def pwm_off(g):
    """deinit(): the channel is released and the pin stops pulsing."""
    pwm_set(g, 0, pwm_hz.get(g, 0))
    pwm_hz.pop(g, None)
    pwm_ns.pop(g, None)


def pwm_set(g, ns, hz):
    if pwm_ns.get(g, -1) == ns and pwm_hz.get(g, -1) == hz:
        return
    now = _us()
    pwm_ns[g] = ns
    pwm_hz[g] = hz
    if g == servo_pin:
        _vplant.plant.pulse(ns, now)
    p = _W.begin(b"pwm", now)
    p = _W.field(p, b"pin", g)
    p = _W.field(p, b"ns", ns)
    _W.end(_W.field(p, b"f", hz))


# ---------------------------------------------------------------------------
# ADC inputs: the sensors' voltages from the plant, or a level the harness holds.
adc_role = {}  # gpio -> 1 temperature, 2 current
adc_uv = {}  # gpio -> fixed voltage set by the harness


def adc_read_uv(g):
    uv = adc_uv.get(g)
    if uv is not None:
        return uv
    role = adc_role.get(g, 0)
    if role == 0:
        return 0
    pl = _vplant.plant
    pl.advance(_us())
    return pl.temp_uv() if role == 1 else pl.cur_uv()
