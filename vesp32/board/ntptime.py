# Simulated `ntptime` of the Virtual ESP32 (same API as micropython-lib's).
#
# The host clock is the RTC, so a successful sync changes nothing. What is
# simulated is the cost: a query takes ~20 ms while Wi-Fi is up; while it is
# down the call blocks for `timeout` seconds and raises OSError(ETIMEDOUT), as
# a real query to an unreachable server does. Both waits are blocking (the
# real call blocks the whole interpreter too) but soft IRQs still run inside
# them, as they do inside a blocking socket call on the ESP32.

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

    _B.poll()
    if not (_B.wifi_up and network.WLAN(network.STA_IF).isconnected()):
        _block(int(timeout * 1000))
        raise OSError(errno.ETIMEDOUT)
    _block(_QUERY_MS)
    return int(_t.time())


def settime():
    time()  # the host clock already holds the answer

