# Telemetry samples and events: preallocated rings (the offline buffer) and the
# JSON messages built from them.
#
# The control loop records into typed arrays without allocating. Messages are
# rendered only by the network task, from the rings, and never as one block: a
# message is a sequence of small pieces (the head, then one sample each) that the
# MQTT client counts, then writes one by one, and renders again from the ring if it
# has to retransmit. A 30-sample message is ~3.4 KB; a fragmented 110 KB heap may not
# have that in one piece, but it always has room for a 120-byte sample.

import json
from array import array

from motorguard import controller
from motorguard.contract import MESSAGE_VERSION, const
from motorguard.outbox import Outbox

_NONE = -32768  # stored for an implausible reading; published as null
# The sample ring stores uptime seconds modulo this (2 bytes a sample); config.check keeps
# every sample the ring can hold younger than that, so the clock restores the rest.
UPTIME_WRAP_S = const(65536)
_STATE_SHIFT = const(12)  # a sample's state sits above its position (< 4096 tenths of a degree)
_POS_MASK = const(0xFFF)


# The flash backlog's directory (backlog.py); the network task looks there at boot.
BACKLOG_DIR = "backlog"


class Overwritten(Exception):
    """The batch to render was overwritten in the ring since it was first sent."""


# The controller's names, for formatting into the messages' bytes. MicroPython formats a str
# into bytes as it is (ASCII), so the board uses the controller's own tuples; CPython wants
# bytes, so there (host tests) they are encoded copies. On the board that saves 17 objects.
try:
    b"%s" % "x"
    _STATES, _EVENTS, _REASONS = controller.STATE_NAMES, controller.EVENT_NAMES, controller.REASON_NAMES
except TypeError:
    _STATES = tuple(n.encode() for n in controller.STATE_NAMES)
    _EVENTS = tuple(n.encode() for n in controller.EVENT_NAMES)
    _REASONS = tuple(n.encode() for n in controller.REASON_NAMES)


def _fixed(x, places):
    """An int in tenths (places=1) or thousandths (places=3) as JSON number bytes, or null."""
    if x == _NONE:
        return b"null"
    sign = b"-" if x < 0 else b""
    x = -x if x < 0 else x
    if places == 1:
        return b"%s%d.%d" % (sign, x // 10, x % 10)
    return b"%s%d.%03d" % (sign, x // 1000, x % 1000)


def head(thing, boot_id, fw, up_s, heap_free, rssi):
    """The fields every telemetry and event message starts with, as JSON bytes without the closing
    brace. thing, boot_id and fw are bytes."""
    return b'{"v":%d,"device":"%s","boot":"%s","fw":"%s","uptime_s":%d,"heap_free":%d,"rssi":%d' % (
        MESSAGE_VERSION,
        thing,
        boot_id,
        fw,
        up_s,
        heap_free,
        rssi,
    )


def status_message(thing, boot_id, fw, online):
    return json.dumps({"v": MESSAGE_VERSION, "device": thing, "online": online, "boot": boot_id, "fw": fw})


def ack_message(thing, boot_id, fw, cmd_id, cmd, ok, result, state, speed):
    return json.dumps(
        {
            "v": MESSAGE_VERSION,
            "device": thing,
            "boot": boot_id,
            "fw": fw,
            "id": cmd_id,
            "cmd": cmd,
            "ok": ok,
            "result": result,
            "state": controller.STATE_NAMES[state],
            "speed": speed,
        }
    )


class Clock:
    """Uptime kept as (seconds, milliseconds) small ints, and the epoch offset learned from NTP."""

    def __init__(self):
        self.up_s = 0
        self.up_ms = 0
        self.epoch_at_boot = 0  # epoch seconds at uptime 0; 0 = not synced yet

    def advance(self, dt_ms):
        ms = self.up_ms + dt_ms
        while ms >= 1000:
            ms -= 1000
            self.up_s += 1
        self.up_ms = ms

    def synced(self):
        return self.epoch_at_boot > 0

    def sync(self, epoch_s):
        self.epoch_at_boot = epoch_s - self.up_s

    def epoch_ms(self, up_s, up_ms):
        """Epoch milliseconds at an uptime (a big int on the ESP32: network task only)."""
        return (self.epoch_at_boot + up_s) * 1000 + up_ms

    def now_ms(self):
        return self.epoch_ms(self.up_s, self.up_ms)


def sample_json(n, time_s, ms, temp, current, pos_state, speed):
    """Sample n of a message as JSON bytes (a comma before all but the first), from the ring's
    encoding: the RAM ring and the flash backlog (backlog.py) render through this one function."""
    pos = pos_state & _POS_MASK
    return b'%s{"time":%d%03d,"temperature_c":%s,"current_a":%s,"position":%d.%d,"speed":%d,"state":"%s"}' % (
        b"," if n else b"",
        time_s,
        ms,
        _fixed(temp, 1),
        _fixed(current, 3),
        pos // 10,
        pos % 10,
        speed,
        _STATES[pos_state >> _STATE_SHIFT],
    )


class Samples:
    def __init__(self, capacity, batch):
        self.box = Outbox(capacity, batch)
        n = self.box.capacity
        self.up_s = array("H", bytes(2 * n))  # modulo UPTIME_WRAP_S: 1.2 KB of the default ring kept
        self.up_ms = array("H", bytes(2 * n))
        self.temp = array("h", bytes(2 * n))  # tenths of a degree C
        self.current = array("h", bytes(2 * n))  # milliamps
        # Position in tenths of a degree (0-1800: 12 bits) with the state above it: one 2-byte
        # slot instead of 3 bytes a sample (600 bytes of the default ring).
        self.pos_state = array("H", bytes(2 * n))
        self.speed = bytearray(n)  # deg/s: at most commands.MAX_SPEED (180), so a byte

    def record(self, clock, temp, current, position, speed, state):
        """temp in 0.1 C, current in mA (None = implausible), position in 0.1 degree."""
        i = self.box.push()
        self.up_s[i] = clock.up_s % UPTIME_WRAP_S
        self.up_ms[i] = clock.up_ms
        self.temp[i] = _NONE if temp is None else temp
        self.current[i] = _NONE if current is None else current
        self.pos_state[i] = position | state << _STATE_SHIFT
        self.speed[i] = speed

    def pieces(self, k, head, dropped, clock):
        """The pieces of telemetry message k (batch k). head is head()'s bytes and dropped the
        count at the first rendering: a retransmission renders the same message again."""
        box = self.box
        if k < box.base:
            raise Overwritten(k)
        yield head
        yield b',"seq":%d,"dropped":%d,"samples":[' % (k, dropped)
        first = k * box.batch
        at_boot = clock.epoch_at_boot
        now_s = clock.up_s
        for n in range(box.batch):
            i = box.slot(first + n)
            yield sample_json(
                n,
                at_boot + now_s - (now_s - self.up_s[i]) % UPTIME_WRAP_S,
                self.up_ms[i],
                self.temp[i],
                self.current[i],
                self.pos_state[i],
                self.speed[i],
            )
        yield b"]}"


class Events:
    def __init__(self, capacity):
        self.box = Outbox(capacity, 1)
        n = self.box.capacity
        self.code = bytearray(n)
        self.reason = bytearray(n)
        self.state = bytearray(n)
        self.up_s = array("I", bytes(4 * n))
        self.up_ms = array("H", bytes(2 * n))
        self.temp = array("h", bytes(2 * n))
        self.current = array("h", bytes(2 * n))
        self.detail = [None] * n  # bytes: BOOT's reset cause, who stopped; rare, so allocation is fine

    def record(self, clock, code, reason, state, temp, current, detail=None):
        i = self.box.push()
        self.code[i] = code
        self.reason[i] = reason
        self.state[i] = state
        self.up_s[i] = clock.up_s
        self.up_ms[i] = clock.up_ms
        self.temp[i] = _NONE if temp is None else temp
        self.current[i] = _NONE if current is None else current
        self.detail[i] = detail

    def pieces(self, k, head, dropped, clock):
        """The pieces of event message k (see Samples.pieces)."""
        if k < self.box.base:
            raise Overwritten(k)
        i = self.box.slot(k)
        code = self.code[i]
        yield head
        yield b',"seq":%d,"dropped":%d,"time":%d%03d,"event":"%s","state":"%s","temperature_c":%s,"current_a":%s' % (
            k,
            dropped,
            clock.epoch_at_boot + self.up_s[i],
            self.up_ms[i],
            _EVENTS[code],
            _STATES[self.state[i]],
            _fixed(self.temp[i], 1),
            _fixed(self.current[i], 3),
        )
        if code == controller.EV_FAULT:
            yield b',"reason":"%s"' % _REASONS[self.reason[i]]
        detail = self.detail[i]
        if detail:
            yield b',"detail":"%s"' % detail
        yield b"}"
