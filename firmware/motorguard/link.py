# Bringing the network up before a session: Wi-Fi, the clock (NTP) and the TLS context.
#
# Needed only while (re)connecting, so net.py imports it for each attempt and drops it
# (base.forget) as soon as these steps are done, before the TLS handshake: on the board its
# code is then not in the heap while the session connects, publishes and takes commands.
# The MQTT connect itself is in mqtt_connect.py, dropped once the session is online.
#
# Every step that blocks the whole VM (NTP, parsing the private key) runs under the guard
# net.blocking_guard() makes: refused while the motor runs.

import time

import asyncio

from motorguard.base import log

_EPOCH_2000 = 946684800


def guarded(guard, step, *args):
    """Runs a VM-blocking step under the guard (None: no guard)."""
    if guard:
        guard(True)
    try:
        return step(*args)
    finally:
        if guard:
            guard(False)


def read_file(name):
    with open(name, "rb") as f:
        return f.read()


def make_ssl(mq):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # DER files: what the ESP32's mbedTLS loads without PEM parsing costs.
    ctx.load_cert_chain(read_file(mq["cert"]), read_file(mq["key"]))
    ctx.load_verify_locations(cadata=read_file(mq["ca"]))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def wifi_ask(wlan, cfg):
    """Asks the Wi-Fi driver to connect: once per boot (net.network_task keeps count). From then on
    the esp32 port reassociates by itself after every loss (ports/esp32/network_wlan.c), and a
    second connect() while it is at it raises OSError("Wifi Internal Error") (micropython#17661)."""
    wifi = cfg["wifi"]
    wlan.active(True)
    wlan.connect(wifi["ssid"], wifi["password"])


async def wifi_up(wlan, cfg, timeout_ms=15000):
    """Waits (bounded) until the station has an address; a lost link is waited for, not re-asked."""
    if wlan.isconnected():
        return
    wifi = cfg["wifi"]
    t0 = time.ticks_ms()
    while not wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
            raise OSError("wifi: no connection to '%s' within %d ms" % (wifi["ssid"], timeout_ms))
        await asyncio.sleep_ms(100)
    log("NET", "wifi_up")


def sync_time(app, guard):
    if app.clock.synced():
        return
    import ntptime

    ntptime.host = app.cfg["ntp_host"]
    # ntptime's 1 s timeout bounds the query, not the DNS lookup before it: that blocks the
    # whole VM (no IRQ, no tick) for as long as lwIP takes. Hence the guard: no start meanwhile.
    guarded(guard, ntptime.settime)
    t = time.time()
    # Ports whose epoch is 2000 report seconds since 2000; telemetry uses Unix time.
    if time.gmtime(0)[0] == 2000:
        t += _EPOCH_2000
    app.clock.sync(int(t))
    log("NET", "time_synced")
