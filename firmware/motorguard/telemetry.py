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
from motorguard.base import const
from motorguard.contract import MESSAGE_VERSION
from motorguard.outbox import Outbox

_NONE = -32768  # an implausible reading in a typed array (the events'); published as null
_STATE_SHIFT = const(12)  # the flash backlog's entries keep position | state << 12 (< 4096 tenths)
_POS_MASK = const(0xFFF)

# The sample ring's record, 8 bytes (REC), exact and allocation-free to write (docs/store-and-forward.md):
#   0-1  ms since the previous sample (u16; 0 for a batch's first, whose uptime the batch's anchor holds)
#   2    speed, deg/s (<= commands.MAX_SPEED, 180)
#   3-4  current + CUR_OFFSET in 15 bits (0 = implausible) | state bit 0 << 15
#   5-6  temperature + TEMP_OFFSET in 12 bits (0 = implausible) | state bit 1 << 12 | position bits 8-10 << 13
#   7    position bits 0-7 (tenths of a degree, <= 1800)
# config.check keeps every value inside its field (TEMP_RANGE_C, CURRENT_RANGE_A, the gap rule).
REC = const(8)
TEMP_OFFSET = const(1000)  # tenths: -99.9 .. 309.5 C
CUR_OFFSET = const(16384)  # mA: -16.383 .. 16.383 A
TEMP_RANGE_C = (-99, 300)
CURRENT_RANGE_A = (-16.0, 16.0)
MAX_GAP_MS = const(65535)  # two samples at most this far apart (period + the longest tick, < watchdog)


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
    """The sample ring: REC bytes a sample in one bytearray, and each batch's first uptime."""

    def __init__(self, capacity, batch):
        box = self.box = Outbox(capacity, batch)
        self.rec = bytearray(REC * box.capacity)
        self.at_s = array("I", bytes(4 * box.batches))  # uptime of each batch's first sample
        self.at_ms = array("H", bytes(2 * box.batches))
        self.last_s = self.last_ms = 0  # the previous sample's uptime

    def record(self, clock, temp, current, position, speed, state):
        """temp in 0.1 C, current in mA (None = implausible), position in 0.1 degree."""
        box = self.box
        i = box.push()
        s = clock.up_s
        ms = clock.up_ms
        if i % box.batch:
            gap = (s - self.last_s) * 1000 + ms - self.last_ms
        else:
            gap = 0
            j = i // box.batch
            self.at_s[j] = s
            self.at_ms[j] = ms
        self.last_s = s
        self.last_ms = ms
        cur = 0 if current is None else current + CUR_OFFSET
        cur |= (state & 1) << 15
        hot = 0 if temp is None else temp + TEMP_OFFSET
        hot |= (state >> 1) << 12 | (position >> 8) << 13
        r = self.rec
        o = i * REC
        r[o] = gap & 0xFF
        r[o + 1] = gap >> 8 & 0xFF  # config.check keeps gap <= MAX_GAP_MS: the mask only keeps the tick alive
        r[o + 2] = speed
        r[o + 3] = cur & 0xFF
        r[o + 4] = cur >> 8
        r[o + 5] = hot & 0xFF
        r[o + 6] = hot >> 8
        r[o + 7] = position & 0xFF

    def rows(self, k, count):
        """The first count samples of batch k as (uptime s, ms, temp, current, position | state << 12,
        speed), temp and current _NONE when implausible: the messages and the flash backlog read
        the ring through this one decoder."""
        box = self.box
        first = box.slot(k * box.batch)
        j = first // box.batch
        s = self.at_s[j]
        ms = self.at_ms[j]
        r = self.rec
        for n in range(count):
            o = (first + n) * REC
            ms += r[o] | r[o + 1] << 8
            if ms >= 1000:
                s += ms // 1000
                ms %= 1000
            cur = r[o + 3] | r[o + 4] << 8
            hot = r[o + 5] | r[o + 6] << 8
            t = hot & 0xFFF
            c = cur & 0x7FFF
            yield (
                s,
                ms,
                t - TEMP_OFFSET if t else _NONE,
                c - CUR_OFFSET if c else _NONE,
                ((hot >> 13) << 8 | r[o + 7]) | ((cur >> 15) | (hot >> 12 & 1) << 1) << _STATE_SHIFT,
                r[o + 2],
            )

    def pieces(self, k, head, dropped, clock):
        """The pieces of telemetry message k (batch k). head is head()'s bytes and dropped the
        count at the first rendering: a retransmission renders the same message again."""
        if k < self.box.base:
            raise Overwritten(k)
        yield head
        yield b',"seq":%d,"dropped":%d,"samples":[' % (k, dropped)
        at_boot = clock.epoch_at_boot
        n = 0
        for s, ms, temp, cur, pos_state, speed in self.rows(k, self.box.batch):
            yield sample_json(n, at_boot + s, ms, temp, cur, pos_state, speed)
            n += 1
        yield b"]}"


# An event's record, 12 bytes (EV_REC), in the same field encodings as a sample's:
#   0 code, 1 reason | state << 5, 2-5 uptime s (u32), 6-7 ms, 8-9 temperature + TEMP_OFFSET
#   (0 = implausible), 10-11 current + CUR_OFFSET (0 = implausible)
EV_REC = const(12)
_STATE_AT = const(5)  # reason < 32


class Events:
    def __init__(self, capacity):
        box = self.box = Outbox(capacity, 1)
        self.rec = bytearray(EV_REC * box.capacity)
        self.detail = [None] * box.capacity  # bytes: BOOT's reset cause, who stopped; rare, so allocation is fine

    def record(self, clock, code, reason, state, temp, current, detail=None):
        i = self.box.push()
        r = self.rec
        o = i * EV_REC
        s = clock.up_s
        ms = clock.up_ms
        hot = 0 if temp is None else temp + TEMP_OFFSET
        cur = 0 if current is None else current + CUR_OFFSET
        r[o] = code
        r[o + 1] = reason | state << _STATE_AT
        r[o + 2] = s & 0xFF
        r[o + 3] = s >> 8 & 0xFF
        r[o + 4] = s >> 16 & 0xFF
        r[o + 5] = s >> 24 & 0xFF
        r[o + 6] = ms & 0xFF
        r[o + 7] = ms >> 8
        r[o + 8] = hot & 0xFF
        r[o + 9] = hot >> 8
        r[o + 10] = cur & 0xFF
        r[o + 11] = cur >> 8
        self.detail[i] = detail

    def pieces(self, k, head, dropped, clock):
        """The pieces of event message k (see Samples.pieces)."""
        if k < self.box.base:
            raise Overwritten(k)
        i = self.box.slot(k)
        r = self.rec
        o = i * EV_REC
        code = r[o]
        hot = r[o + 8] | r[o + 9] << 8
        cur = r[o + 10] | r[o + 11] << 8
        yield head
        yield b',"seq":%d,"dropped":%d,"time":%d%03d,"event":"%s","state":"%s","temperature_c":%s,"current_a":%s' % (
            k,
            dropped,
            clock.epoch_at_boot + (r[o + 2] | r[o + 3] << 8 | r[o + 4] << 16 | r[o + 5] << 24),
            r[o + 6] | r[o + 7] << 8,
            _EVENTS[code],
            _STATES[r[o + 1] >> _STATE_AT],
            _fixed(hot - TEMP_OFFSET if hot else _NONE, 1),
            _fixed(cur - CUR_OFFSET if cur else _NONE, 3),
        )
        if code == controller.EV_FAULT:
            yield b',"reason":"%s"' % _REASONS[r[o + 1] & 31]
        detail = self.detail[i]
        if detail:
            yield b',"detail":"%s"' % detail
        yield b"}"
