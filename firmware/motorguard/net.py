# The network task: Wi-Fi, NTP, MQTT over mutual TLS, the publisher that drains
# the offline rings in order, and remote commands (their rules and queues: commands.py). Bringing the link up (Wi-Fi, NTP,
# the TLS context) is in link.py, imported for each attempt and dropped once those steps are done.
#
# Steps that block the whole VM (a DNS lookup, the NTP exchange, the TLS handshake)
# never run while the motor does (unless mqtt.connect_while_running): just before
# one, the guard checks the motor is off and marks the controller busy, which
# refuses every start until the step is over; a start that won the race calls the
# connect off. A lost connection is therefore rebuilt only once the motor stops.
#
# Nothing here touches the motor except App.request_stop() (PWM off at once, state
# at the next tick) and the command mailbox that the control task serves. Every wait
# is bounded: Wi-Fi join, NTP, TLS connect, PUBACKs (the MQTT client retransmits
# and then declares the link dead), and reconnects back off exponentially with
# jitter so a fleet does not reconnect in lockstep after a broker outage.

import time

import asyncio
import gc
import network
import os

from motorguard import VERSION
from motorguard import commands as cmds
from motorguard import controller
from motorguard import telemetry
from motorguard.base import forget, log
from motorguard.mqtt import MQTTClient, MQTTException

_ACK_INFLIGHT = 2  # unacknowledged acks on the wire before the next one waits
_FW = VERSION.encode()


def jitter(backoff_ms):
    """Full backoff at most, half at least: spreads a fleet's reconnects."""
    half = backoff_ms // 2
    return half + int.from_bytes(os.urandom(2), "big") % (half + 1)


def blocking_guard(app):
    """The MQTT client's guard: a VM-blocking step may begin only with the motor off."""
    ctl = app.ctl
    if app.cfg["mqtt"]["connect_while_running"]:
        return None

    def guard(begin):
        if not begin:
            ctl.net_busy = False
        elif ctl.state == controller.RUNNING:
            raise MQTTException("motor_running")
        else:
            ctl.net_busy = True  # no await since the check: no start can slip in between

    return guard


class Session:
    """One MQTT connection: publishes what the rings hold, serves commands."""

    def __init__(self, app, wlan, ssl_ctx, topics, commands, guard, dns):
        cfg = app.cfg
        self.app = app
        self.wlan = wlan
        self.mq = cfg["mqtt"]
        thing = cfg["thing"]
        self.thing = thing
        self.thing_b = thing.encode()
        self.boot_b = app.boot_id.encode()
        self.t_telemetry, self.t_events, self.t_status, self.t_cmd, self.t_ack = topics
        self.inflight = {}  # packet id -> (ring, batch)
        self.commands = commands
        self.dead = False
        mq = self.mq
        self.client = MQTTClient(
            thing,
            mq["host"],
            port=mq["port"],
            keepalive=mq["keepalive_s"],
            ssl=ssl_ctx,
            ack_timeout_ms=mq["ack_timeout_ms"],
        )
        # A command is ~120 bytes; anything much bigger is read past, never held.
        self.client.max_packet = cmds.MAX_BYTES + len(self.t_cmd)
        self.client.set_callback(commands.receive)
        self.client.set_puback_callback(self.on_puback)
        self.client.set_guard(guard)
        self.client.dns = dns  # the broker's address, kept across sessions
        self.client.set_last_will(self.t_status, self.status(False), retain=True, qos=1)

    def renderer(self, ring, k):
        """Message k of a ring as the MQTT client wants it: a function giving its pieces,
        the same ones each time (the head's figures and the drop count are fixed here).

        The client keeps it until the PUBACK, so it holds one small tuple of ints, not the
        head's bytes: those are rendered again with the rest at every (re)send."""
        spec = (ring, k, ring.box.dropped, self.app.clock.up_s, gc.mem_free(), self.rssi())
        return lambda: self.pieces(spec)

    def pieces(self, spec):
        ring, k, dropped, up_s, heap_free, rssi = spec
        if ring is self.app.backlog:  # a stored batch: its own boot id and uptime, read from flash
            thing = self.thing_b
            return ring.pieces(k, lambda boot, up: telemetry.head(thing, boot, _FW, up, heap_free, rssi), self.app.clock)
        head = telemetry.head(self.thing_b, self.boot_b, _FW, up_s, heap_free, rssi)
        return ring.pieces(k, head, dropped, self.app.clock)

    def rssi(self):
        try:
            return int(self.wlan.status("rssi"))
        except Exception:
            return 0

    def status(self, online):
        return telemetry.status_message(self.thing, self.app.boot_id, VERSION, online)

    def on_puback(self, pid):
        entry = self.inflight.pop(pid, None)
        if entry:
            entry[0].box.ack(entry[1])

    async def publish_ack(self, ack):
        app = self.app
        client = self.client
        # Acks are QoS 1 too: keep only a few unacknowledged, so a flood of refusals
        # cannot pile up retransmission copies in the heap. No deadline of our own: the
        # client retransmits and declares the link dead if the PUBACKs never come.
        while client.inflight() - len(self.inflight) >= _ACK_INFLIGHT:
            if not client.isconnected():
                raise OSError("link lost")
            await asyncio.sleep_ms(10)
        cid, name, ok, result = ack
        msg = telemetry.ack_message(
            self.thing, app.boot_id, VERSION, cid, name, ok, result, app.ctl.state, app.sweep.speed
        )
        await client.publish(self.t_ack, msg, qos=1)

    async def pump(self):
        """Acks first (stops before anything), then commands, events, telemetry, oldest first."""
        app = self.app
        commands = self.commands
        mb = app.mailbox
        idle_clean = True
        while not self.dead:
            if not self.wlan.isconnected():
                raise OSError("wifi lost")
            if mb.stop:
                await asyncio.sleep_ms(1)  # the control tick applies the stop first: ack its state
                continue
            ack = commands.next_ack()
            if ack is None and commands.pending:
                ack = await commands.serve()
            if ack is not None:
                await self.publish_ack(ack)
                idle_clean = False
                continue
            if len(self.inflight) < self.mq["max_inflight"]:
                ring, topic = app.events, self.t_events
                k = ring.box.next_batch()
                backlog = app.backlog
                if k < 0 and backlog is not None and backlog.pending():
                    # Oldest first: the RAM ring waits until the backlog is drained; events never do.
                    ring, topic, k = backlog, self.t_telemetry, backlog.next_batch()
                elif k < 0:
                    ring, topic = app.samples, self.t_telemetry
                    k = ring.box.next_batch()
                if k >= 0:
                    ring.box.sent(k)
                    pid = await self.client.publish(topic, self.renderer(ring, k), qos=1)
                    self.inflight[pid] = (ring, k)
                    idle_clean = False
                    continue
            if not idle_clean:
                # Idle after work: collect now, between ticks, not at a random allocation later.
                gc.collect()
                idle_clean = True
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
            # Online: the connect-time code leaves the heap until the next reconnect needs it.
            forget("motorguard.mqtt_connect")
            forget("motorguard.dnscache")
            gc.collect()
            app.samples.box.rewind()
            app.events.box.rewind()
            if app.backlog is not None:
                app.backlog.rewind()
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


def device_topics(thing):
    """This board's topics (telemetry, events, status, cmd, ack), as bytes once: the client
    would otherwise encode a topic for every publish and keep a copy with each unacked one."""
    from motorguard import contract

    kinds = (contract.TELEMETRY, contract.EVENTS, contract.STATUS, contract.CMD, contract.ACK)
    return tuple(contract.topic(thing, kind).encode() for kind in kinds)


async def keep_backlog(app):
    """The flash backlog's keeper (backlog.keep), once a sample period: it has work while there is
    a backlog, or while the board is offline with its motor stopped. Its code is in the heap only
    then: from the first spill, or a boot that found one, until the backlog is drained and deleted."""
    ctl = app.ctl
    # At 1 Hz or slower, every sample goes to flash as it comes, so a power cut loses none. Faster
    # sampling still writes once a second (a keeper every few ms cost the board 5 KB more heap at
    # its peak in make bench-firmware's heap run).
    period = app.sample_period_ms if app.sample_period_ms > 1000 else 1000
    try:
        stored = os.listdir(telemetry.BACKLOG_DIR)  # a previous boot's: the first session drains it
    except OSError:
        stored = ()
    while True:
        await asyncio.sleep_ms(period)  # first: a boot that comes online at once writes nothing
        if app.backlog is not None or stored or not (app.online or ctl.state == controller.RUNNING):
            from motorguard import backlog

            backlog.keep(app)
            backlog = stored = None  # this frame must not keep the module once keep() dropped it


async def network_task(app):
    cfg = app.cfg
    mq = cfg["mqtt"]
    topics = device_topics(cfg["thing"])
    # The topics were the fleet contract's last use on the board (boot took the reset causes,
    # every other module its constants): its module leaves the heap.
    forget("motorguard.contract")
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    commands = cmds.Commands(app)
    if app.backlog_samples:
        asyncio.create_task(keep_backlog(app))
    guard = blocking_guard(app)  # one for the whole task: NTP, the TLS context, every session
    dns = {}  # the broker's address, looked up once (motorguard/dnscache.py)
    ssl_ctx = None
    wifi_asked = False  # the driver is asked to connect once a boot, then reassociates by itself
    backoff = mq["backoff_min_ms"]
    ctl = app.ctl
    while True:
        # Connect only with the motor off, unless handshakes while running are allowed.
        if ctl.state == controller.RUNNING and not mq["connect_while_running"]:
            log("NET", "deferred motor_running")
            while ctl.state == controller.RUNNING:
                await asyncio.sleep_ms(100)
        started = time.ticks_ms()
        try:
            from motorguard import link  # connect-time code, imported for each attempt

            if not wifi_asked:
                link.wifi_ask(wlan, cfg)
                wifi_asked = True
            await link.wifi_up(wlan, cfg)
            link.sync_time(app, guard)
            if ssl_ctx is None and mq["tls"]:
                ssl_ctx = link.guarded(guard, link.make_ssl, mq)  # parsing the key costs a point multiplication
            # Its steps are done: out of the heap before the handshake and for the session.
            link = None
            forget("motorguard.link")
            await Session(app, wlan, ssl_ctx, topics, commands, guard, dns).run()
        except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 - any failure: back off and retry
            # CancelledError too: a cancel aimed at the dead session's reader can land here,
            # and nothing else ever cancels this task.
            log("NET", "error", repr(e))
        app.online = False
        ctl.net_busy = False
        if time.ticks_diff(time.ticks_ms(), started) > 60000:
            backoff = mq["backoff_min_ms"]  # the link held for a while: start over gently
        delay = jitter(backoff)
        log("NET", "retry_in_ms=%d" % delay)
        try:
            await asyncio.sleep_ms(delay)
        except asyncio.CancelledError:
            log("NET", "error", "cancelled while backing off")
        backoff = min(backoff * 2, mq["backoff_max_ms"])
