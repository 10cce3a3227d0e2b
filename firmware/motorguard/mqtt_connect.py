# How MotorGuard's MQTT client (motorguard/mqtt.py) starts a session: the broker's address,
# TCP, TLS and CONNECT/CONNACK, all within one budget; then SUBSCRIBE/SUBACK. The encoders
# of those two packets are here too.
#
# Apart from the client because it is needed only while a session starts: MQTTClient.connect()
# and subscribe() import it, and the firmware drops it again once the session is up (net.py),
# so on the board its code is not in the heap while the session publishes and takes commands.

import asyncio
import errno

from motorguard import dnscache
from motorguard import mqtt_packets as pk
from motorguard.mqtt_packets import MQTTException
from motorguard.mqtt_reader import ticks_diff, ticks_ms


def connect_packet(client_id, keepalive=0, clean_session=True, user=None, password=None, will=None):
    """CONNECT, protocol level 4. will is (topic, msg, retain, qos) as bytes or None."""
    client_id = pk.as_bytes(client_id)
    flags = 0x02 if clean_session else 0
    rem = 10 + 2 + len(client_id)
    if will:
        flags |= 0x04 | will[3] << 3 | (0x20 if will[2] else 0)
        rem += 4 + len(will[0]) + len(will[1])
    if user is not None:
        user = pk.as_bytes(user)
        flags |= 0x80
        rem += 2 + len(user)
        if password is not None:  # 3.1.1 allows a password only with a user name
            password = pk.as_bytes(password)
            flags |= 0x40
            rem += 2 + len(password)
    buf = bytearray(1 + pk.length_size(rem) + rem)
    buf[0] = pk.CONNECT
    off = pk.put_length(buf, 1, rem)
    off = pk.put_field(buf, off, b"MQTT")
    buf[off] = 4  # protocol level 4 = MQTT 3.1.1
    buf[off + 1] = flags
    buf[off + 2] = keepalive >> 8
    buf[off + 3] = keepalive & 0xFF
    off = pk.put_field(buf, off + 4, client_id)
    if will:
        off = pk.put_field(buf, off, will[0])
        off = pk.put_field(buf, off, will[1])
    if user is not None:
        off = pk.put_field(buf, off, user)
        if password is not None:
            off = pk.put_field(buf, off, password)
    return buf


def subscribe_packet(pid, topic, qos=0):
    rem = 2 + 2 + len(topic) + 1
    buf = bytearray(1 + pk.length_size(rem) + rem)
    buf[0] = pk.SUBSCRIBE
    off = pk.put_length(buf, 1, rem)
    buf[off] = pid >> 8
    buf[off + 1] = pid & 0xFF
    off = pk.put_field(buf, off + 2, topic)
    buf[off] = qos
    return buf


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
        dnscache.failed(client.dns, client.server)  # a transport failure: count it against the cached address
        if isinstance(e, EOFError):
            # Closed before CONNACK: e.g. TLS 1.3 refuses a client cert only after the handshake.
            raise OSError(errno.ECONNRESET)
        raise


async def _connect(client, clean_session, timeout_ms):
    guard = client.guard
    if guard and client.server not in client.dns:
        guard(True)  # the lookup blocks the VM
        try:
            dnscache.resolve(client.dns, client.server, client.port)
        finally:
            guard(False)
    ip, port = dnscache.resolve(client.dns, client.server, client.port)
    if client.ssl:
        r, w = await asyncio.open_connection(ip, port, ssl=client.ssl, server_hostname=client.server_hostname)
    else:
        r, w = await asyncio.open_connection(ip, port)
    client._reader, client._writer = r, w
    client._ping_at = None
    client._connack = None
    client._last_rx = ticks_ms()
    pkt = connect_packet(client.client_id, client.keepalive, clean_session, client.user, client.password,
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
    dnscache.connected(client.dns, client.server)
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


async def subscribe(client, topic, qos):
    """MQTTClient.subscribe(): SUBSCRIBE, then the SUBACK within the ack timeout."""
    pk.check_qos(qos)
    if client._sub_pid:
        raise MQTTException("subscribe in progress")
    pid = client._next_pid()
    client._sub_pid = pid
    client._sub_rc = -1
    try:
        await client._send(subscribe_packet(pid, pk.as_bytes(topic), qos))
        t0 = ticks_ms()
        while client._sub_rc < 0 and client._writer is not None:
            left = client.ack_timeout_ms - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                raise asyncio.TimeoutError
            if client._run_task is not None:
                # run() reads the SUBACK and sets _sub_rc; a poll, not an asyncio.Event,
                # which would load asyncio's event module (~1 KB of heap) for this alone.
                await asyncio.sleep(0.02)
            else:
                await asyncio.wait_for(client._read_packet(), left / 1000)
    except asyncio.TimeoutError:
        client._abort(MQTTException("no SUBACK"))
    finally:
        client._sub_pid = 0
    rc = client._sub_rc
    if rc < 0:
        raise client._err or OSError(errno.ENOTCONN)
    if rc == 0x80:
        raise MQTTException(0x80)
    return rc
