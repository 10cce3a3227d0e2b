# The reading half of MotorGuard's MQTT client (motorguard/mqtt.py): the reader loop
# and what it does with each packet that comes in.
#
# Reader is MQTTClient's base class, not a client of its own: the client holds the
# state and supplies _send, _abort and _keep. Incoming PUBLISHes are read field by
# field, so the payload is allocated once at its final size and never sliced out of a
# larger body; one bigger than max_packet is read past in small pieces.

import asyncio
import errno

from motorguard import mqtt_packets as pk

try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython: same contract, no wrap-around needed (mqtt.py takes these from here)
    from time import monotonic as _monotonic

    def ticks_ms():
        return int(_monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


class Reader:
    async def _read_packet(self):
        """Reads one packet, acts on it, returns its type (high nibble)."""
        r = self._reader
        hdr = (await r.readexactly(1))[0]
        n = 0
        shift = 0
        while True:
            b = (await r.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise pk.MQTTException("bad length")
        self._last_rx = ticks_ms()
        kind = hdr & 0xF0
        if kind == pk.PUBLISH:
            await self._on_publish(hdr, n)
            return kind
        if n > 4:  # nothing else we accept is longer (SUBACK of one topic: 3)
            raise pk.MQTTException("unexpected packet 0x%02x" % hdr)
        body = await r.readexactly(n) if n else b""
        if kind == pk.PUBACK and n == 2:
            pid = body[0] << 8 | body[1]
            # A duplicate ack (after a retransmit) is not reported twice.
            if self._unacked.pop(pid, None) is not None and self.puback_cb:
                self.puback_cb(pid)
        elif kind == pk.SUBACK and n == 3:
            if (body[0] << 8 | body[1]) == self._sub_pid:
                self._sub_rc = body[2]
        elif kind == pk.PINGRESP:
            self._ping_at = None
        elif kind == pk.CONNACK and n == 2 and self._connack is None:
            self._connack = body
        else:
            raise pk.MQTTException("unexpected packet 0x%02x" % hdr)
        return kind

    async def _on_publish(self, hdr, n):
        r = self._reader
        qos = (hdr >> 1) & 3
        if qos > 1:
            raise pk.MQTTException("qos2 publish")  # we never subscribe with QoS 2
        tl = int.from_bytes(await r.readexactly(2), "big")
        n -= 2 + tl + (2 if qos else 0)
        if n < 0:
            raise pk.MQTTException("bad publish")
        big = n + tl > self.max_packet
        topic = await self._skip(tl) if big else await r.readexactly(tl)
        pid = int.from_bytes(await r.readexactly(2), "big") if qos else 0
        retained = bool(hdr & 1)
        if big:
            # Read past it without holding it; the callback still hears of it (msg None)
            # so the sender can be told why nothing happened.
            await self._skip(n)
            if self.cb:
                self.cb(None, None, retained)
        else:
            msg = await r.readexactly(n) if n else b""
            if self.cb:
                self.cb(topic, msg, retained)
        if qos and self._writer is not None:
            await self._send(pk.puback_packet(pid))

    async def _skip(self, n):
        # Reads past n bytes in small pieces without holding them.
        while n:
            k = n if n < 256 else 256
            await self._reader.readexactly(k)
            n -= k
        return None

    async def run(self):
        """Reader loop until the link ends; returns after close()/disconnect(), raises when it died."""
        if self._writer is None:
            raise self._err or OSError(errno.ENOTCONN)
        self._run_task = asyncio.current_task()
        self._kicked = False
        keeper = asyncio.create_task(self._keep())
        try:
            while self._writer is not None:
                await self._read_packet()
        except asyncio.CancelledError:
            if not self._kicked:
                raise  # someone else cancelled our caller: not ours to swallow
            t = asyncio.current_task()
            if hasattr(t, "uncancel"):  # CPython 3.11+: undo the count we caused
                t.uncancel()
        except EOFError:
            self._abort(OSError(errno.ECONNRESET))
        except Exception as e:  # noqa: BLE001 - OSError, MQTTException, a callback's error
            self._abort(e)
        finally:
            self._run_task = None
            keeper.cancel()
        if self._err is not None:
            raise self._err
