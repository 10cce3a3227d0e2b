# Simulated `ntptime` of the Virtual ESP32 (same API as micropython-lib's).
#
# The host clock is the RTC, so a successful sync changes nothing. What is
# simulated is the cost, in micropython-lib's order: first a DNS lookup of
# `host` (socket.getaddrinfo), which fails at once without Wi-Fi and otherwise
# blocks the whole VM for the harness's DNS delay, however small `timeout` is;
# then the query, ~20 ms with the link up, or `timeout` seconds and
# OSError(ETIMEDOUT) when it goes unanswered. The query's wait blocks too (the
# real call blocks the interpreter) but soft IRQs still run inside it, as they
# do inside a blocking socket call on the ESP32; not inside the lookup.

import errno
import time as _t

import _vboard as _B

host = "pool.ntp.org"
timeout = 1

_QUERY_MS = 20


def _block(ms):
    t0 = _t.ticks_ms()
    while _t.ticks_diff(_t.ticks_ms(), t0) < ms:
        _t.sleep_ms(5)
        _B.poll()


def time():
    # Unix epoch seconds: this port's time.time() epoch is 1970 (as net code checks).
    import network

    _B.lookup(host)  # not bounded by `timeout`: lwIP takes what it takes
    if not (_B.wifi_up and network.WLAN(network.STA_IF).isconnected()):
        _block(int(timeout * 1000))
        raise OSError(errno.ETIMEDOUT)
    _block(_QUERY_MS)
    return int(_t.time())


def settime():
    time()  # the host clock already holds the answer

