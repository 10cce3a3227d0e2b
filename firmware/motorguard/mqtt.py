# MotorGuard's own MQTT 3.1.1 client, on asyncio, for MicroPython (ESP32) and CPython.
#
# Why not umqtt.simple: its QoS 1 publish blocks until a PUBACK that may never
# come, nothing pings, and its blocking socket stalls the control loop. Here
# every wait is bounded: connect (TCP + TLS + CONNACK), writes (drain with a
# timeout), SUBACK, PINGRESP and PUBACK (retransmitted with DUP, then the link
# is declared dead). publish() never waits for its PUBACK: the caller keeps
# its own in-flight window and learns of acks through set_puback_callback().
#
# Method names follow umqtt.simple where the meaning is the same. QoS 2 is
# not supported (AWS IoT Core has none): asking for it raises ValueError.
#
# This file is the link and the writing side: publish, subscribe, ping, retransmissions,
# close. The connect and subscribe steps are in motorguard/mqtt_connect.py (needed only
# while a session starts); the reader loop, run(), and the handling of incoming packets in
# motorguard/mqtt_reader.py; the packet encoders in mqtt_packets.py.
#
# Memory: the payload is never copied on the way out (the socket gets the
# caller's bytes); each packet's small head is its own exact-size bytearray,
# because CPython 3.12+ transports keep a view of a written buffer, so a shared
# mutable buffer could be overwritten before it is sent. Fixed packets are
# bytes constants.

import asyncio
import errno

from motorguard import mqtt_packets as pk
from motorguard.mqtt_packets import MQTTException
from motorguard.mqtt_reader import Reader, ticks_diff, ticks_ms


class MQTTClient(Reader):
    def __init__(
        self,
        client_id,
        server,
        port=0,
        user=None,
        password=None,
        keepalive=0,
        ssl=None,
        server_hostname=None,
        ack_timeout_ms=5000,
        max_retries=3,
    ):
        self.client_id = pk.as_bytes(client_id)
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.server_hostname = server_hostname or server
        self.ack_timeout_ms = ack_timeout_ms
        # The broker's address once looked up (motorguard/dnscache.py): a caller that makes a
        # client per connection hands each the same dict, so a reconnect need not look it up.
        self.dns = {}
        self.max_retries = max_retries
        # Largest incoming packet kept; bigger PUBLISHes are read past and
        # acknowledged, and reach the callback as msg None (a 128 KB AWS payload
        # would not fit the ESP32's heap). Commands are a few hundred bytes.
        self.max_packet = 16384
        self.cb = None  # cb(topic, msg, retained)
        # guard(True) runs just before a step that blocks the whole VM (a DNS lookup,
        # the TLS handshake through CONNACK) and may raise to call the connect off;
        # guard(False) runs when the step is over (also on failure).
        self.guard = None
        self.puback_cb = None
        self.will = None
        self._reader = None
        self._writer = None
        self._connected = False
        self._sending = False  # a packet is being written (one at a time: see _send)
        self._pid = 0
        # pid -> [topic, msg, retain, last sent (ticks), retransmissions]
        self._unacked = {}
        self._sub_pid = 0
        self._sub_rc = -1
        self._connack = None
        self._ping_at = None  # ticks of the unanswered PINGREQ, or None
        self._last_tx = 0
        self._last_rx = 0
        self._err = None  # why the link died (None: closed on purpose)
        self._closing = False  # disconnect() under way: the broker's EOF is expected
        self._run_task = None
        self._kicked = False  # we cancelled the run task ourselves

    # ------------------------------------------------------------ settings

    def set_callback(self, f):
        self.cb = f

    def set_guard(self, f):
        self.guard = f

    def set_puback_callback(self, f):
        self.puback_cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        pk.check_qos(qos)
        if not topic:
            raise ValueError("will topic")
        self.will = (pk.as_bytes(topic), pk.as_bytes(msg), retain, qos)

    def isconnected(self):
        return self._connected

    def inflight(self):
        return len(self._unacked)

    # ------------------------------------------------------------ link

    async def connect(self, clean_session=True, timeout_ms=10000):
        """TCP + TLS + CONNECT/CONNACK within timeout_ms. Returns session_present.

        The steps are in motorguard/mqtt_connect.py, imported here when needed: a board can
        drop that module while the link is up (net.py does), so its code leaves the heap."""
        from motorguard import mqtt_connect

        return await mqtt_connect.connect(self, clean_session, timeout_ms)

    async def disconnect(self):
        """Clean DISCONNECT: the broker discards the last will."""
        w = self._writer
        if w is None:
            return
        self._closing = True
        try:
            await self._send(pk.DISCONNECT_PKT)
        except Exception:  # noqa: BLE001 - closing regardless
            pass
        self._abort(None, graceful=True)
        try:
            await asyncio.wait_for(w.wait_closed(), self.ack_timeout_ms / 1000)
        except Exception:  # noqa: BLE001
            pass

    def close(self):
        """Drop the link at once without DISCONNECT, so the last will fires."""
        self._abort(None)

    def _abort(self, err, graceful=False):
        # The one way a link ends: mark it dead, wake whoever waits on it,
        # close the socket and stop the reader loop.
        if err is not None and self._err is None and not self._closing:
            self._err = err
        self._connected = False
        w = self._writer
        self._writer = None
        t = self._run_task
        if t is not None:
            try:
                me = asyncio.current_task()
            except RuntimeError:  # close() called with no event loop running (CPython)
                me = None
            if t is not me:
                # The reader is blocked in a read: cancel it (run() turns that
                # into its normal exit). From inside run() itself (a callback
                # calling close()) the loop sees _writer is None instead.
                self._run_task = None
                self._kicked = True
                t.cancel()
        if w is None:
            return
        # Close now. CPython: abort() skips the TLS close_notify and the write
        # buffer. MicroPython: in some versions Stream.close() is a no-op and only
        # wait_closed() closes the socket, so close the socket directly too
        # (socket close is idempotent).
        try:
            if not graceful and hasattr(w, "transport"):
                w.transport.abort()
            else:
                w.close()
            s = getattr(w, "s", None)
            if s is not None:
                s.close()
        except Exception:  # noqa: BLE001 - the socket is being thrown away anyway
            pass

    # ------------------------------------------------------------ writing

    async def _send(self, head, body=None, timeout_s=None):
        timeout_s = timeout_s or self.ack_timeout_ms / 1000
        # One packet on the wire at a time. A flag polled each millisecond, not an asyncio.Lock,
        # whose module would cost ~0.9 KB of heap for this alone: the wait is one drain, and
        # every holder yields while it drains, so a waiter gets in within a packet or two.
        while self._sending:
            await asyncio.sleep(0.001)
        self._sending = True
        try:
            w = self._writer
            if w is None:
                raise self._err or OSError(errno.ENOTCONN)
            try:
                w.write(head)
                if callable(body):
                    # A payload in pieces: each one goes out before the next is made, so
                    # the stream never buffers more than one piece (MicroPython's Stream
                    # keeps an unsent rest as one bytes object).
                    for piece in body():
                        w.write(piece)
                        if getattr(w, "out_buf", None):
                            await asyncio.wait_for(w.drain(), timeout_s)
                elif body:
                    w.write(body)
                await asyncio.wait_for(w.drain(), timeout_s)
            except asyncio.TimeoutError:
                # Part of a packet may be out: the stream cannot be resynced.
                self._abort(OSError(errno.ETIMEDOUT))
                raise OSError(errno.ETIMEDOUT)
            except asyncio.CancelledError:
                # MicroPython resends a half-drained buffer from its start.
                self._abort(OSError(errno.ECONNABORTED))
                raise
            except Exception as e:  # noqa: BLE001 - a piece failed to render: the packet is cut short
                self._abort(e)
                raise
            self._last_tx = ticks_ms()
        finally:
            self._sending = False

    def _next_pid(self):
        # 1..65535, skipping ids still waiting for their ack.
        for _ in range(65535):
            self._pid = self._pid % 65535 + 1
            if self._pid not in self._unacked and self._pid != self._sub_pid:
                return self._pid
        raise MQTTException("no free packet id")

    async def publish(self, topic, msg, retain=False, qos=0):
        """Sends one PUBLISH; returns its packet id (0 for QoS 0). Does not wait for PUBACK.

        msg is bytes (or str), or a function returning the payload's pieces (an iterable
        of bytes), called once to count them, once to send them and again for every
        retransmission: it must give the same pieces each time. For QoS 1, msg is kept
        (not copied) for retransmission until acked: do not mutate a bytearray passed
        here before its PUBACK.
        """
        pk.check_qos(qos)
        topic = pk.as_bytes(topic)
        if b"#" in topic or b"+" in topic or not topic:
            raise ValueError("bad publish topic")
        msg = msg if callable(msg) else pk.as_bytes(msg)
        if self._writer is None:  # before taking a packet id that would then never be acked
            raise self._err or OSError(errno.ENOTCONN)
        pid = 0
        if qos:
            pid = self._next_pid()
            # Registered before writing: the PUBACK may beat the drain.
            self._unacked[pid] = [topic, msg, retain, ticks_ms(), 0]
        await self._send(pk.publish_head(topic, pk.payload_size(msg), qos, retain, False, pid), msg)
        return pid

    async def subscribe(self, topic, qos=0):
        """SUBSCRIBE and wait (bounded) for SUBACK; returns the granted QoS.

        Works before run() is started (it reads packets itself) and while run() is running
        (run() hands it the SUBACK). One at a time. The steps are in motorguard/mqtt_connect.py,
        imported here when needed, as for connect()."""
        from motorguard import mqtt_connect

        return await mqtt_connect.subscribe(self, topic, qos)

    async def ping(self):
        if self._ping_at is None:
            self._ping_at = ticks_ms()
        await self._send(pk.PINGREQ_PKT)

    # ------------------------------------------------------------ housekeeping

    async def _keep(self):
        # Housekeeping beside the reader: keepalive pings, the PINGRESP
        # deadline and QoS 1 retransmissions. Any failure ends the link.
        ack = self.ack_timeout_ms
        idle = self.keepalive * 500  # ping after keepalive/2 without sending
        # Check often enough that neither deadline is missed by much.
        tick = min(1000, ack // 4, idle // 4 if idle else 1000)
        tick = max(20, tick) / 1000
        try:
            while self._writer is not None:
                await asyncio.sleep(tick)
                now = ticks_ms()
                if self._ping_at is not None and ticks_diff(now, self._ping_at) > ack:
                    self._abort(MQTTException("no PINGRESP"))
                    return
                while True:
                    due = 0
                    for pid in self._unacked:  # no await inside: the dict may grow meanwhile
                        if ticks_diff(now, self._unacked[pid][3]) >= ack:
                            due = pid
                            break
                    if not due:
                        break
                    e = self._unacked[due]
                    if e[4] >= self.max_retries:
                        self._abort(MQTTException("no PUBACK"))
                        return
                    e[4] += 1
                    e[3] = now
                    await self._send(pk.publish_head(e[0], pk.payload_size(e[1]), 1, e[2], True, due), e[1])
                # Ping after keepalive/2 without sending (so the broker keeps us), or
                # after a whole keepalive without hearing anything (a QoS 0-only
                # sender would otherwise never notice a half-open link).
                if (
                    idle
                    and self._ping_at is None
                    and (ticks_diff(now, self._last_tx) >= idle or ticks_diff(now, self._last_rx) >= 2 * idle)
                ):
                    await self.ping()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            self._abort(e)
