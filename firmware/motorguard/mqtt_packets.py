# MQTT 3.1.1 packets: the fixed headers and the encoders MotorGuard's client sends with
# while a session runs (the CONNECT and SUBSCRIBE encoders, needed only to start one, are in
# motorguard/mqtt_connect.py).
#
# Plain functions over exact-size bytearrays, apart from the client (motorguard/mqtt.py) so
# each can be read and tested on its own. Incoming packets are decoded by the client's reader
# (motorguard/mqtt_reader.py) as they stream in (it never holds a whole packet it does not want).

# Fixed-header first bytes (type in the high nibble, flags in the low one).
CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82  # flags 0b0010 are mandatory for SUBSCRIBE
SUBACK = 0x90
PINGRESP = 0xD0
PINGREQ_PKT = b"\xc0\x00"
DISCONNECT_PKT = b"\xe0\x00"

_MAX_LENGTH = 268435455  # largest value four remaining-length bytes can hold


class MQTTException(Exception):
    """args[0] is a CONNACK/SUBACK code (int) or a short reason (str)."""


def length_size(n):
    """Bytes the remaining-length varint of n takes (1..4)."""
    if n < 0 or n > _MAX_LENGTH:
        raise ValueError("packet too large")
    if n < 0x80:
        return 1
    if n < 0x4000:
        return 2
    if n < 0x200000:
        return 3
    return 4


def put_length(buf, off, n):
    """Writes n as a remaining-length varint at buf[off]; returns the next offset."""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            b |= 0x80
        buf[off] = b
        off += 1
        if not n:
            return off


def put_field(buf, off, s):
    # A length-prefixed UTF-8 string or binary field.
    n = len(s)
    buf[off] = n >> 8
    buf[off + 1] = n & 0xFF
    off += 2
    buf[off : off + n] = s
    return off + n


def as_bytes(s):
    return s.encode() if isinstance(s, str) else s


def publish_head(topic, msg_len, qos=0, retain=False, dup=False, pid=0):
    """Everything of a PUBLISH before its payload: fixed header, topic, packet id."""
    vh = 2 + len(topic) + (2 if qos else 0)
    rem = vh + msg_len
    buf = bytearray(1 + length_size(rem) + vh)
    buf[0] = PUBLISH | qos << 1 | (1 if retain else 0) | (0x08 if dup else 0)
    off = put_field(buf, put_length(buf, 1, rem), topic)
    if qos:
        buf[off] = pid >> 8
        buf[off + 1] = pid & 0xFF
    return buf


def puback_packet(pid):
    return bytes((PUBACK, 2, pid >> 8, pid & 0xFF))


def payload_size(msg):
    """Payload length of bytes or of a function returning pieces (see publish)."""
    if not callable(msg):
        return len(msg)
    n = 0
    for piece in msg():
        n += len(piece)
    return n


def check_qos(qos):
    if qos != 0 and qos != 1:
        raise ValueError("qos must be 0 or 1")
