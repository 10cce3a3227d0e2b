# The network task: Wi-Fi, NTP, MQTT over mutual TLS, and the publisher that
# drains the offline rings in order.
#
# A (re)connect starts only while the motor is off (see config
# mqtt.connect_while_running): a TLS handshake blocks the whole VM.
#
# Nothing here touches the motor except through App.motor_off() (safe from any
# context) and the command mailbox that the control task serves. Every wait is
# bounded: Wi-Fi join, NTP, TLS connect, PUBACKs (the MQTT client retransmits
# and then declares the link dead), and reconnects back off exponentially with
# jitter so a fleet does not reconnect in lockstep after a broker outage.

import json
import time

import asyncio
import gc
import network
import os

from motorguard import config as cfgmod
from motorguard import controller as C
from motorguard.mqtt import MQTTClient
from motorguard import app as appmod
from motorguard import telemetry

_EPOCH_2000 = 946684800
_MAX_COMMANDS = 4
_COMMANDS = {"start": appmod.CMD_START, "stop": appmod.CMD_STOP, "set_speed": appmod.CMD_SPEED}


def log(*parts):
    print("MG", *parts)


def jitter(backoff_ms):
    """Full backoff at most, half at least: spreads a fleet's reconnects."""
    half = backoff_ms // 2
    return half + int.from_bytes(os.urandom(2), "big") % (half + 1)


def epoch_now():
    t = time.time()
    # Ports whose epoch is 2000 report seconds since 2000; telemetry uses Unix time.
    if time.gmtime(0)[0] == 2000:
        t += _EPOCH_2000
    return int(t)


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


async def wifi_up(wlan, cfg, timeout_ms=15000):
    if wlan.isconnected():
        return
    wifi = cfg["wifi"]
    wlan.active(True)
    wlan.connect(wifi["ssid"], wifi["password"])
    t0 = time.ticks_ms()
    while not wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
            raise OSError("wifi: no connection to '%s' within %d ms" % (wifi["ssid"], timeout_ms))
        await asyncio.sleep_ms(100)
    log("NET", "wifi_up")


def sync_time(app):
    if app.clock.synced():
        return
    import ntptime

    ntptime.host = app.cfg["ntp_host"]
    # Bounded by ntptime's 1 s socket timeout; the stop-button IRQ still runs inside it.
    ntptime.settime()
    app.clock.sync(epoch_now())
    log("NET", "time_synced")


class Session:
    """One MQTT connection: publishes what the rings hold, serves commands."""

    def __init__(self, app, wlan, ssl_ctx):
        cfg = app.cfg
        self.app = app
        self.wlan = wlan
        self.mq = cfg["mqtt"]
        self.thing = cfg["thing"]
        self.t_telemetry = cfgmod.topic(cfg, "telemetry")
        self.t_events = cfgmod.topic(cfg, "events")
        self.t_status = cfgmod.topic(cfg, "status")
        self.t_cmd = cfgmod.topic(cfg, "cmd")
        self.t_ack = cfgmod.topic(cfg, "ack")
        self.inflight = {}  # packet id -> (ring, batch)
        self.commands = []
        self.dead = False
        mq = self.mq
        self.client = MQTTClient(
            self.thing,
            mq["host"],
            port=mq["port"],
            keepalive=mq["keepalive_s"],
            ssl=ssl_ctx,
            ack_timeout_ms=mq["ack_timeout_ms"],
        )
        self.client.set_callback(self.on_message)
        self.client.set_puback_callback(self.on_puback)
        self.client.set_last_will(self.t_status, self.status(False), retain=True, qos=1)

    def head(self):
        app = self.app
        return telemetry.head(self.thing, app.boot_id, cfgmod.VERSION, app.clock.up_s, gc.mem_free(), self.rssi())

    def rssi(self):
        try:
            return int(self.wlan.status("rssi"))
        except Exception:
            return 0

    def status(self, online):
        return telemetry.status_message(self.thing, self.app.boot_id, cfgmod.VERSION, online)

    def on_puback(self, pid):
        entry = self.inflight.pop(pid, None)
        if entry:
            entry[0].box.ack(entry[1])

    def on_message(self, topic, msg):
        try:
            cmd = json.loads(msg)
            name = cmd.get("cmd")
            code = _COMMANDS.get(name)
            if code is None:
                raise ValueError("unknown cmd %r" % name)
            arg = 0
            if code == appmod.CMD_SPEED:
                arg = cmd.get("speed")
                if not isinstance(arg, (int, float)) or arg <= 0:
                    raise ValueError("set_speed needs a positive 'speed' in deg/s")
            cid = str(cmd.get("id", ""))[:64]
        except Exception as e:
            self.commands.append(("", "invalid", -1, str(e)))
            return
        if code == appmod.CMD_STOP:
            # A remote stop takes effect now, before the control task even sees the mailbox.
            self.app.motor_off()
        if len(self.commands) >= _MAX_COMMANDS:
            self.commands.append((cid, name, -1, "busy"))
            return
        self.commands.append((cid, name, code, arg))

    async def serve_command(self, entry):
        cid, name, code, arg = entry
        app = self.app
        if code < 0:
            ok, result = False, arg
        else:
            app.cmd_result = -1
            app.cmd_arg = arg
            app.cmd = code
            t0 = time.ticks_ms()
            while app.cmd_result < 0 and time.ticks_diff(time.ticks_ms(), t0) < 1000:
                await asyncio.sleep_ms(app.period_ms)
            ok = app.cmd_result == C.OK
            result = C.REFUSAL_NAMES[app.cmd_result] if app.cmd_result >= 0 else "timeout"
            log("CMD", name, "result=" + result)
        ack = telemetry.ack_message(
            self.thing, app.boot_id, cfgmod.VERSION, cid, name, ok, result, app.ctl.state, app.sweep.speed
        )
        await self.client.publish(self.t_ack, ack, qos=1)

    async def pump(self):
        """Publish commands' acks, then events, then telemetry, oldest first, within the in-flight window."""
        app = self.app
        client = self.client
        window = self.mq["max_inflight"]
        while not self.dead:
            if not self.wlan.isconnected():
                raise OSError("wifi lost")
            if self.commands:
                await self.serve_command(self.commands.pop(0))
                continue
            if len(self.inflight) < window:
                ring, topic = app.events, self.t_events
                k = ring.box.next_batch()
                if k < 0:
                    ring, topic = app.samples, self.t_telemetry
                    k = ring.box.next_batch()
                if k >= 0:
                    msg = ring.message(k, self.head(), app.clock)
                    ring.box.sent(k)
                    pid = await client.publish(topic, msg, qos=1)
                    self.inflight[pid] = (ring, k)
                    msg = None
                    continue
            # Idle: collect garbage now, between ticks, rather than at a random allocation later.
            gc.collect()
            await asyncio.sleep_ms(20)

    async def pump_or_hang_up(self):
        # A failed publish or lost Wi-Fi ends the whole session, so the reconnect logic takes over.
        try:
            await self.pump()
        except Exception as e:  # noqa: BLE001
            log("NET", "publish_failed", repr(e))
            self.client.close()

    async def run(self):
        app = self.app
        client = self.client
        pump = None
        try:
            await client.connect(clean_session=True, timeout_ms=self.mq["connect_timeout_ms"])
            await client.subscribe(self.t_cmd, qos=1)
            await client.publish(self.t_status, self.status(True), retain=True, qos=1)
            app.samples.box.rewind()
            app.events.box.rewind()
            app.online = True
            log("NET", "online")
            pump = asyncio.create_task(self.pump_or_hang_up())
            await client.run()
        finally:
            self.dead = True
            app.online = False
            if pump:
                pump.cancel()
            client.close()
            log("NET", "offline")


async def motor_off_before_connecting(app, allowed):
    """Waits until the motor is not running, unless handshakes while running are allowed."""
    if allowed or app.ctl.state != C.RUNNING:
        return
    log("NET", "deferred motor_running")
    while app.ctl.state == C.RUNNING:
        await asyncio.sleep_ms(100)


async def network_task(app):
    cfg = app.cfg
    mq = cfg["mqtt"]
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    ssl_ctx = None
    backoff = mq["backoff_min_ms"]
    while True:
        await motor_off_before_connecting(app, mq["connect_while_running"])
        started = time.ticks_ms()
        try:
            await wifi_up(wlan, cfg)
            sync_time(app)
            if ssl_ctx is None and mq["tls"]:
                ssl_ctx = make_ssl(mq)
            await Session(app, wlan, ssl_ctx).run()
        except Exception as e:  # noqa: BLE001 - any network failure means: back off and retry
            log("NET", "error", repr(e))
        app.online = False
        if time.ticks_diff(time.ticks_ms(), started) > 60000:
            backoff = mq["backoff_min_ms"]  # the link held for a while: start over gently
        delay = jitter(backoff)
        log("NET", "retry_in_ms=%d" % delay)
        await asyncio.sleep_ms(delay)
        backoff = min(backoff * 2, mq["backoff_max_ms"])
