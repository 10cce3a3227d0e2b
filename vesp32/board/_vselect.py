# Virtual ESP32 `select`: waits that end on the FreeRTOS tick, as the esp32 port's do.
#
# On the chip a poll with a timeout (what asyncio sleeps with) checks its objects, then blocks in
# ulTaskNotifyTake(..., 1) until the next FreeRTOS tick, and again, until the timeout has passed
# (extmod/modselect.c -> mp_event_wait_ms -> MICROPY_EVENT_POLL_HOOK in ports/esp32/mpconfigport.h).
# ESP-IDF's tick is 100 Hz (MicroPython's esp32 boards do not change CONFIG_FREERTOS_HZ), so a wait
# ends on a 10 ms boundary: asyncio.sleep_ms(5) lasts 5-15 ms, ~10 ms on average. An object ready
# when the poll begins is seen at once; one that becomes ready while it waits, at the next boundary. Pin IRQs and timers wake the task at once (their
# ISRs notify it) and run, but the wait itself still ends on the tick.
#
# The unix port waits exactly, so this module takes the place of `select` (sys.modules, before the
# firmware imports asyncio) and rounds every wait with a timeout up to the tick grid. While waiting,
# harness input (buttons: pin IRQs) and due timers are taken in at once, as the chip's ISRs would.
# time.sleep_ms() is not affected: the port finishes a delay accurately (mp_hal_delay_ms).
#
# Nothing here allocates per wait: the firmware's control task waits every tick.

import time

import _vboard as _B
import _vtimers as _T
import _vwire as _W

TICK_MS = 10

_real = None  # the unix built-in select module


def _next_tick(t):
    """The first tick boundary at or after ticks_ms() value t."""
    over = t % TICK_MS
    return time.ticks_add(t, TICK_MS - over) if over else t


def _timer_slice(left):
    # A soft timer due before the wait ends cuts the slice short, so its callback runs on time.
    timers = _T.timers
    if not timers:
        return left
    now = time.ticks_us()
    for tm in timers:
        due = time.ticks_diff(tm._next, now) // 1000
        if due < left:
            left = due if due > 0 else 0
    return left


class poll:
    """select.poll(): the firmware's objects in one real poller; a second one holds the same objects
    and the harness channel, a third only the channel (for waiting out a tick with I/O pending)."""

    def __init__(self):
        r = _real
        self._p = r.poll()
        if _spares:  # the first poller (asyncio's) takes the pair made before the heap fence
            self._w, self._c = _spares.pop()
        else:
            self._w, self._c = _helpers()

    def register(self, obj, mask=None):
        if mask is None:
            mask = _real.POLLIN | _real.POLLOUT
        self._p.register(obj, mask)
        self._w.register(obj, mask)

    def unregister(self, obj):
        self._p.unregister(obj)
        self._w.unregister(obj)

    def modify(self, obj, mask):
        self._p.modify(obj, mask)
        self._w.modify(obj, mask)

    def poll(self, timeout=-1):
        self._wait(timeout)
        return self._p.poll(0)

    def ipoll(self, timeout=-1, flags=0):
        self._wait(timeout)
        return self._p.ipoll(0, flags)

    def _ready(self):
        for _ in self._p.ipoll(0):
            return True
        return False

    def _wait(self, timeout):
        if timeout == 0:
            return
        _B.poll()  # harness input and due timers first: the IRQs they raise run right here
        if self._ready():
            return  # the port polls its objects before it first waits: ready now is seen now
        end = None if timeout < 0 else _next_tick(time.ticks_add(time.ticks_ms(), timeout))
        while True:
            _B.poll()
            if self._ready():
                # Seen at the next tick, as the chip would: wait that out on the channel alone.
                end = _next_tick(time.ticks_ms())
                waiter = self._c
            else:
                waiter = self._w
            if end is None:
                left = 1000
            else:
                left = time.ticks_diff(end, time.ticks_ms())
                if left <= 0:
                    return
            left = _timer_slice(left)
            for _ in waiter.ipoll(left):
                break
            if end is not None and waiter is self._c and time.ticks_diff(end, time.ticks_ms()) <= 0:
                return


def _helpers():
    # The two pollers a wait uses besides the firmware's own, each with the harness channel in it.
    r = _real
    w, c = r.poll(), r.poll()
    if _W.sock is not None:
        w.register(_W.sock, r.POLLIN)
        c.register(_W.sock, r.POLLIN)
    return w, c


_spares = []


def install():
    """Put this module in the place of `select` (the firmware's asyncio imports it later). The
    helper pollers of the first poller are made now, so the simulator's extra objects sit behind
    the heap fence and not in the firmware's heap figures."""
    import sys

    global _real
    import select as real

    _real = real
    _spares.append(_helpers())
    mod = sys.modules[__name__]
    for k in dir(real):
        if not k.startswith("__") and k != "poll":
            setattr(mod, k, getattr(real, k))
    sys.modules["select"] = mod
    sys.modules["uselect"] = mod
