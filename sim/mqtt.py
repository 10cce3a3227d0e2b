"""A small MQTT 3.1.1 client for simulated devices: one TLS socket, QoS 0/1, a Will, retransmission.

Why not paho: paho runs a network thread per client and buffers per client in Python; a simulated
fleet holds thousands of sessions in one process, so each session here is one socket and one reader
(a greenlet under Locust, which monkey-patches sockets and threads; a thread elsewhere). It speaks only
what the MotorGuard firmware speaks (firmware/motorguard/mqtt.py): CONNECT with a retained Will,
SUBSCRIBE at QoS 1, PUBLISH at QoS 0/1 with DUP on a retransmission, PUBACK, PINGREQ, DISCONNECT.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 1, 2, 3, 4, 8, 9, 12, 13, 14
MAX_PACKET = 256 * 1024


class MqttError(Exception):
    """The session is gone or was refused; the device backs off and reconnects."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(text) -> bytes:
    raw = text.encode() if isinstance(text, str) else bytes(text)
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + _varint(len(body)) + body


def connect_packet(client_id: str, keepalive: int, will=None, clean: bool = True) -> bytes:
    """will: (topic, payload bytes, qos, retain) or None."""
    flags = 0x02 if clean else 0
    payload = _s(client_id)
    if will:
        topic, body, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _s(topic) + _s(body)
    return _packet(CONNECT, 0, _s("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload)


def publish_packet(topic: str, payload: bytes, qos: int, retain: bool, pid: int = 0, dup: bool = False) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    return _packet(PUBLISH, flags, _s(topic) + (struct.pack("!H", pid) if qos else b"") + payload)


def subscribe_packet(pid: int, topic: str, qos: int = 1) -> bytes:
    return _packet(SUBSCRIBE, 0x02, struct.pack("!H", pid) + _s(topic) + bytes([qos]))


def puback_packet(pid: int) -> bytes:
    return _packet(PUBACK, 0, struct.pack("!H", pid))


class Client:
    """One session. on_message(topic, payload, retained) runs for each PUBLISH received (a QoS 1 one is
    acknowledged first); on_ack(pid) for each PUBACK; on_close(reason) once when the session ends."""

    def __init__(self, host: str, port: int, context, client_id: str, keepalive: int = 60, will=None,
                 on_message=None, on_ack=None, on_close=None, timeout: float = 10.0):
        self.host, self.port, self.context, self.client_id = host, port, context, client_id
        self.keepalive, self.will, self.timeout = keepalive, will, timeout
        self.on_message, self.on_ack, self.on_close = on_message, on_ack, on_close
        self.sock = None
        self.alive = False
        self._lock = threading.Lock()
        self._next_pid = 0
        self._suback = threading.Event()
        self.last_sent = time.monotonic()
        self.closed_reason = None

    def next_pid(self) -> int:
        self._next_pid = self._next_pid % 65535 + 1
        return self._next_pid

    def connect(self) -> float:
        """TCP, TLS with the device's certificate, CONNECT and CONNACK; returns the seconds it took.
        A broker that closes without a CONNACK (AWS's answer to a client id that is not the
        certificate's thing) raises MqttError."""
        t0 = time.monotonic()
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as e:
            raise MqttError("connect failed: %s" % e) from None
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = self.context.wrap_socket(raw, server_hostname="localhost" if self.host in ("127.0.0.1", "localhost")
                                         else self.host)
            s.sendall(connect_packet(self.client_id, self.keepalive, self.will))
            kind, _flags, body = _read_packet(s)
        except (OSError, MqttError) as e:
            raw.close()
            raise MqttError("connect failed: %s" % (e or type(e).__name__)) from None
        if kind != CONNACK or len(body) < 2 or body[1] != 0:
            s.close()
            raise MqttError("CONNACK refused (%r)" % (body[1:2],))
        s.settimeout(None)
        self.sock, self.alive = s, True
        threading.Thread(target=self._reader, daemon=True).start()
        return time.monotonic() - t0

    def subscribe(self, topic: str, timeout: float = 10.0) -> None:
        self._suback.clear()
        self._send(subscribe_packet(self.next_pid(), topic))
        if not self._suback.wait(timeout):
            raise MqttError("no SUBACK for %s" % topic)
        if not self.alive:
            raise MqttError("session closed while subscribing to %s" % topic)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, pid: int = 0,
                dup: bool = False) -> None:
        self._send(publish_packet(topic, payload, qos, retain, pid, dup))

    def ping(self) -> None:
        self._send(_packet(PINGREQ, 0, b""))

    def disconnect(self) -> None:
        if self.alive:
            try:
                self._send(_packet(DISCONNECT, 0, b""))
            except MqttError:
                pass
        self.close("client disconnect")

    def close(self, reason: str) -> None:
        was = self.alive
        self.alive = False
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self._suback.set()
        if was:
            self.closed_reason = reason
            if self.on_close:
                self.on_close(reason)

    def _send(self, data: bytes) -> None:
        if not self.alive:
            raise MqttError("not connected")
        try:
            with self._lock:
                self.sock.sendall(data)
            self.last_sent = time.monotonic()
        except OSError as e:
            self.close("send failed: %s" % e)
            raise MqttError("send failed") from None

    def _reader(self) -> None:
        sock = self.sock
        try:
            while self.alive:
                kind, flags, body = _read_packet(sock)
                if kind == PUBACK:
                    if self.on_ack:
                        self.on_ack(struct.unpack("!H", body[:2])[0])
                elif kind == PUBLISH:
                    self._incoming(flags, body)
                elif kind == SUBACK:
                    if body[2:3] == b"\x80":
                        self.close("subscription refused")
                    self._suback.set()
        except (OSError, MqttError, ValueError) as e:
            self.close("connection lost: %s" % (e or type(e).__name__))

    def _incoming(self, flags: int, body: bytes) -> None:
        qos = (flags >> 1) & 3
        n = struct.unpack("!H", body[:2])[0]
        topic = body[2:2 + n].decode()
        off = 2 + n
        if qos:
            pid = struct.unpack("!H", body[off:off + 2])[0]
            off += 2
            self._send(puback_packet(pid))
        if self.on_message:
            self.on_message(topic, body[off:], bool(flags & 1))


def _read_exact(sock, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise MqttError("closed by the broker")
        buf += chunk
    return bytes(buf)


def _read_packet(sock) -> tuple[int, int, bytes]:
    first = _read_exact(sock, 1)[0]
    length, shift = 0, 0
    while True:
        b = _read_exact(sock, 1)[0]
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 21:
            raise MqttError("malformed remaining length")
    if length > MAX_PACKET:
        raise MqttError("packet of %d bytes is over the limit" % length)
    return first >> 4, first & 0x0F, _read_exact(sock, length) if length else b""
