# Telemetry samples and events: preallocated rings (the offline buffer) and the
# JSON messages built from them.
#
# The control loop records into typed arrays without allocating. Messages are
# formatted only by the network task, from the rings, so a sample that was never
# acknowledged can be sent again byte for byte after a reconnect.

import json
from array import array

from motorguard.outbox import Outbox
from motorguard import controller as C

SCHEMA_VERSION = 1
_NONE = -32768  # stored for an implausible reading; published as null


def _fixed(x, places):
    """An int in tenths (places=1) or thousandths (places=3) as JSON number text, or null."""
    if x == _NONE:
        return "null"
    sign = "-" if x < 0 else ""
    x = -x if x < 0 else x
    if places == 1:
        return "%s%d.%d" % (sign, x // 10, x % 10)
    return "%s%d.%03d" % (sign, x // 1000, x % 1000)


def head(thing, boot_id, fw, up_s, heap_free, rssi):
    """The fields every telemetry and event message starts with, as JSON text without the closing brace."""
    return '{"v":%d,"device":"%s","boot":"%s","fw":"%s","uptime_s":%d,"heap_free":%d,"rssi":%d' % (
        SCHEMA_VERSION,
        thing,
        boot_id,
        fw,
        up_s,
        heap_free,
        rssi,
    )


def status_message(thing, boot_id, fw, online):
    return json.dumps({"v": SCHEMA_VERSION, "device": thing, "online": online, "boot": boot_id, "fw": fw})


def ack_message(thing, boot_id, fw, cmd_id, cmd, ok, result, state, speed):
    return json.dumps(
        {
            "v": SCHEMA_VERSION,
            "device": thing,
            "boot": boot_id,
            "fw": fw,
            "id": cmd_id,
            "cmd": cmd,
            "ok": ok,
            "result": result,
            "state": C.STATE_NAMES[state],
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

    def epoch_ms_text(self, up_s, up_ms):
        # Epoch milliseconds as text: too large for a small int on the ESP32.
        return "%d%03d" % (self.epoch_at_boot + up_s, up_ms)


class Samples:
    def __init__(self, capacity, batch):
        self.box = Outbox(capacity, batch)
        n = self.box.capacity
        self.up_s = array("I", bytes(4 * n))
        self.up_ms = array("H", bytes(2 * n))
        self.temp = array("h", bytes(2 * n))  # tenths of a degree C
        self.current = array("h", bytes(2 * n))  # milliamps
        self.position = array("H", bytes(2 * n))  # tenths of a degree
        self.speed = array("H", bytes(2 * n))
        self.state = bytearray(n)

    def record(self, clock, temp, current, position, speed, state):
        """temp in 0.1 C, current in mA (None = implausible), position in 0.1 degree."""
        i = self.box.push()
        self.up_s[i] = clock.up_s
        self.up_ms[i] = clock.up_ms
        self.temp[i] = _NONE if temp is None else temp
        self.current[i] = _NONE if current is None else current
        self.position[i] = position
        self.speed[i] = speed
        self.state[i] = state

    def message(self, k, head, clock):
        """Telemetry message for batch k. `head` is the dict of per-message fields (already JSON text)."""
        box = self.box
        parts = [head, ',"seq":%d,"dropped":%d,"samples":[' % (k, box.dropped)]
        first = k * box.batch
        for n in range(box.batch):
            i = box.slot(first + n)
            parts.append(
                '%s{"time":%s,"temperature_c":%s,"current_a":%s,"position":%d.%d,"speed":%d,"state":"%s"}'
                % (
                    "," if n else "",
                    clock.epoch_ms_text(self.up_s[i], self.up_ms[i]),
                    _fixed(self.temp[i], 1),
                    _fixed(self.current[i], 3),
                    self.position[i] // 10,
                    self.position[i] % 10,
                    self.speed[i],
                    C.STATE_NAMES[self.state[i]],
                )
            )
        parts.append("]}")
        return "".join(parts)


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
        self.detail = [None] * n  # free text for BOOT (reset cause); rare, so allocation is fine

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

    def message(self, k, head, clock):
        i = self.box.slot(k)
        code = self.code[i]
        name = C.EVENT_NAMES[code]
        text = '%s,"seq":%d,"dropped":%d,"time":%s,"event":"%s","state":"%s","temperature_c":%s,"current_a":%s' % (
            head,
            k,
            self.box.dropped,
            clock.epoch_ms_text(self.up_s[i], self.up_ms[i]),
            name,
            C.STATE_NAMES[self.state[i]],
            _fixed(self.temp[i], 1),
            _fixed(self.current[i], 3),
        )
        if code == C.EV_FAULT:
            text += ',"reason":"%s"' % C.REASON_NAMES[self.reason[i]]
        if self.detail[i]:
            text += ',"detail":"%s"' % self.detail[i]
        return text + "}"
