# Packet encode/decode and client bookkeeping checks, with no network and no
# pytest: test_packets.py runs each one under CPython, and runs this file under
# MicroPython (micropython packet_checks.py FIRMWARE_DIR), which prints one
# line per check and "mp: N passed, M failed".
import sys

import asyncio

if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])

from motorguard import dnscache  # noqa: E402
from motorguard import mqtt_connect  # noqa: E402
from motorguard import mqtt_packets as packets  # noqa: E402
from motorguard.mqtt import MQTTClient, MQTTException  # noqa: E402


def decode_length(data, off=0):
    """Reads a remaining-length varint from data[off:]: (value, next offset). The checks' own
    decoder, to read back what the encoder wrote (the client decodes from the stream)."""
    n = 0
    shift = 0
    while True:
        if shift > 21:
            raise MQTTException("bad length")
        b = data[off]
        off += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, off
        shift += 7


def expect_raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError("%s not raised" % exc.__name__)


def enc_len(n):
    buf = bytearray(4)
    end = packets.put_length(buf, 0, n)
    return bytes(buf[:end])


class FakeReader:
    """Serves bytes like asyncio's StreamReader.readexactly."""

    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    async def readexactly(self, n):
        if self.pos + n > len(self.data):
            raise EOFError
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b


class FakeWriter:
    def __init__(self):
        self.out = bytearray()

    def write(self, b):
        self.out += b

    async def drain(self):
        pass

    def close(self):
        pass


def wired(data, **kw):
    """A client 'connected' to fake streams carrying data."""
    c = MQTTClient("dev", "localhost", **kw)
    c._reader = FakeReader(data)
    c._writer = FakeWriter()
    c._connected = True
    return c


def check_length_known_values():
    # Examples from the MQTT 3.1.1 spec, section 2.2.3.
    assert enc_len(0) == b"\x00"
    assert enc_len(64) == b"\x40"
    assert enc_len(127) == b"\x7f"
    assert enc_len(128) == b"\x80\x01"
    assert enc_len(321) == b"\xc1\x02"
    assert enc_len(16383) == b"\xff\x7f"
    assert enc_len(16384) == b"\x80\x80\x01"
    assert enc_len(2097151) == b"\xff\xff\x7f"
    assert enc_len(2097152) == b"\x80\x80\x80\x01"
    assert enc_len(268435455) == b"\xff\xff\xff\x7f"


def check_length_roundtrip_and_size():
    for n in (0, 1, 127, 128, 300, 16383, 16384, 65535, 2097151, 2097152, 100000000, 268435455):
        b = enc_len(n)
        assert len(b) == packets.length_size(n), n
        assert decode_length(b) == (n, len(b)), n
        # Decoding from an offset inside a larger buffer.
        assert decode_length(b"\x30" + b + b"tail", 1) == (n, 1 + len(b))


def check_length_limits():
    expect_raises(ValueError, packets.length_size, 268435456)
    expect_raises(ValueError, packets.length_size, -1)
    expect_raises(MQTTException, decode_length, b"\xff\xff\xff\xff\x01")


def check_connect_packet_plain():
    p = mqtt_connect.connect_packet("dev-1", keepalive=60, clean_session=True)
    assert bytes(p) == b"\x10\x11\x00\x04MQTT\x04\x02\x00\x3c\x00\x05dev-1", bytes(p)
    p = mqtt_connect.connect_packet(b"d", keepalive=0, clean_session=False)
    assert bytes(p) == b"\x10\x0d\x00\x04MQTT\x04\x00\x00\x00\x00\x01d", bytes(p)


def check_connect_packet_will_and_user():
    p = mqtt_connect.connect_packet("d", 1200, True, user="u", password="pw", will=(b"w/t", b"bye", True, 1))
    body = b"\x00\x04MQTT\x04\xee\x04\xb0" + b"\x00\x01d" + b"\x00\x03w/t\x00\x03bye" + b"\x00\x01u" + b"\x00\x02pw"
    assert bytes(p) == b"\x10" + enc_len(len(body)) + body, bytes(p)
    # A password without a user name is not allowed by 3.1.1: it is left out.
    p = mqtt_connect.connect_packet("d", 0, True, password="pw")
    assert p[9] == 0x02 and not bytes(p).endswith(b"pw")


def check_publish_head():
    h = packets.publish_head(b"a/b", 5, qos=1, retain=True, dup=True, pid=10)
    assert bytes(h) == b"\x3b\x0c\x00\x03a/b\x00\x0a", bytes(h)
    h = packets.publish_head(b"a/b", 5)
    assert bytes(h) == b"\x30\x0a\x00\x03a/b", bytes(h)
    # 200-byte payload: two length bytes, and no packet id at QoS 0.
    h = packets.publish_head(b"t", 200)
    assert bytes(h) == b"\x30" + enc_len(203) + b"\x00\x01t", bytes(h)
    h = packets.publish_head(b"t", 0, qos=1, pid=0xABCD)
    assert bytes(h) == b"\x32\x05\x00\x01t\xab\xcd", bytes(h)


def check_subscribe_and_puback_packets():
    assert bytes(mqtt_connect.subscribe_packet(1, b"a/b", 1)) == b"\x82\x08\x00\x01\x00\x03a/b\x01"
    assert packets.puback_packet(0x1234) == b"\x40\x02\x12\x34"
    assert packets.PINGREQ_PKT == b"\xc0\x00" and packets.DISCONNECT_PKT == b"\xe0\x00"


def check_qos2_and_bad_topics_rejected():
    c = MQTTClient("d", "localhost")
    expect_raises(ValueError, c.set_last_will, "t", "m", False, 2)
    for coro_fn, args in ((c.publish, ("t", "m", False, 2)), (c.subscribe, ("t", 2)), (c.publish, ("a/#", "m"))):
        try:
            asyncio.run(coro_fn(*args))
        except ValueError:
            continue
        raise AssertionError("ValueError not raised for %r" % (args,))


def check_ports_and_hostname_defaults():
    assert MQTTClient("d", "h").port == 1883
    assert MQTTClient("d", "h", ssl=object()).port == 8883
    assert MQTTClient("d", "h", 1234, ssl=object()).port == 1234
    assert MQTTClient("d", "h").server_hostname == "h"
    assert MQTTClient("d", "10.0.0.1", server_hostname="x.iot").server_hostname == "x.iot"


def check_packet_ids_wrap_and_skip_in_use():
    c = MQTTClient("d", "h")
    c._pid = 65533
    c._unacked[65535] = None
    c._unacked[1] = None
    assert c._next_pid() == 65534
    assert c._next_pid() == 2  # 65535 and 1 are still waiting for their PUBACK
    c._unacked = {}
    c._pid = 65535
    assert c._next_pid() == 1


def check_publish_qos1_tracks_inflight():
    c = wired(b"\x40\x02\x00\x01" + b"\x40\x02\x00\x01")  # the same PUBACK twice
    acks = []
    c.set_puback_callback(acks.append)

    async def go():
        pid = await c.publish("devices/d/t", b"hello", qos=1)
        assert pid == 1 and c.inflight() == 1
        assert await c._read_packet() == packets.PUBACK
        assert await c._read_packet() == packets.PUBACK

    asyncio.run(go())
    assert acks == [1], acks  # a duplicate PUBACK is not reported twice
    assert c.inflight() == 0
    assert bytes(c._writer.out) == b"\x32\x14\x00\x0bdevices/d/t\x00\x01hello"


def check_incoming_publish_qos1_is_acked():
    pkt = b"\x32\x0c\x00\x05a/cmd\x00\x07{}\x00"  # topic a/cmd, pid 7, payload '{}\0'
    c = wired(pkt + b"\x30\x06\x00\x01bxyz")
    got = []
    c.set_callback(lambda t, m, retained: got.append((t, m)))

    async def go():
        await c._read_packet()
        await c._read_packet()

    asyncio.run(go())
    assert got == [(b"a/cmd", b"{}\x00"), (b"b", b"xyz")], got
    assert bytes(c._writer.out) == b"\x40\x02\x00\x07"


def check_oversized_publish_skipped_but_acked():
    payload = b"x" * 600
    big = b"\x32" + enc_len(2 + 1 + 2 + 600) + b"\x00\x01t\x00\x09" + payload
    c = wired(big + b"\x30\x04\x00\x01tk")
    c.max_packet = 100
    got = []
    c.set_callback(lambda t, m, retained: got.append((t, m, retained)))

    async def go():
        await c._read_packet()
        await c._read_packet()

    asyncio.run(go())
    # The big one reaches the callback only as "too big" (no bytes held); the stream stayed in sync.
    assert got == [(None, None, False), (b"t", b"k", False)], got
    assert bytes(c._writer.out) == b"\x40\x02\x00\x09"


def check_suback_and_pingresp():
    c = wired(b"\x90\x03\x00\x01\x01" + b"\xd0\x00")

    async def go():
        return await c.subscribe("a/cmd", 1)

    assert asyncio.run(go()) == 1
    assert bytes(c._writer.out) == b"\x82\x0a\x00\x01\x00\x05a/cmd\x01"
    c._ping_at = 5
    asyncio.run(c._read_packet())
    assert c._ping_at is None


def check_suback_refused():
    c = wired(b"\x90\x03\x00\x01\x80")
    try:
        asyncio.run(c.subscribe("other/cmd", 1))
    except MQTTException as e:
        assert e.args[0] == 0x80
    else:
        raise AssertionError("refused SUBACK accepted")
    assert c.isconnected()  # a refused subscription does not end the session


def check_unexpected_packets_are_errors():
    for data in (b"\x60\x02\x00\x01", b"\xb0\x02\x00\x01", b"\x34\x05\x00\x01t\x00\x01"):
        c = wired(data)
        try:
            asyncio.run(c._read_packet())
        except MQTTException:
            continue
        raise AssertionError("accepted %r" % data)


def check_close_when_not_connected_is_harmless():
    c = MQTTClient("d", "h")
    c.close()
    assert not c.isconnected() and c.inflight() == 0
    try:
        asyncio.run(c.publish("t", "m"))
    except OSError:
        pass
    else:
        raise AssertionError("publish without a connection did not raise")


def check_dns_resolved_once_and_forgotten_after_failures():
    real = dnscache.socket
    calls = []

    class CountingSocket:
        AF_INET = real.AF_INET
        SOCK_STREAM = real.SOCK_STREAM

        def __getattr__(self, name):  # sockaddr, inet_ntop on the unix port
            return getattr(real, name)

        def getaddrinfo(self, *a):
            calls.append(a[0])
            return real.getaddrinfo(*a)

    dnscache.socket = CountingSocket()
    try:
        c = MQTTClient("d", "localhost", 1)  # nothing listens on port 1: refused at once
        for attempt in range(4):
            try:
                asyncio.run(c.connect(timeout_ms=2000))
            except OSError:
                pass
            if attempt == 0:
                assert c.dns == {"localhost": ["127.0.0.1", 1, 1]}, c.dns  # one failure counted
        # Looked up on the 1st attempt, cached for the 2nd and 3rd, forgotten after the
        # 3rd failure, looked up again on the 4th.
        assert calls == ["localhost", "localhost"], calls
    finally:
        dnscache.socket = real


CHECKS = [v for k, v in sorted(globals().items()) if k.startswith("check_")]

if __name__ == "__main__":
    passed = failed = 0
    for fn in CHECKS:
        try:
            fn()
            passed += 1
            print("PASS", fn.__name__)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("FAIL", fn.__name__, repr(e))
    print("mp: %d passed, %d failed" % (passed, failed))


def check_retained_flag_reaches_the_callback():
    c = wired(b"\x31\x04\x00\x01tk" + b"\x30\x04\x00\x01tk")
    got = []
    c.set_callback(lambda t, m, retained: got.append(retained))

    async def go():
        await c._read_packet()
        await c._read_packet()

    asyncio.run(go())
    assert got == [True, False], got


def check_payload_in_pieces_is_counted_and_sent_whole():
    c = wired(b"")
    pieces = (b"ab", b"", b"cde")

    async def go():
        return await c.publish("t/x", lambda: iter(pieces), qos=1)

    pid = asyncio.run(go())
    out = bytes(c._writer.out)
    assert out == bytes(packets.publish_head(b"t/x", 5, 1, False, False, pid)) + b"abcde", out
