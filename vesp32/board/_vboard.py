# Virtual ESP32 board core: the control channel to the CPython harness, the pin,
# PWM and ADC state shared by the simulated `machine` and `network` modules, and
# the plant (servo, motor current, motor temperature, the two sensors).
#
# Runs inside the real MicroPython unix interpreter, next to the unchanged
# firmware, under the same -X heapsize limit. So the hot paths here (a PWM
# change, a pin write, an ADC read, a WDT feed, the poll of the channel) do not
# allocate: integers only, messages written into a preallocated buffer. That
# keeps the firmware's heap and GC behaviour close to what it would be on a board.
#
# No threads: the channel is polled (non-blocking) at every hardware call. The
# firmware's control task touches hardware every few ms, so harness inputs apply
# within one control period; if the firmware blocks, they apply late, and the
# harness sees that in the measured latency.
#
# Wire format, newline-delimited JSON both ways. Device -> harness messages carry
# "e" (kind) and "t" (time.time_ns() on the host clock); see docs/virtual-esp32.md.

import sys
import time
import os
import socket  # the unix built-in (imported before any shim replaces it)
import micropython
import gc

import json
import math

_us = time.ticks_us
_diff = time.ticks_diff

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

RAIL_UV = 3300000  # ADC input clamp (11 dB attenuation) and the 3.3 V rail

CAUSE = int(os.getenv("VESP32_BOOT_CAUSE") or PWRON_RESET)
MAC = b"\x24\x0a\xc4\x00\x00\x01"

# ---------------------------------------------------------------------------
# Time: message timestamps are host time.time_ns(), written without big ints.
# A base (seconds, nanoseconds) pair is taken from time_ns() now and then and
# advanced with ticks_us() (a small int) in between.
_base_s = 0
_base_ns = 0
_base_us = 0


def rebase():
    global _base_s, _base_ns, _base_us
    ns = time.time_ns()
    _base_us = _us()
    _base_s = ns // 1000000000
    _base_ns = ns - _base_s * 1000000000


rebase()

# ---------------------------------------------------------------------------
# Outgoing messages, written into one preallocated buffer.
_wb = bytearray(256)
sock = None
_lost_note = False


def _pb(p, b):
    n = len(b)
    _wb[p : p + n] = b
    return p + n


def _pi(p, n, width=1):
    """Decimal digits of a small int at p (zero padded to width); returns the new end."""
    if n < 0:
        _wb[p] = 45
        p += 1
        n = -n
    s = p
    while n or p - s < width:
        _wb[p] = 48 + n % 10
        n //= 10
        p += 1
    i = s
    j = p - 1
    while i < j:
        c = _wb[i]
        _wb[i] = _wb[j]
        _wb[j] = c
        i += 1
        j -= 1
    return p


def _pt(p, now):
    """The host time_ns() of ticks_us() value `now`, as decimal digits at p."""
    ns = _base_ns + _diff(now, _base_us) * 1000
    p = _pi(p, _base_s + ns // 1000000000)
    return _pi(p, ns % 1000000000, 9)


def _begin(kind, now):
    p = _pb(0, b'{"e":"')
    p = _pb(p, kind)
    return _pt(_pb(p, b'","t":'), now)


def _field(p, name, value):
    p = _pb(p, b',"')
    p = _pb(p, name)
    p = _pb(p, b'":')
    return _pi(p, value)


def _end(p):
    p = _pb(p, b"}\n")
    _write(_wb, p)


def _write(buf, n):
    global sock
    if sock is None:
        return
    try:
        w = sock.write(buf, n)
        if w is None:
            w = 0
        if w < n:  # kernel buffer full: finish blocking (the harness always reads)
            sock.setblocking(True)
            sock.write(buf, w, n - w)
            sock.setblocking(False)
    except OSError:
        _lost()


def send(obj, now=None):
    """Rare messages (hello, reset, ack, logs): plain JSON, allocation is fine here."""
    if sock is None:
        return
    t = bytes(_wb[: _pt(0, _us() if now is None else now)]).decode()
    b = ('{"t":' + t + "," + json.dumps(obj)[1:] + "\n").encode()
    _write(b, len(b))


def _lost():
    global sock, _lost_note
    try:
        sock.close()
    except Exception:
        pass
    sock = None
    if not _lost_note:
        _lost_note = True
        print("vesp32: control channel closed; running without a harness")


# ---------------------------------------------------------------------------
# Pins. State lives here keyed by GPIO number, so every Pin(n) object for the
# same GPIO shares it, as on the chip.
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
irqs = {}  # gpio -> [handler, trigger, pin object, hard]
_release = []  # [gpio, deadline_us] pending button releases


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
    if irq is None:
        return
    if (new == 0 and irq[1] & IRQ_FALLING) or (new == 1 and irq[1] & IRQ_RISING):
        if irq[3]:
            irq[0](irq[2])  # hard IRQ: runs at once, as an ISR would
        else:
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


def _report_pin(g, v):
    p = _begin(b"pin", _us())
    p = _field(p, b"pin", g)
    _end(_field(p, b"v", v))


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
# PWM and the WDT reports.
pwm_ns = {}  # gpio -> duty in ns (0 = no pulses)
pwm_hz = {}
servo_pin = -1


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
        plant.pulse(ns, now)
    p = _begin(b"pwm", now)
    p = _field(p, b"pin", g)
    p = _field(p, b"ns", ns)
    _end(_field(p, b"f", hz))


wdt_ms = 0
_feed_us = 0
_feed_every_us = 50000


def wdt_start(ms):
    global wdt_ms, _feed_us
    wdt_ms = ms
    now = _us()
    _feed_us = now
    _end(_field(_begin(b"wdt", now), b"ms", ms))


def wdt_feed():
    global _feed_us
    poll()
    now = _us()
    if _diff(now, _feed_us) >= _feed_every_us:
        _feed_us = now
        _end(_begin(b"feed", now))


# ---------------------------------------------------------------------------
# Timers (machine.Timer): due ones are scheduled at poll points.
timers = []


def _run_timers(now):
    i = 0
    while i < len(timers):
        tm = timers[i]
        if _diff(now, tm._next) >= 0:
            try:
                micropython.schedule(tm._cb, tm)
            except RuntimeError:
                pass
            if tm._periodic:
                tm._next = time.ticks_add(tm._next, tm._period)
                if _diff(now, tm._next) >= 0:  # fell behind: skip, do not burst
                    tm._next = time.ticks_add(now, tm._period)
            else:
                timers.pop(i)
                tm._armed = False
                continue
        i += 1


# ---------------------------------------------------------------------------
# Wi-Fi as the harness has it.
wifi_up = True
wifi_since = time.ticks_add(_us(), -10000000)  # when the access point last came back
rssi = -55
hosts = []  # [[host, port, new_host, new_port]] DNS rewrites (e.g. to the fault proxy)


# ---------------------------------------------------------------------------
# The plant. Integer units: micro-degrees C, milliamps, milli-degrees of servo
# angle, microseconds. Evaluated lazily from the elapsed time at each read.
class Plant:
    def __init__(self):
        self.t = _us()
        self.temp = 25000000  # uC, thermal state
        self.ambient = 25000000
        self.load = 1000  # permille of the nominal mechanical load
        self.forced_ma = None
        self.forced_temp = None
        self.temp_fault = 0  # 0 ok, 1 open, 2 short
        self.cur_fault = 0
        self.pos = 90000  # mdeg
        self.target = 90000
        self.pulsed = False
        self.still = 10000000  # us since the servo last moved
        self.ma = 0
        # Model constants (the harness may override them in init).
        self.idle_ma = 150
        self.k_ma = 600
        self.heat = 110000  # a in uC/s per (mA^2) * 1e6  (a = 0.11 C/(A^2 s))
        self.tau_ms = 60000
        self.slew = 600000  # mdeg/s (60 deg per 0.1 s)
        self.scale = 1000  # time_scale for the thermal model, permille
        # Sensors (from the merged config, sent by the harness).
        self.ntc = None  # (supply_uv, fixed_ohm, r0_ohm, t0_kelvin, beta)
        self.zero_uv = 1666667
        self.uv_per_a = 123333
        self._ntc_temp = None
        self._ntc_uv = 0
        self.noise = 0
        self.seed = 1

    def pulse(self, ns, now):
        self.advance(now)
        if 400000 <= ns <= 2600000:  # what a hobby servo accepts as a command pulse
            self.pulsed = True
            a = (ns - 1000000) * 180 // 1000  # 1.0-2.0 ms = 0-180 deg, in mdeg
            self.target = 0 if a < 0 else (180000 if a > 180000 else a)
        else:
            self.pulsed = False  # no (valid) pulses: the servo holds, draws nothing

    def advance(self, now):
        dt = _diff(now, self.t)
        if dt <= 0:
            return
        self.t = now
        while dt > 0:
            step = 10000 if dt > 10000 else dt
            dt -= step
            if self.pulsed and self.pos != self.target:
                move = self.slew * step // 1000000
                d = self.target - self.pos
                if d > move:
                    self.pos += move
                elif d < -move:
                    self.pos -= move
                else:
                    self.pos = self.target
                self.still = 0
            elif self.still < 10000000:
                self.still += step
            if self.forced_ma is not None:
                ma = self.forced_ma
            elif not self.pulsed:
                ma = 0
            else:
                ma = self.idle_ma + self.k_ma * self.load * (1000 if self.still < 100000 else 500) // 1000000
            self.ma = ma
            if self.forced_temp is not None:
                self.temp = self.forced_temp
            else:
                sdt = step * self.scale // 1000
                heat = ma * ma * self.heat // 1000000
                cool = (self.temp - self.ambient) * 1000 // self.tau_ms
                self.temp += (heat - cool) * sdt // 1000000

    def _noise(self, uv):
        if self.noise:
            self.seed = (self.seed * 1103515245 + 12345) & 0x3FFFFFFF
            uv += self.seed % (2 * self.noise + 1) - self.noise
        return uv

    def temp_uv(self):
        if self.temp_fault == 1:
            return RAIL_UV  # NTC open: the node floats to the supply through the fixed resistor
        if self.temp_fault == 2 or self.ntc is None:
            return 0  # NTC shorted to ground
        t = self.temp
        c = self._ntc_temp
        if c is None or t - c >= 5000 or c - t >= 5000:  # recompute every 0.005 C
            supply, fixed, r0, t0k, beta = self.ntc
            r = r0 * math.exp(beta * (1.0 / (t / 1000000.0 + 273.15) - 1.0 / t0k))
            self._ntc_uv = int(supply * r / (fixed + r))
            self._ntc_temp = t
        return self._noise(self._ntc_uv)

    def cur_uv(self):
        if self.cur_fault == 1:
            return 0  # sensor output open: pulled to ground by the divider
        if self.cur_fault == 2:
            return RAIL_UV  # shorted to the sensor supply
        return self._noise(self.zero_uv + self.uv_per_a * self.ma // 1000)


plant = Plant()
adc_role = {}  # gpio -> 1 temperature, 2 current
adc_uv = {}  # gpio -> fixed voltage set by the harness

_FAULTS = {"ok": 0, "open": 1, "short": 2}


def adc_read_uv(g):
    poll()
    uv = adc_uv.get(g)
    if uv is not None:
        return uv
    role = adc_role.get(g, 0)
    if role == 0:
        return 0
    plant.advance(_us())
    return plant.temp_uv() if role == 1 else plant.cur_uv()


def plant_set(key, v):
    pl = plant
    pl.advance(_us())
    if key == "load":
        pl.load = int(v * 1000)
    elif key == "amps":
        pl.forced_ma = None if v is None else int(v * 1000)
    elif key == "temp":
        pl.forced_temp = None if v is None else int(v * 1000000)
    elif key == "temp_c":  # the thermal state itself (used to carry it across reboots)
        pl.temp = int(v * 1000000)
    elif key == "ambient":
        pl.ambient = int(v * 1000000)
    elif key == "pos_deg":
        pl.pos = pl.target = int(v * 1000)
    elif key == "temp_sensor":
        pl.temp_fault = _FAULTS[v]
    elif key == "current_sensor":
        pl.cur_fault = _FAULTS[v]
    elif key == "time_scale":
        pl.scale = int(v * 1000)
    elif key == "noise_uv":
        pl.noise = int(v)
    elif key == "seed":
        pl.seed = int(v) & 0x3FFFFFFF
    elif key == "idle_a":
        pl.idle_ma = int(v * 1000)
    elif key == "k_a":
        pl.k_ma = int(v * 1000)
    elif key == "heat_c_per_a2s":
        pl.heat = int(v * 1000000)
    elif key == "tau_s":
        pl.tau_ms = int(v * 1000)
    elif key == "slew_deg_s":
        pl.slew = int(v * 1000)
    else:
        raise ValueError("unknown plant key " + key)


# ---------------------------------------------------------------------------
# Incoming control messages.
_rb = bytearray(512)
_inbuf = b""
_inited = False
_snap_us = _us()
_SNAP_EVERY_US = 200000
_heap_us = 0
_heap_min = 1 << 29  # lowest gc.mem_free() since the last snapshot
_rebase_us = _us()
buttons = {}  # logical name -> gpio


def poll():
    """Called at every hardware access: apply harness input, releases, timers, snapshots."""
    global _snap_us, _rebase_us, _heap_us, _heap_min
    s = sock
    while s is not None:
        try:
            n = s.readinto(_rb)
        except OSError:
            _lost()
            break
        if n is None:
            break
        if n == 0:
            _lost()
            break
        _feed_in(n)
        s = sock
        if n < len(_rb):
            break
    now = _us()
    if _release:
        i = 0
        while i < len(_release):
            if _diff(now, _release[i][1]) >= 0:
                g = _release.pop(i)[0]
                set_drive(g, None)
            else:
                i += 1
    if timers:
        _run_timers(now)
    if _diff(now, _heap_us) >= 1000:
        # The lowest free heap seen (garbage included), sampled at most once a ms:
        # gc.mem_free() scans the allocation table (~25 us on the host).
        _heap_us = now
        f = gc.mem_free()
        if f < _heap_min:
            _heap_min = f
    if sock is not None and _diff(now, _snap_us) >= _SNAP_EVERY_US:
        _snap_us = now
        if _diff(now, _rebase_us) >= 1000000:
            _rebase_us = now
            rebase()
        pl = plant
        pl.advance(now)
        p = _begin(b"plant", now)
        p = _field(p, b"mc", pl.temp // 1000)
        p = _field(p, b"ma", pl.ma)
        p = _field(p, b"mdeg", pl.pos)
        p = _field(p, b"free", _heap_min)
        _heap_min = 1 << 29
        _end(p)


def _feed_in(n):
    global _inbuf
    _inbuf += bytes(_rb[:n])
    while True:
        i = _inbuf.find(b"\n")
        if i < 0:
            return
        line = _inbuf[:i]
        _inbuf = _inbuf[i + 1 :]
        if line:
            try:
                handle(json.loads(line))
            except Exception as e:  # a bad message must not take the firmware down
                print("vesp32: bad control message", repr(e))


def _gpio(msg):
    g = msg.get("pin")
    if g is None:
        name = msg["name"]
        g = buttons.get(name)
        if g is None:
            raise ValueError("unknown button " + name)
    return g


def handle(msg):
    global wifi_up, wifi_since, rssi, hosts, _inited, servo_pin, _feed_every_us, _SNAP_EVERY_US
    cmd = msg.get("cmd")
    now = _us()
    if cmd == "press":
        g = _gpio(msg)
        set_drive(g, 0)  # active low, pull-up: pressed = 0
        _release.append([g, time.ticks_add(now, int(msg.get("hold_ms", 80)) * 1000)])
    elif cmd == "button":
        set_drive(_gpio(msg), 0 if msg["down"] else None)
    elif cmd == "pin":
        set_drive(msg["pin"], msg.get("level"))
    elif cmd == "plant":
        for k in msg["set"]:
            plant_set(k, msg["set"][k])
    elif cmd == "wifi":
        up = bool(msg["up"])
        if up and not wifi_up:
            wifi_since = now
        wifi_up = up
    elif cmd == "rssi":
        rssi = int(msg["dbm"])
    elif cmd == "adc":
        if msg.get("uv") is None:
            adc_uv.pop(msg["pin"], None)
        else:
            adc_uv[msg["pin"]] = int(msg["uv"])
    elif cmd == "init":
        cfg = msg.get("cfg") or {}
        pins = cfg.get("pins") or {}
        servo_pin = pins.get("servo", -1)
        for k in pins:
            if k.endswith("_button"):
                buttons[k[:-7]] = pins[k]
            buttons[k] = pins[k]
        if "temp_adc" in pins:
            adc_role[pins["temp_adc"]] = 1
        if "current_adc" in pins:
            adc_role[pins["current_adc"]] = 2
        ntc = cfg.get("ntc")
        if ntc:
            plant.ntc = (
                float(ntc["supply_uv"]),
                float(ntc["fixed_ohm"]),
                float(ntc["r0_ohm"]),
                float(ntc["t0_c"]) + 273.15,
                float(ntc["beta"]),
            )
        cur = cfg.get("current")
        if cur:
            plant.zero_uv = int(cur["zero_uv"])
            plant.uv_per_a = int(cur["uv_per_a"])
        p = msg.get("plant") or {}
        for k in p:
            plant_set(k, p[k])
        for g in msg.get("drive") or {}:
            set_drive(int(g), msg["drive"][g])
        wifi_up = bool(msg.get("wifi", True))
        rssi = int(msg.get("rssi", -55))
        hosts = msg.get("hosts") or []
        if msg.get("wdt_report_ms"):
            _feed_every_us = int(msg["wdt_report_ms"]) * 1000
        if msg.get("snapshot_ms"):
            _SNAP_EVERY_US = int(msg["snapshot_ms"]) * 1000
        _inited = True
    elif cmd == "ping":
        pass
    else:
        raise ValueError("unknown cmd %r" % cmd)
    if "id" in msg:
        send({"e": "ack", "id": msg["id"]}, now)  # t = when the board took the input in


# ---------------------------------------------------------------------------
# Resets and the end of main.py.
def reset(cause, **extra):
    """The chip resets: tell the harness, which kills and restarts this process."""
    if sock is None:
        print("vesp32: reset (cause %d) with no harness: exiting" % cause)
        raise SystemExit(cause)
    msg = {"e": "reset", "cause": cause}
    for k in extra:
        msg[k] = extra[k]
    send(msg)
    while True:  # the harness SIGKILLs us; nothing after a reset may run
        time.sleep_ms(1000)


def halt(why):
    """main.py ended: the ESP32 sits at the REPL. Outputs keep their state, soft
    IRQs and timers still run, nothing feeds the watchdog."""
    send({"e": "halt", "why": why})
    print("MicroPython (vesp32): main.py ended (%s); REPL idle" % why)
    while True:
        time.sleep_ms(5)
        poll()


# ---------------------------------------------------------------------------
# DNS: a thin getaddrinfo wrapper (the rest of socket is the real one) that
# fails while Wi-Fi is down and applies the harness's host rewrites.
def install_socket_shim():
    real = socket

    class _SocketModule:
        pass

    mod = _SocketModule()
    for k in dir(real):
        if not k.startswith("__"):
            setattr(mod, k, getattr(real, k))

    def getaddrinfo(host, port, *args):
        poll()
        if not wifi_up:
            raise OSError(-202)  # what lwIP's resolver gives with no network
        for h in hosts:
            if h[0] == host and (h[1] is None or h[1] == port):
                host, port = h[2], h[3]
                break
        return real.getaddrinfo(host, port, *args)

    mod.getaddrinfo = getaddrinfo
    mod.__name__ = "socket"
    sys.modules["socket"] = mod
    sys.modules["usocket"] = mod


# ---------------------------------------------------------------------------
# Connect to the harness (blocking only here, at import) and wait for init.
def _connect():
    global sock, MAC
    ctrl = os.getenv("VESP32_CTRL")
    mac = os.getenv("VESP32_MAC")
    if mac and len(mac) == 12:
        MAC = bytes(int(mac[i : i + 2], 16) for i in range(0, 12, 2))
    if not ctrl:
        print("vesp32: no VESP32_CTRL: standalone, inputs stay at their defaults")
        return
    host, port = ctrl.rsplit(":", 1)
    s = socket.socket()
    s.connect(socket.getaddrinfo(host, int(port))[0][-1])
    sock = s
    send({"e": "hello", "cause": CAUSE})
    s.settimeout(10)
    while not _inited:
        # recv, not readinto: a blocking readinto waits for the whole buffer.
        data = s.recv(len(_rb))
        if not data:
            raise OSError("vesp32: harness closed the control channel before init")
        n = len(data)
        _rb[:n] = data
        _feed_in(n)
    s.setblocking(False)


def ready(ballast=0):
    """Everything simulated is in place: report the heap the firmware starts with."""
    import gc

    gc.collect()
    free = gc.mem_free()
    alloc = gc.mem_alloc()
    # No collection policy of the simulator's own: the firmware sets its gc.threshold
    # itself, as on the chip, and the heap figures show what it gets.
    send({"e": "ready", "mem_free": free, "mem_alloc": alloc, "ballast": ballast, "sim_bytes": alloc - ballast})


_connect()
