# Virtual ESP32 clocks: the watchdog's reports and the soft timers (machine.Timer).
#
# The harness holds the watchdog timer itself (it kills the process on a missed
# feed), so the board only reports the timeout and the feeds, at most one feed
# report per `feed_every_us` to keep the channel quiet. Timers are due-checked at
# every poll point and their callbacks scheduled like soft IRQs. Neither allocates.

import time
import micropython

import _vwire as _W

_us = time.ticks_us
_diff = time.ticks_diff

wdt_ms = 0
_feed_us = 0
feed_every_us = 50000  # the harness's wdt_report_ms, from its init


def wdt_start(ms):
    global wdt_ms, _feed_us
    wdt_ms = ms
    now = _us()
    _feed_us = now
    _W.end(_W.field(_W.begin(b"wdt", now), b"ms", ms))


def wdt_feed():
    global _feed_us
    now = _us()
    if _diff(now, _feed_us) >= feed_every_us:
        _feed_us = now
        _W.end(_W.begin(b"feed", now))


timers = []  # armed machine.Timer objects


def run_due(now):
    """Schedule the callbacks of the timers that are due at `now`."""
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
