# Virtual ESP32 board core: connects to the CPython harness, applies its commands,
# and keeps the board-wide state (reset cause, MAC, the Wi-Fi link as the harness
# has it). The simulated machine, network and ntptime modules call poll() at
# every hardware access; the rest of the board lives in:
#   _vwire    the control-channel codec (socket, JSON lines, timestamps)
#   _vpins    GPIO, PWM and ADC state
#   _vtimers  watchdog reports and soft timers
#   _vplant   the plant model (servo, motor current and temperature, sensors)
#
# Runs inside the real MicroPython unix interpreter, next to the unchanged
# firmware, under the same -X heapsize limit. So the hot paths (a PWM change, a
# pin write, an ADC read, a WDT feed, the poll of the channel) do not allocate:
# integers only, messages written into a preallocated buffer. That keeps the
# firmware's heap and GC behaviour close to what it would be on a board.
#
# No threads: the channel is polled (non-blocking) at every hardware call. The
# firmware's control task touches hardware every few ms, so harness inputs apply
# within one control period; if the firmware blocks, they apply late, and the
# harness sees that in the measured latency.

import sys
import time
import os
import socket  # the unix built-in (imported before any shim replaces it)
import gc

import _vwire as _W
import _vpins as _P
import _vtimers as _T
import _vplant

_us = time.ticks_us
_diff = time.ticks_diff

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

CAUSE = int(os.getenv("VESP32_BOOT_CAUSE") or PWRON_RESET)
MAC = b"\x24\x0a\xc4\x00\x00\x01"

# ---------------------------------------------------------------------------
# Wi-Fi as the harness has it.
wifi_up = True
wifi_since = time.ticks_add(_us(), -10000000)  # when the access point last came back
rssi = -55
hosts = []  # [[host, port, new_host, new_port]] DNS rewrites (e.g. to the fault proxy)
# How long a name lookup blocks the whole VM (the harness's set_dns_delay). On the chip lwIP
# answers from the network, and a server that does not answer costs its retries: seconds in
# which no bytecode runs, so no IRQ, no tick and no watchdog feed. No caller's timeout bounds it.
dns_ms = 0


# ---------------------------------------------------------------------------
# The poll point.
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
    _W.receive(handle)
    now = _us()
    if _P.releases:
        _P.release_due(now)
    if _T.timers:
        _T.run_due(now)
    if _diff(now, _heap_us) >= 1000:
        # The lowest free heap seen (garbage included), sampled at most once a ms:
        # gc.mem_free() scans the allocation table (~25 us on the host).
        _heap_us = now
        f = gc.mem_free()
        if f < _heap_min:
            _heap_min = f
    if _W.sock is not None and _diff(now, _snap_us) >= _SNAP_EVERY_US:
        _snap_us = now
        if _diff(now, _rebase_us) >= 1000000:
            _rebase_us = now
            _W.rebase()
        pl = _vplant.plant
        pl.advance(now)
        p = _W.begin(b"plant", now)
        p = _W.field(p, b"mc", pl.temp // 1000)
        p = _W.field(p, b"ma", pl.ma)
        p = _W.field(p, b"mdeg", pl.pos)
        p = _W.field(p, b"free", _heap_min)
        _heap_min = 1 << 29
        _W.end(p)


# ---------------------------------------------------------------------------
# Harness commands.
def _gpio(msg):
    g = msg.get("pin")
    if g is None:
        name = msg["name"]
        g = buttons.get(name)
        if g is None:
            raise ValueError("unknown button " + name)
    return g


def _init(msg):
    """The harness's init: the pin map and sensors of the merged config, the plant,
    held inputs, the Wi-Fi link and how often to report."""
    global wifi_up, rssi, hosts, _inited, _SNAP_EVERY_US
    cfg = msg.get("cfg") or {}
    pins = cfg.get("pins") or {}
    _P.servo_pin = pins.get("servo", -1)
    for k in pins:
        if k.endswith("_button"):
            buttons[k[:-7]] = pins[k]
        buttons[k] = pins[k]
    if "temp_adc" in pins:
        _P.adc_role[pins["temp_adc"]] = 1
    if "current_adc" in pins:
        _P.adc_role[pins["current_adc"]] = 2
    _vplant.set_sensors(cfg)
    p = msg.get("plant") or {}
    for k in p:
        _vplant.plant_set(k, p[k])
    for g in msg.get("drive") or {}:
        _P.set_drive(int(g), msg["drive"][g])
    wifi_up = bool(msg.get("wifi", True))
    _set_dns(msg.get("dns_ms") or 0)
    rssi = int(msg.get("rssi", -55))
    hosts = msg.get("hosts") or []
    if msg.get("wdt_report_ms"):
        _T.feed_every_us = int(msg["wdt_report_ms"]) * 1000
    if msg.get("snapshot_ms"):
        _SNAP_EVERY_US = int(msg["snapshot_ms"]) * 1000
    _inited = True


def handle(msg):
    global wifi_up, wifi_since, rssi
    cmd = msg.get("cmd")
    now = _us()
    if cmd == "press":
        _P.press(_gpio(msg), msg.get("hold_ms", 80), now)
    elif cmd == "button":
        _P.set_drive(_gpio(msg), 0 if msg["down"] else None)
    elif cmd == "pin":
        _P.set_drive(msg["pin"], msg.get("level"))
    elif cmd == "plant":
        for k in msg["set"]:
            _vplant.plant_set(k, msg["set"][k])
    elif cmd == "wifi":
        up = bool(msg["up"])
        if up and not wifi_up:
            wifi_since = now
        wifi_up = up
    elif cmd == "rssi":
        rssi = int(msg["dbm"])
    elif cmd == "dns":
        _set_dns(msg["ms"])
    elif cmd == "adc":
        if msg.get("uv") is None:
            _P.adc_uv.pop(msg["pin"], None)
        else:
            _P.adc_uv[msg["pin"]] = int(msg["uv"])
    elif cmd == "flash":
        import _vflash

        _vflash.cut_after(msg["cut_after"])
    elif cmd == "init":
        _init(msg)
    elif cmd == "ping":
        pass
    else:
        raise ValueError("unknown cmd %r" % cmd)
    if "id" in msg:
        _W.send({"e": "ack", "id": msg["id"]}, now)  # t = when the board took the input in


def _set_dns(ms):
    global dns_ms
    dns_ms = int(ms)


def lookup(host):
    """A name lookup as the chip does one: fails at once without Wi-Fi, else blocks the whole VM for
    dns_ms (no poll: no harness input, no IRQ) and is reported to the harness, which counts them."""
    poll()
    if not wifi_up:
        raise OSError(-202)  # what lwIP's resolver gives with no network
    _W.send({"e": "dns", "host": host})
    if dns_ms:
        time.sleep_ms(dns_ms)


# ---------------------------------------------------------------------------
# Resets and the end of main.py.
def reset(cause, **extra):
    """The chip resets: tell the harness, which kills and restarts this process."""
    if _W.sock is None:
        print("vesp32: reset (cause %d) with no harness: exiting" % cause)
        raise SystemExit(cause)
    msg = {"e": "reset", "cause": cause}
    for k in extra:
        msg[k] = extra[k]
    _W.send(msg)
    while True:  # the harness SIGKILLs us; nothing after a reset may run
        try:
            time.sleep_ms(1000)
        except KeyboardInterrupt:
            pass  # a Ctrl-C on the serial port changes nothing now


def halt(why, raw=False):
    """main.py ended (or a soft reset came up in the raw REPL): the ESP32 sits at the REPL
    (_vrepl). Outputs keep their state, soft IRQs and timers still run, nothing feeds the watchdog."""
    import _vrepl

    _W.send({"e": "halt", "why": why})
    if not raw:
        print("MicroPython (vesp32): main.py ended (%s); REPL idle" % why)
    _vrepl.run(raw)


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
        lookup(host)  # a lookup blocks a real chip's VM: tests count them
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
    global MAC
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
    _W.sock = s
    _W.send({"e": "hello", "cause": CAUSE})
    s.settimeout(10)
    rb = _W.rb
    while not _inited:
        # recv, not readinto: a blocking readinto waits for the whole buffer.
        data = s.recv(len(rb))
        if not data:
            raise OSError("vesp32: harness closed the control channel before init")
        n = len(data)
        rb[:n] = data
        _W.feed(n, handle)
    s.setblocking(False)


def ready(ballast=0):
    """Everything simulated is in place: report the heap the firmware starts with."""
    gc.collect()
    free = gc.mem_free()
    alloc = gc.mem_alloc()
    # No collection policy of the simulator's own: the firmware sets its gc.threshold
    # itself, as on the chip, and the heap figures show what it gets.
    _W.send({"e": "ready", "mem_free": free, "mem_alloc": alloc, "ballast": ballast, "sim_bytes": alloc - ballast})


_connect()
