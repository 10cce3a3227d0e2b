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
This module is what all connections share: the TLS listener, the reloads, the table of live sessions
by client id, the worker processes and the command line. What one connection says and what is done
with each of its packets is cloud/local/gateway_session.py.
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
from pathlib import Path

import contract
from contract import exit_codes
from cloud.local import gateway_workers
from cloud.local.gateway_policy import Policy
from cloud.local.gateway_session import CONNECT_TIMEOUT_S, PIPE_CHUNK, Session, log
from cloud.local.lifecycle import EventPublisher, RelayedEvents

RELOADED = "gateway reloaded its policy and CRL"  # the log line cloud.local.broker waits for


class Gateway:
    def __init__(self, args, index: int = 0):
        self.args = args
        self.index = index  # this worker's number among --workers processes (gateway_workers.py)
        self.siblings = None
        self.policy = Policy(Path(args.policy))
        self.services = set(contract.SERVICE_IDENTITIES) | set(args.service or ())
        self.sessions: dict[str, Session] = {}  # client id -> the live session
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


def _common_name(cert: dict) -> str:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return ""


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
