# Virtual ESP32 control-channel codec: the socket to the CPython harness and the
# newline-delimited JSON spoken over it (see docs/virtual-esp32.md).
#
# Device -> harness messages carry "e" (kind) and "t" (time.time_ns() on the host
# clock). The frequent ones (pin, pwm, feed, plant) are written with begin() /
# field() / end() into one preallocated buffer, integers only, so reporting a
# hardware change allocates nothing; rare ones go through send() (plain JSON).
# Harness -> device commands are read with receive() and handed to a handler.

import time
import json

_us = time.ticks_us
_diff = time.ticks_diff

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
sock = None  # the channel; None without a harness (or once it closed)
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


def begin(kind, now):
    """Start message `kind` (bytes) stamped `now` (ticks_us); returns the write position."""
    p = _pb(0, b'{"e":"')
    p = _pb(p, kind)
    return _pt(_pb(p, b'","t":'), now)


def field(p, name, value):
    """Append the small-int field `name` (bytes) at p; returns the new position."""
    p = _pb(p, b',"')
    p = _pb(p, name)
    p = _pb(p, b'":')
    return _pi(p, value)


def end(p):
    """Close the message begun with begin() and send it."""
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
        lost()


def send(obj, now=None):
    """Rare messages (hello, reset, ack, logs): plain JSON, allocation is fine here."""
    if sock is None:
        return
    t = bytes(_wb[: _pt(0, _us() if now is None else now)]).decode()
    b = ('{"t":' + t + "," + json.dumps(obj)[1:] + "\n").encode()
    _write(b, len(b))


def lost():
    """The harness went away: carry on without it (inputs stay as they are)."""
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
# Incoming commands. Reads go into one preallocated buffer; only a complete
# command (rare, and the harness's doing) allocates while it is decoded.
rb = bytearray(512)
_inbuf = b""


def receive(handle):
    """Take in whatever the harness sent (non-blocking) and handle() each command."""
    s = sock
    while s is not None:
        try:
            n = s.readinto(rb)
        except OSError:
            lost()
            break
        if n is None:
            break
        if n == 0:
            lost()
            break
        feed(n, handle)
        s = sock
        if n < len(rb):
            break


def feed(n, handle):
    """The first n bytes of rb arrived: handle() every complete line."""
    global _inbuf
    _inbuf += bytes(rb[:n])
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
