"""Just enough of MQTT's wire format for the local IoT Core's gateway to read and judge a client's
packets (MQTT 3.1, 3.1.1 and 5): framing, CONNECT, PUBLISH and SUBSCRIBE, and the few packets the
gateway writes itself. The gateway forwards every packet's original bytes, so nothing here has to
encode more than a CONNECT with another user name, a QoS 0 PUBLISH and a PUBACK.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, DISCONNECT = 1, 2, 3, 4, 8, 14
NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
         8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
         14: "DISCONNECT", 15: "AUTH"}
MQTT5 = 5


class WireError(ValueError):
    """The bytes are not a well-formed MQTT packet."""


class Framer:
    """Whole packets out of a byte stream read in chunks, so that a burst costs one read and one
    write, not several awaits per packet."""

    def __init__(self, limit: int):
        self.buf = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> list[tuple[int, bytes, int]]:
        """Appends data; returns the packets now complete, each (first byte, the packet's bytes, where
        its body starts in them). Raises WireError for a malformed or over-long one."""
        buf = self.buf
        buf += data
        out, pos, n = [], 0, len(buf)
        while pos + 1 < n:
            i, length, shift = pos + 1, 0, 0
            while i < n:
                b = buf[i]
                i += 1
                length |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise WireError("remaining length longer than 4 bytes")
            else:
                break  # the length itself is not all here yet
            if length > self.limit:
                raise WireError("packet of %d bytes is over the %d-byte limit" % (length, self.limit))
            end = i + length
            if end > n:
                break
            out.append((buf[pos], bytes(buf[pos:end]), i - pos))
            pos = end
        del buf[:pos]
        return out


async def first_packet(reader, framer: Framer, expect: int) -> list:
    """The packets up to and including the stream's first one, which must start with the byte `expect`
    (WireError before the rest is read otherwise); raises IncompleteReadError if the stream ends first."""
    first = await reader.readexactly(1)
    if first[0] != expect:
        raise WireError("the first packet is %s (0x%02x), not CONNECT" % (NAMES.get(first[0] >> 4, "?"), first[0]))
    packets = framer.feed(first)
    while not packets:
        data = await reader.read(65536)
        if not data:
            raise asyncio.IncompleteReadError(bytes(framer.buf), None)
        packets = framer.feed(data)
    return packets


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(body: bytes, off: int) -> tuple[bytes, int]:
    if off + 2 > len(body):
        raise WireError("truncated length-prefixed field")
    n = int.from_bytes(body[off:off + 2], "big")
    if off + 2 + n > len(body):
        raise WireError("truncated length-prefixed field")
    return body[off + 2:off + 2 + n], off + 2 + n


def _skip_properties(body: bytes, off: int) -> int:
    length, shift = 0, 0
    while True:
        if off >= len(body):
            raise WireError("truncated properties")
        b = body[off]
        off += 1
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            return off + length
        shift += 7
        if shift > 21:
            raise WireError("properties length longer than 4 bytes")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("a string is not UTF-8") from None


@dataclass
class Connect:
    level: int
    clean: bool
    keepalive: int
    client_id: str
    will_topic: str | None
    will_retain: bool
    will_qos: int
    _head: bytes  # protocol name and level
    _props: bytes  # MQTT 5 connect properties (with their length), else b""
    _will: bytes  # the will's fields as sent (MQTT 5 will properties included), else b""


def parse_connect(body: bytes) -> Connect:
    name, off = _field(body, 0)
    if name not in (b"MQTT", b"MQIsdp") or off + 4 > len(body):
        raise WireError("not an MQTT CONNECT")
    level, flags = body[off], body[off + 1]
    keepalive = int.from_bytes(body[off + 2:off + 4], "big")
    head = body[:off + 1]
    off += 4
    props_start = off
    if level == MQTT5:
        off = _skip_properties(body, off)
    props = body[props_start:off]
    cid, off = _field(body, off)
    will_topic, will_start = None, off
    if flags & 0x04:
        if level == MQTT5:
            off = _skip_properties(body, off)
        topic, off = _field(body, off)
        _, off = _field(body, off)
        will_topic = _text(topic)
    return Connect(level, bool(flags & 0x02), keepalive, _text(cid), will_topic, bool(flags & 0x20),
                   (flags >> 3) & 3, head, props, body[will_start:off])


def connect_as(c: Connect, user: str) -> bytes:
    """The CONNECT to forward: the client's own, with `user` as its user name and no password (the
    broker behind the gateway trusts the gateway for who the client is)."""
    flags = 0x80 | (0x02 if c.clean else 0)
    if c.will_topic is not None:
        flags |= 0x04 | c.will_qos << 3 | (0x20 if c.will_retain else 0)
    u = user.encode()
    cid = c.client_id.encode()
    body = (c._head + bytes([flags]) + c.keepalive.to_bytes(2, "big") + c._props + len(cid).to_bytes(2, "big") + cid
            + c._will + len(u).to_bytes(2, "big") + u)
    return bytes([CONNECT << 4]) + varint(len(body)) + body


def parse_publish(first: int, body: bytes, level: int) -> tuple[str, int, bool, int]:
    """(topic, qos, retain, packet id or 0) of a PUBLISH."""
    topic, off = _field(body, 0)
    qos = (first >> 1) & 3
    pid = int.from_bytes(body[off:off + 2], "big") if qos else 0
    if qos and off + 2 > len(body):
        raise WireError("PUBLISH without its packet id")
    return _text(topic), qos, bool(first & 1), pid


def parse_subscribe(body: bytes, level: int) -> list[tuple[str, int]]:
    """[(topic filter, requested QoS)] of a SUBSCRIBE."""
    off = 2
    if level == MQTT5:
        off = _skip_properties(body, off)
    out = []
    while off < len(body):
        f, off = _field(body, off)
        if off >= len(body):
            raise WireError("SUBSCRIBE filter without its options")
        out.append((_text(f), body[off] & 3))
        off += 1
    if not out:
        raise WireError("SUBSCRIBE without a filter")
    return out


def publish_qos0(topic: str, payload: bytes) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + payload
    return bytes([PUBLISH << 4]) + varint(len(body)) + body


def puback(pid: int) -> bytes:
    return bytes([PUBACK << 4, 2]) + pid.to_bytes(2, "big")


def simple_connect(client_id: str, user: str) -> bytes:
    """A clean MQTT 3.1.1 CONNECT with no keepalive, for the gateway's own publisher."""
    cid, u = client_id.encode(), user.encode()
    body = (b"\x00\x04MQTT\x04\x82\x00\x00" + len(cid).to_bytes(2, "big") + cid + len(u).to_bytes(2, "big") + u)
    return bytes([CONNECT << 4]) + varint(len(body)) + body
