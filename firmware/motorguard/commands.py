# Remote commands, all their rules in one place: their codes, the checks that make a command
# fresh and once, the network task's queues of commands and acks (Commands), and the mailbox
# that hands one command from the network task to the control task.
#
# The rules (docs/commands.md):
# - A command is JSON as schemas/v1/command.schema.json (message version 2) says: v=2, id, issued_at
#   (epoch ms), cmd, and speed for set_speed. Anything else is refused with a reason.
# - `stop` is never refused: whatever else is wrong with it, stopping is safe, so
#   the network task cuts the PWM the moment it reads one and the control task moves
#   the state at its next tick, ahead of every other command.
# - start and set_speed are refused when delivered as retained, when older than
#   control.command_max_age_s or from the future, when their id was seen before
#   (a bounded memory of recent ids), and while the clock is not synced; a start is
#   also refused when any stop (button, e-stop, fault, remote stop, boot) happened
#   after, or within the clock tolerance before, the moment it was issued.
#
# parse() runs in the network task and may allocate; the mailbox fields are plain
# ints so the control tick reads them without allocating.

import hashlib
import json
import time
from array import array

import asyncio

from motorguard import controller
from motorguard.base import const, log
from motorguard.contract import COMMAND_VERSION

CMD_NONE = const(0)
CMD_START = const(1)
CMD_STOP = const(2)
CMD_SPEED = const(3)
NAMES = ("invalid", "start", "stop", "set_speed")  # by code: CMD_NONE is "invalid"
CODES = {NAMES[c]: c for c in (CMD_START, CMD_STOP, CMD_SPEED)}

# Bounds of schemas/v1/command.schema.json (a test holds the two together).
VERSION = COMMAND_VERSION
MAX_BYTES = const(512)  # a command is ~120 bytes; bigger ones are read past, never parsed
MAX_ID = const(64)
MIN_SPEED = const(1)
# The fastest sweep a command or a config may ask for (servo.max_speed_deg_s is held to it).
MAX_SPEED = const(180)
MIN_ISSUED_MS = 1577836800000  # 2020-01-01: no real command is older than the product
MAX_ISSUED_MS = 4102444800000  # 2100-01-01
FIELDS = ("v", "id", "issued_at", "cmd", "speed")
_MASK30 = const(0x3FFFFFFF)
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:"


def _check_id(cid):
    if type(cid) is not str or not 1 <= len(cid) <= MAX_ID:
        return False
    for ch in cid:
        if ch not in _ID_CHARS:
            return False
    return True


def mentions_stop(msg):
    """True when the bytes hold the JSON string "stop" anywhere. Allocates nothing, so a stop
    is recognised even when parsing fails (no heap left, a mangled field); a command that
    says stop anywhere is treated as a stop, never as anything else (fail safe)."""
    return b'"stop"' in msg


def parse(msg, retained):
    """The bytes of one delivery -> (id, name, code, speed, issued_ms, problem).

    problem is None for a well-formed command, else the reason it is refused. id is
    "" when the delivery carries no usable id, name "invalid" when no known cmd.
    A stop is returned with code CMD_STOP even when it has a problem: the caller
    stops anyway and acks the stop as done.
    """
    if msg is None:
        return "", "invalid", CMD_NONE, 0, 0, "too_large"
    try:
        cmd = json.loads(msg)
    except Exception:  # noqa: BLE001 - ValueError, MemoryError, UnicodeError: all mean "not JSON"
        return "", "invalid", CMD_NONE, 0, 0, "not_json"
    if not isinstance(cmd, dict):
        return "", "invalid", CMD_NONE, 0, 0, "not_object"
    cid = cmd.get("id")
    if not _check_id(cid):
        cid = ""
    name = cmd.get("cmd")
    code = CODES.get(name, CMD_NONE) if type(name) is str else CMD_NONE
    name = NAMES[code]  # this module's string, not the parsed copy a queued command would hold
    problem = _problem(cmd, cid, code, retained)
    speed = cmd.get("speed", 0) if code == CMD_SPEED and problem is None else 0
    issued = cmd.get("issued_at") if problem is None else 0
    return cid, name, code, speed, issued, problem


def _problem(cmd, cid, code, retained):
    if retained:
        return "retained"
    if cmd.get("v") != VERSION or type(cmd.get("v")) is not int:
        return "unsupported_version: send v=2 with id and issued_at"
    if not cid:
        return "bad_id: 1-64 characters of [A-Za-z0-9-_.:]"
    if code == CMD_NONE:
        return "unknown_cmd: start, stop or set_speed"
    for key in cmd:
        if key not in FIELDS or (key == "speed" and code != CMD_SPEED):
            return "unknown_field: %s" % str(key)[:32]
    issued = cmd.get("issued_at")
    if type(issued) is not int or not MIN_ISSUED_MS <= issued <= MAX_ISSUED_MS:
        return "bad_issued_at: epoch milliseconds"
    if code == CMD_SPEED:
        speed = cmd.get("speed")
        if type(speed) is not int or not MIN_SPEED <= speed <= MAX_SPEED:
            return "bad_speed: an integer %d-%d deg/s" % (MIN_SPEED, MAX_SPEED)
    return None


def freshness(issued_ms, now_ms, max_age_ms, tolerance_ms):
    """None when a command issued at issued_ms may run at now_ms, else the reason."""
    if issued_ms > now_ms + tolerance_ms:
        return "from_future"
    if now_ms - issued_ms > max_age_ms:
        return "stale"
    return None


class RecentIds:
    """The last n command ids this boot: a redelivery or a replay is seen as such.

    Each id is kept as a 60-bit fingerprint (two 30-bit halves of its SHA-256, small ints
    on every port) in one preallocated array, not as the string: a flood of 64-character
    ids then holds 8 bytes each, not a heap block each. Two ids share a fingerprint with a
    chance of about n in 2**60; the newer would be refused as a duplicate (safe)."""

    def __init__(self, n):
        self.n = n
        self.prints = array("I", bytes(8 * n))  # 0, 0: an empty slot (no id fingerprints to 0, 0)
        self.next = 0

    def seen(self, cid):
        """True when cid was seen before; otherwise remembers it and returns False."""
        d = hashlib.sha256(cid.encode()).digest()
        hi = (int.from_bytes(d[0:4], "big") & _MASK30) | 1  # never 0: 0 marks a free slot
        lo = int.from_bytes(d[4:8], "big") & _MASK30
        p = self.prints
        for i in range(0, 2 * self.n, 2):
            if p[i] == hi and p[i + 1] == lo:
                return True
        i = 2 * self.next
        p[i] = hi
        p[i + 1] = lo
        self.next = (self.next + 1) % self.n
        return False


class Mailbox:
    """One command from the network task to the control task, in plain ints.

    stop is separate and always wins: the network task sets it (after cutting the PWM)
    and the next control tick applies it before anything else.
    """

    def __init__(self):
        self.stop = False
        self.code = CMD_NONE
        self.arg = 0
        self.stop_gen = 0  # the app's stop count when the command was checked
        self.result = -1  # a controller refusal code once served; -1 while pending

    def post(self, code, arg, stop_gen):
        self.result = -1
        self.arg = arg
        self.stop_gen = stop_gen
        self.code = code

    def done(self, result):
        self.result = result
        self.code = CMD_NONE


# What arrived on the command topic and is not done yet (the network task's side of the rules).
_MAX_PENDING = const(4)  # start/set_speed commands waiting for the control task
_MAX_ACKS = const(4)  # acks waiting to be published; past this, refusals are only counted
_RECENT_IDS = const(16)  # command ids remembered this boot, to refuse redeliveries and replays
_BUSY = "busy: %d commands already waiting" % _MAX_PENDING  # one string, however many are refused


class Commands:
    """What arrived on the command topic and is not done yet: a bounded queue of
    start/set_speed commands and a bounded queue of acks. Stops skip both queues."""

    def __init__(self, app):
        self.app = app
        self.max_age_ms = app.max_age_ms
        self.tolerance_ms = app.tolerance_ms
        self.recent = RecentIds(_RECENT_IDS)
        # Positional tuples, not named ones: two namedtuple types cost ~700 bytes of heap here,
        # more than the heap budget has left (docs/virtual-esp32.md).
        self.pending = []  # (id, name, code, speed, issued_ms)
        self.acks = []  # (id, name, ok, result)
        self.stops = []  # ids of stops already applied, acked first
        self.uncounted = 0  # refusals past _MAX_ACKS, reported in one ack

    def receive(self, topic, msg, retained):
        """The MQTT callback: runs in the reader loop, so it never waits."""
        stop = msg is not None and mentions_stop(msg)
        if stop:
            # Before parsing, which allocates: even with no heap left a stop stops.
            self.app.request_stop()
        elif len(self.pending) >= _MAX_PENDING and len(self.acks) >= _MAX_ACKS:
            # A flood: both queues are full, so this one is refused unread (no parse, no log,
            # no ack of its own), and counted for the one ack that reports the flood.
            self.uncounted += 1
            return
        try:
            cid, name, code, speed, issued, problem = parse(msg, retained)
        except MemoryError:
            cid, name, code, speed, issued, problem = "", "invalid", CMD_NONE, 0, 0, "no_memory"
        if stop or code == CMD_STOP:
            self.app.request_stop()  # again for a stop spelled with escapes: idempotent
            if cid:
                self.recent.seen(cid)
            if len(self.stops) < _MAX_ACKS:
                self.stops.append(cid)
            else:
                self.uncounted += 1
            log("CMD", "stop", "result=ok")
            return
        if problem is None and self.recent.seen(cid):
            problem = "duplicate"
        if problem is None:
            problem = self.stale(code, issued)
        if problem is None and len(self.pending) >= _MAX_PENDING:
            problem = _BUSY
        if problem is not None:
            self.refuse(cid, name, problem)
            return
        self.pending.append((cid, name, code, speed, issued))

    def refuse(self, cid, name, problem):
        log("CMD", name, "refused=" + problem.split(":")[0])
        if len(self.acks) < _MAX_ACKS:
            self.acks.append((cid, name, False, problem))
        else:
            self.uncounted += 1

    def stale(self, code, issued):
        """Why a command issued at `issued` may not run now, or None."""
        app = self.app
        clock = app.clock
        if not clock.synced():
            return "clock_not_synced"
        now = clock.now_ms()
        why = freshness(issued, now, self.max_age_ms, self.tolerance_ms)
        if why is None and code == CMD_START:
            stop_ms = clock.epoch_ms(app.stop_up_s, app.stop_up_ms)
            if issued <= stop_ms + self.tolerance_ms:
                why = controller.REFUSAL_NAMES[controller.REFUSED_STOPPED_SINCE]
        return why

    def next_ack(self):
        """The oldest ack to publish, stops first, or None."""
        if self.stops:
            return (self.stops.pop(0), "stop", True, "ok")
        if self.acks:
            return self.acks.pop(0)
        if self.uncounted:
            n = self.uncounted
            self.uncounted = 0
            return ("", "invalid", False, "flood: %d more commands refused without an ack each" % n)
        return None

    async def serve(self):
        """Hands the oldest pending command to the control task; returns its ack."""
        app = self.app
        mb = app.mailbox
        cid, name, code, speed, issued = self.pending.pop(0)
        why = self.stale(code, issued)  # again: it may have waited, and a stop may have come
        if why is not None:
            log("CMD", name, "refused=" + why)
            return (cid, name, False, why)
        mb.post(code, speed, app.stop_gen)
        t0 = time.ticks_ms()
        while mb.result < 0 and time.ticks_diff(time.ticks_ms(), t0) < 1000:
            await asyncio.sleep_ms(app.period_ms)
        result = controller.REFUSAL_NAMES[mb.result] if mb.result >= 0 else "timeout"
        mb.code = CMD_NONE  # a command that timed out must not run later
        log("CMD", name, "result=" + result)
        return (cid, name, mb.result == controller.OK, result)
