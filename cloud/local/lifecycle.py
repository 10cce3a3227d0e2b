"""AWS IoT Core's lifecycle events, as the local IoT Core's gateway publishes them:
$aws/events/presence/connected|disconnected/<clientId>, with AWS's fields (clientId, timestamp,
eventType, sessionIdentifier, principalIdentifier, versionNumber; for a disconnect
clientInitiatedDisconnect and disconnectReason). The gateway publishes them as a client of its own on
the broker's unix socket, at QoS 0, from a queue, so a slow broker never holds up a session."""

from __future__ import annotations

import asyncio
import json
import time

import contract
from cloud.local import mqtt_wire as w


def log(text: str):
    print("%s %s" % (time.strftime("%Y-%m-%dT%H:%M:%S"), text), flush=True)


def event_packet(kind: str, s, reason: str | None = None) -> bytes:
    """The QoS 0 PUBLISH of session s's connected or disconnected event."""
    event = {"clientId": s.connect.client_id, "timestamp": int(time.time() * 1000), "eventType": kind,
             "sessionIdentifier": s.id, "principalIdentifier": s.identity, "versionNumber": 0}
    if kind == "disconnected":
        event["clientInitiatedDisconnect"] = reason == "CLIENT_INITIATED_DISCONNECT"
        event["disconnectReason"] = reason
    return w.publish_qos0(contract.lifecycle_topic(kind, s.connect.client_id), json.dumps(event).encode())


class RelayedEvents:
    """A gateway worker's events when it is not worker 0: handed to worker 0, which publishes them
    (cloud/local/gateway_workers.py says why)."""

    def __init__(self, siblings):
        self.siblings = siblings

    def lifecycle(self, kind: str, s, reason: str | None = None):
        self.siblings.event(event_packet(kind, s, reason))


class EventPublisher:
    """Lifecycle events onto the broker, as the gateway's own client on the unix socket (QoS 0)."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.writer = None
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=100000)
        self.task = asyncio.get_running_loop().create_task(self.run())

    def lifecycle(self, kind: str, s, reason: str | None = None):
        """Queues the event of session s (a gateway Session: its connect, id and identity)."""
        self.publish(event_packet(kind, s, reason))

    def publish(self, packet: bytes):
        try:
            self.queue.put_nowait(packet)
        except asyncio.QueueFull:
            log("lifecycle event queue full: dropped one (%d bytes)" % len(packet))

    async def run(self):
        while True:
            packet = await self.queue.get()
            for _ in range(2):
                try:
                    if self.writer is None or self.writer.is_closing():
                        r, self.writer = await asyncio.open_unix_connection(self.upstream)
                        self.writer.write(w.simple_connect(contract.GATEWAY_IDENTITY, contract.GATEWAY_IDENTITY))
                        asyncio.get_running_loop().create_task(_drain_reader(r))
                    self.writer.write(packet)
                    await self.writer.drain()
                    break
                except (OSError, ConnectionError) as e:
                    self.writer = None
                    log("lifecycle event not published (%s); retrying once" % e)
                    await asyncio.sleep(0.2)


async def _drain_reader(r):
    while await r.read(4096):
        pass


