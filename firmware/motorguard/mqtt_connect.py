# How MotorGuard's MQTT client (motorguard/mqtt.py) brings a link up: the broker's address,
# TCP, TLS and CONNECT/CONNACK, all within one budget.
#
# Apart from the client because it is needed only while connecting: MQTTClient.connect()
# imports it, and the firmware drops it again once the session is up (net.py), so on the
# board its code is not in the heap while the session publishes and takes commands.

import asyncio
import errno

from motorguard import dnscache
from motorguard import mqtt_packets as pk
from motorguard.mqtt_packets import MQTTException
from motorguard.mqtt_reader import ticks_ms


async def connect(client, clean_session, timeout_ms):
    """TCP + TLS + CONNECT/CONNACK within timeout_ms. Returns session_present."""
    if client._writer is not None:
        client.close()
    client._err = None
    client._closing = False
    try:
        return await asyncio.wait_for(_connect(client, clean_session, timeout_ms), timeout_ms / 1000)
    except asyncio.TimeoutError:
        client._abort(None)
        raise OSError(errno.ETIMEDOUT)
    except Exception as e:
        client._abort(None)
        if isinstance(e, MQTTException):
            raise
        dnscache.failed(client.server)  # a transport failure: count it against the cached address
        if isinstance(e, EOFError):
            # Closed before CONNACK: e.g. TLS 1.3 refuses a client cert only after the handshake.
            raise OSError(errno.ECONNRESET)
        raise


async def _connect(client, clean_session, timeout_ms):
    guard = client.guard
    if guard and not dnscache.cached(client.server):
        guard(True)  # the lookup blocks the VM
        try:
            dnscache.resolve(client.server, client.port)
        finally:
            guard(False)
    ip, port = dnscache.resolve(client.server, client.port)
    if client.ssl:
        r, w = await asyncio.open_connection(ip, port, ssl=client.ssl, server_hostname=client.server_hostname)
    else:
        r, w = await asyncio.open_connection(ip, port)
    client._reader, client._writer = r, w
    client._ping_at = None
    client._connack = None
    client._last_rx = ticks_ms()
    pkt = pk.connect_packet(client.client_id, client.keepalive, clean_session, client.user, client.password,
                            client.will)
    # MicroPython runs the TLS handshake inside this first write's drain (the TCP
    # connect before it waits without blocking), so the guarded step starts here
    # and ends with the CONNACK. It gets the connect budget, not the ack timeout.
    if guard:
        guard(True)
    try:
        await client._send(pkt, None, timeout_ms / 1000)
        if await client._read_packet() != pk.CONNACK:
            raise MQTTException("no CONNACK")
    finally:
        if guard:
            guard(False)
    rc = client._connack[1]
    if rc:
        raise MQTTException(rc)
    client._connected = True
    dnscache.connected(client.server)
    present = bool(client._connack[0] & 1)
    if clean_session:
        client._unacked.clear()
    else:
        # The broker kept our session: 3.1.1 says resend unacked PUBLISHes.
        for pid in list(client._unacked):
            e = client._unacked[pid]
            e[3] = ticks_ms()
            await client._send(pk.publish_head(e[0], pk.payload_size(e[1]), 1, e[2], True, pid), e[1])
    return present
