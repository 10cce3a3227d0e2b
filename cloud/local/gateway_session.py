"""One client's connection through the local IoT Core's gateway, from its CONNECT to its last byte.

A Session reads the client's CONNECT, judges it and every later PUBLISH and SUBSCRIBE of a device
against the device policy, filters what the broker delivers by iot:Receive, and names the reason the
connection ended for the lifecycle events. It is apart from cloud/local/gateway.py because that
module owns what is shared by all connections (the TLS listener, the policy and CRL reloads, the
table of live sessions, the worker processes and the command line), while this one is the MQTT
conversation of a single connection: the part that says what AWS IoT Core would do with each packet.

A Session reaches the shared state only through the gateway object handed to it (its policy,
services, sessions, siblings, events, record, note() and args.upstream) and never imports
cloud.local.gateway, so the two modules do not import each other.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid

import contract
from cloud.local import mqtt_wire as w
from provisioning import policy_eval

# A packet the gateway reads whole: AWS IoT Core's payload limit plus room for the topic and headers.
# A larger PUBLISH still reaches Mosquitto, whose message_size_limit drops it (broker_config.py).
PACKET_LIMIT = contract.MAX_PAYLOAD_BYTES + 64 * 1024
CONNECT_TIMEOUT_S = 10  # a client that sends no CONNECT this long after its handshake is dropped
PIPE_CHUNK = 256 * 1024


def log(text: str):
    print("%s %s" % (time.strftime("%Y-%m-%dT%H:%M:%S"), text), flush=True)


class Session:
    """A client's connection; gw is the Gateway (cloud/local/gateway.py) that accepted it."""

    def __init__(self, gw, identity: str, reader, writer):
        self.gw, self.identity, self.reader, self.writer = gw, identity, reader, writer
        self.device = identity not in gw.services
        self.up_r = self.up_w = None
        self.connect = None
        self.reason = None  # why the gateway ended it, for the disconnected event
        self.client_disconnected = False
        self.connected = False
        self.last_client_packet = time.monotonic()
        self.id = uuid.uuid4().hex
        self.decided, self.decided_version = {}, None

    async def run(self):
        framer = w.Framer(PACKET_LIMIT)
        try:
            packets = await asyncio.wait_for(w.first_packet(self.reader, framer, w.CONNECT << 4), CONNECT_TIMEOUT_S)
            first, packet, at = packets.pop(0)
            c = self.connect = w.parse_connect(packet[at:])
        except w.WireError as e:
            return self.refuse(str(e))
        except asyncio.IncompleteReadError as e:
            if e.partial:
                self.refuse("the connection closed inside its CONNECT")
            return  # closed before sending anything: a TLS probe (LocalBroker.check_tls), nothing to say
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError) as e:
            return self.refuse("no CONNECT (%s)" % (type(e).__name__,))
        if self.device:
            self.gw.note(client=self.identity, type="CONNECT", client_id=c.client_id, clean=c.clean,
                         will_topic=c.will_topic, will_retain=c.will_retain, will_qos=c.will_qos, level=c.level)
            if c.will_topic is not None and c.will_qos > 1:
                return self.refuse("a Will at QoS %d (AWS IoT Core supports QoS 0 and 1)" % c.will_qos)
            d = self.gw.policy.decide(policy_eval.connect_requests(c.client_id, c.will_topic, c.will_retain), self.ctx())
            if not d:
                return self.refuse(d.reason)
        old = self.gw.sessions.get(self.key())
        if old is not None:
            old.end("DUPLICATE_CLIENTID")
        if self.gw.siblings is not None:
            self.gw.siblings.takeover(self.key())  # before Mosquitto hears of it: see gateway_workers.py
        self.gw.sessions[self.key()] = self
        self.up_r, self.up_w = await asyncio.open_unix_connection(self.gw.args.upstream, limit=PIPE_CHUNK)
        self.up_w.write(w.connect_as(c, self.identity))
        await self.up_w.drain()
        if self.device:
            await asyncio.gather(self.client_to_broker(framer, packets), self.broker_to_client())
        else:
            await asyncio.gather(self.service_to_broker(framer, packets), self.broker_to_client(raw_after_connack=True))

    async def service_to_broker(self, framer, packets):
        self.up_w.write(b"".join(p for _, p, _ in packets) + bytes(framer.buf))  # what came with the CONNECT
        await pipe(self.reader, self.up_w)
        self.end("CONNECTION_LOST")

    def key(self) -> str:
        """The client id the broker will know this session by: a service's is its identity (the broker
        renames it so); a device's is the one it asked for, which the policy has already checked."""
        return self.connect.client_id if self.device else self.identity

    def ctx(self) -> policy_eval.Context:
        c = self.connect
        return policy_eval.Context(thing=self.identity, client_id=c.client_id,
                                   connect_attributes=policy_eval.connect_attributes(c.clean, c.will_topic is not None))

    def refuse(self, why: str):
        """A CONNECT AWS IoT Core would refuse: closed with no CONNACK."""
        log("refused CONNECT from %s: %s" % (self.identity, why))
        if self.device:
            self.gw.note(client=self.identity, type="REFUSED", reason=why)

    def end(self, reason: str):
        """Close this client's connection now (a denial or a takeover); the upstream side is cut without
        a DISCONNECT, so the broker publishes the Will, as AWS IoT Core does."""
        if self.reason is None:
            self.reason = reason
        for s in (self.writer, self.up_w):
            if s is not None:
                s.transport.abort()

    def decide(self, requests) -> policy_eval.Decision:
        """The policy's decision, remembered for this session: a device uses a handful of topics, so
        the evaluator runs once per (action, topic) rather than on every message; a reload clears it."""
        key = tuple(requests)
        if self.decided_version != self.gw.policy.version:
            self.decided, self.decided_version = {}, self.gw.policy.version
        d = self.decided.get(key)
        if d is None:
            d = self.decided[key] = self.gw.policy.decide(requests, self.ctx())
        return d

    async def client_to_broker(self, framer, packets):
        """The device's packets after its CONNECT (packets: those that came with it), each judged."""
        level = self.connect.level
        while True:
            out = []
            for first, packet, at in packets:
                why = self.judge(first, packet[at:], level)
                if why:
                    self.up_w.write(b"".join(out))  # what came before the denied packet goes through
                    return self.deny(*why)
                out.append(packet)
            self.up_w.write(b"".join(out))
            await self.up_w.drain()
            try:
                data = await self.reader.read(PIPE_CHUNK)
                packets = framer.feed(data)
            except (ConnectionError, ssl.SSLError):
                return self.end("CONNECTION_LOST")
            except w.WireError as e:
                log("%s sent a malformed packet: %s" % (self.identity, e))
                return self.end("CLIENT_ERROR")
            if not data:
                return self.end("CONNECTION_LOST")
            self.last_client_packet = time.monotonic()

    def judge(self, first: int, body: bytes, level: int):
        """None when the packet may go on, else (why, disconnect reason) as AWS IoT Core would close."""
        kind = first >> 4
        try:
            if kind == w.PUBLISH:
                topic, qos, retain, _ = w.parse_publish(first, body, level)
                if self.gw.record is not None:  # (the hot path: no dict built when nothing records)
                    self.gw.note(client=self.identity, type="PUBLISH", topic=topic, qos=qos, retain=retain,
                                 dup=bool(first & 8), bytes=len(body))
                if qos > 1:
                    return "PUBLISH at QoS %d (AWS IoT Core supports QoS 0 and 1)" % qos, "CLIENT_ERROR"
                d = self.decide(policy_eval.publish_requests(topic, retain))
                if not d:
                    return "PUBLISH to %s%s: %s" % (topic, " (retained)" if retain else "", d.reason), "AUTH_ERROR"
            elif kind == w.SUBSCRIBE:
                filters = w.parse_subscribe(body, level)
                self.gw.note(client=self.identity, type="SUBSCRIBE", filters=[f for f, _ in filters])
                for f, _ in filters:
                    d = self.decide([("iot:Subscribe", f)])
                    if not d:
                        return "SUBSCRIBE to %s: %s" % (f, d.reason), "AUTH_ERROR"
            else:
                self.gw.note(client=self.identity, type=w.NAMES.get(kind, str(kind)))
                if kind == w.DISCONNECT:
                    self.client_disconnected = True
        except w.WireError as e:
            return "a malformed %s: %s" % (w.NAMES.get(kind, kind), e), "CLIENT_ERROR"
        return None

    def deny(self, why: str, reason: str = "AUTH_ERROR"):
        log("closed %s: %s" % (self.identity, why))
        self.gw.note(client=self.identity, type="DENIED", reason=why)
        self.end(reason)

    async def broker_to_client(self, raw_after_connack: bool = False):
        framer = w.Framer(1 << 28)
        try:
            packets = await w.first_packet(self.up_r, framer, w.CONNACK << 4)
        except (asyncio.IncompleteReadError, ConnectionError, w.WireError):
            return self.end("SERVER_ERROR")
        first, packet, at = packets[0]
        if len(packet) - at >= 2 and packet[at + 1] == 0:
            self.connected = True
            if self.device:
                self.gw.events.lifecycle("connected", self)
        self.writer.write(packet)
        await self.writer.drain()
        packets = packets[1:]
        if raw_after_connack:
            self.writer.write(b"".join(p for _, p, _ in packets) + bytes(framer.buf))
            await pipe(self.up_r, self.writer)
            return self.end("CONNECTION_LOST" if not self.client_disconnected else "CLIENT_INITIATED_DISCONNECT")
        level = self.connect.level
        while True:
            out = []
            for first, packet, at in packets:
                if first >> 4 == w.PUBLISH:
                    topic, qos, _, pid = w.parse_publish(first, packet[at:], level)
                    if not self.decide([("iot:Receive", topic)]):
                        self.gw.note(client=self.identity, type="NOT_RECEIVED", topic=topic)
                        if qos == 1:
                            self.up_w.write(w.puback(pid))
                        continue
                out.append(packet)
            self.writer.write(b"".join(out))
            await self.writer.drain()
            try:
                data = await self.up_r.read(PIPE_CHUNK)
                packets = framer.feed(data)
            except (ConnectionError, w.WireError):
                data = b""
            if not data:
                if self.gw.siblings is not None:
                    self.gw.siblings.read_pending()  # a takeover by another worker names the reason
                return self.end(self.upstream_gone_reason())

    def upstream_gone_reason(self) -> str:
        if self.client_disconnected:
            return "CLIENT_INITIATED_DISCONNECT"
        keepalive = self.connect.keepalive if self.connect else 0
        if keepalive and time.monotonic() - self.last_client_packet >= keepalive * 1.5 - 0.5:
            return "MQTT_KEEP_ALIVE_TIMEOUT"
        return "SERVER_INITIATED_DISCONNECT"

    async def close(self):
        if self.connect is not None and self.gw.sessions.get(self.key()) is self:
            del self.gw.sessions[self.key()]
        for s in (self.writer, self.up_w):
            if s is not None:
                s.transport.abort()
        if self.connected and self.device:
            reason = self.reason or ("CLIENT_INITIATED_DISCONNECT" if self.client_disconnected else "CONNECTION_LOST")
            if self.client_disconnected and reason == "CONNECTION_LOST":
                reason = "CLIENT_INITIATED_DISCONNECT"
            self.gw.events.lifecycle("disconnected", self, reason)


async def pipe(reader, writer):
    """Bytes one way, unread (a service identity's stream after its CONNECT)."""
    try:
        while True:
            data = await reader.read(PIPE_CHUNK)
            if not data:
                return
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        return
