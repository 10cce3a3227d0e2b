"""The local IoT Core's front door: mutual TLS, then the device policy enforced as AWS IoT Core does.

    python -m cloud.local.gateway --state-dir build/broker --port 8883 --upstream /path/mqtt.sock

Every client connects here (the broker's port); Mosquitto listens only on a unix socket in a private
directory behind it. For each connection the gateway
- completes TLS 1.2+ with a client certificate from the fleet CA (revoked ones refused by the CRL);
  the certificate's CN is the identity, as a thing name is in AWS;
- for a device, evaluates every CONNECT, PUBLISH and SUBSCRIBE against the device policy document that
  provisioning attaches in AWS (provisioning/policy.py, written to device-policy.json in the state dir,
  re-read on SIGHUP) with provisioning/policy_eval.py, and on a denial does what AWS IoT Core does:
  a CONNECT is closed without a CONNACK; a PUBLISH or SUBSCRIBE closes the connection (its Will is then
  published); a message the policy does not let the device receive is not delivered (and acknowledged
  to the broker on its behalf). QoS 2 is refused, as AWS IoT Core supports only QoS 0 and 1;
- ends an older connection of the same client id when a new one is accepted (a takeover);
- publishes AWS's lifecycle events, $aws/events/presence/connected|disconnected/<clientId>, with the
  disconnect reason (AUTH_ERROR, DUPLICATE_CLIENTID, CLIENT_INITIATED_DISCONNECT, CONNECTION_LOST,
  MQTT_KEEP_ALIVE_TIMEOUT, SERVER_INITIATED_DISCONNECT);
- forwards the CONNECT to Mosquitto with the identity as user name, which its ACL (broker_config.py)
  and client-id rewrite key on; the local service identities (contract.SERVICE_IDENTITIES) are not
  devices: no device policy, their bytes are piped through unread after the CONNECT.
Why a gateway rather than a Mosquitto plugin or another broker: docs/cloud.md, "The local IoT Core".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import time
import uuid
from pathlib import Path

import contract
from contract import exit_codes
from cloud.local import mqtt_wire as w
from cloud.local import gateway_workers
from cloud.local.gateway_policy import Policy
from cloud.local.lifecycle import EventPublisher, RelayedEvents
from provisioning import policy_eval

# A packet the gateway reads whole: AWS IoT Core's payload limit plus room for the topic and headers.
# A larger PUBLISH still reaches Mosquitto, whose message_size_limit drops it (broker_config.py).
PACKET_LIMIT = contract.MAX_PAYLOAD_BYTES + 64 * 1024
CONNECT_TIMEOUT_S = 10  # a client that sends no CONNECT this long after its handshake is dropped
PIPE_CHUNK = 256 * 1024
RELOADED = "gateway reloaded its policy and CRL"  # the log line cloud.local.broker waits for


class Gateway:
    def __init__(self, args, index: int = 0):
        self.args = args
        self.index = index  # this worker's number among --workers processes (gateway_workers.py)
        self.siblings = None
        self.policy = Policy(Path(args.policy))
        self.services = set(contract.SERVICE_IDENTITIES) | set(args.service or ())
        self.sessions: dict[str, "Session"] = {}  # client id -> the live session
        self.events = None
        self.record = open(args.record, "a", buffering=1) if args.record else None
        self.server = None

    def tls_context(self) -> ssl.SSLContext:
        a = self.args
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(a.certfile, a.keyfile)
        ctx.load_verify_locations(cafile=a.cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
        if a.crlfile:
            ctx.load_verify_locations(cafile=a.crlfile)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return ctx

    async def start(self):
        if self.args.workers > 1:
            self.siblings = gateway_workers.Siblings(Path(self.args.upstream).parent, self.index, self.args.workers,
                                                     self.taken_over, self.publish_event, log)
        if self.index == 0:
            self.events = EventPublisher(self.args.upstream)
        else:
            self.events = RelayedEvents(self.siblings)
        await self.listen()
        log("gateway worker %d of %d listening on %s:%d, upstream %s"
            % (self.index, self.args.workers, self.args.host, self.args.port, self.args.upstream))

    def taken_over(self, key: str):
        """Another worker accepted a new session of this client id: the one here ends, as in one process."""
        old = self.sessions.get(key)
        if old is not None:
            old.end("DUPLICATE_CLIENTID")

    def publish_event(self, packet: bytes):
        self.events.publish(packet)  # worker 0 only: the others send theirs here

    async def listen(self):
        """(Re)open the listener with a fresh TLS context (the CRL may have changed). The new listener
        shares the port (SO_REUSEPORT) before the old one closes, so no connect is refused meanwhile;
        connections already open are not affected, as with Mosquitto's own reload."""
        new = await asyncio.start_server(self.handle, self.args.host, self.args.port, ssl=self.tls_context(),
                                         ssl_handshake_timeout=CONNECT_TIMEOUT_S, backlog=4096, limit=PIPE_CHUNK,
                                         reuse_port=True)
        old, self.server = self.server, new
        if old is not None:
            old.close()

    async def reload(self):
        try:
            self.policy.load()
            await self.listen()
            log(RELOADED)
        except (OSError, ValueError, ssl.SSLError) as e:
            log("reload failed, keeping the previous policy and certificates: %s" % e)

    async def handle(self, reader, writer):
        cert = writer.get_extra_info("peercert") or {}
        identity = _common_name(cert)
        s = Session(self, identity, reader, writer)
        try:
            await s.run()
        except asyncio.CancelledError:
            pass  # the gateway is stopping
        except Exception as e:  # noqa: BLE001 - one client's failure must never stop the gateway
            log("session %s ended by %s: %s" % (identity, type(e).__name__, e))
        finally:
            await s.close()

    def note(self, **fields):
        if self.record:
            if self.args.workers > 1:
                fields["worker"] = self.index
            self.record.write(json.dumps(dict(fields, t=time.time())) + "\n")


class Session:
    def __init__(self, gw: Gateway, identity: str, reader, writer):
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


def _common_name(cert: dict) -> str:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return ""


def log(text: str):
    print("%s %s" % (time.strftime("%Y-%m-%dT%H:%M:%S"), text), flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cloud.local.gateway", description=__doc__.split("\n")[0],
                                epilog="Started and stopped by cloud.local.broker; SIGHUP re-reads the policy "
                                       "and the CRL.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="the TLS port clients connect to")
    p.add_argument("--upstream", required=True, help="Mosquitto's unix socket")
    p.add_argument("--cafile", required=True)
    p.add_argument("--certfile", required=True)
    p.add_argument("--keyfile", required=True)
    p.add_argument("--crlfile")
    p.add_argument("--policy", required=True, help="the device policy document (JSON) to enforce")
    p.add_argument("--service", action="append", help="another identity to treat as a local service")
    p.add_argument("--record", help="append every device packet's decoded header to this JSONL file")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the port (default 1): each holds under half its open-file limit "
                        "in devices; see cloud/local/gateway_workers.py")
    return p


# asyncio's TLS protocol allocates a read buffer of this size for every connection (256 KiB by
# default): 2.6 GB for a 10,000-device fleet. 32 KiB still holds two full TLS records per read.
TLS_READ_BUFFER = 32 * 1024


async def serve(args, index: int = 0, children=()):
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
    gw = Gateway(args, index)
    await gw.start()
    loop = asyncio.get_running_loop()

    def hup():
        gateway_workers.forward(children, signal.SIGHUP)
        loop.create_task(gw.reload())

    loop.add_signal_handler(signal.SIGHUP, hup)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    gateway_workers.forward(children, signal.SIGTERM)
    gw.server.close()
    if gw.siblings is not None:
        gw.siblings.close()


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return exit_codes.BAD_INPUT
    index, children = gateway_workers.fork_workers(args.workers)
    try:
        asyncio.run(serve(args, index, children))
    except (OSError, ValueError, ssl.SSLError) as e:
        print("error: gateway worker %d could not start: %s" % (index, e), file=sys.stderr)
        gateway_workers.forward(children, signal.SIGTERM)
        return exit_codes.SERVICE_ERROR
    finally:
        gateway_workers.reap(children)
    return exit_codes.OK


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
