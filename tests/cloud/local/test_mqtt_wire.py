"""The gateway's MQTT framing and parsing (cloud/local/mqtt_wire.py): packets split anywhere or run
together come out whole, malformed ones are refused, and a rewritten CONNECT keeps what the client sent."""

import pytest

from cloud.local import mqtt_wire as w


def publish(topic, payload, qos=1, retain=False, pid=7):
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + (pid.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | qos << 1 | int(retain)]) + w.varint(len(body)) + body


def test_packets_split_at_every_byte_or_run_together_come_out_whole():
    stream = publish("a/b", b"x" * 200) + bytes([0xC0, 0]) + publish("c", b"", qos=0) + publish("d", b"y" * 20000)
    for cut in range(1, len(stream)):
        f = w.Framer(1 << 20)
        got = f.feed(stream[:cut]) + f.feed(stream[cut:])
        assert b"".join(p for _, p, _ in got) == stream, cut
        assert [first >> 4 for first, _, _ in got] == [3, 12, 3, 3]
    f = w.Framer(1 << 20)
    got = [p for b in stream for p in f.feed(bytes([b]))]  # one byte at a time
    assert len(got) == 4 and f.buf == bytearray()


def test_the_framer_refuses_an_over_long_or_malformed_length():
    with pytest.raises(w.WireError, match="over the"):
        w.Framer(100).feed(publish("t", b"z" * 200))
    with pytest.raises(w.WireError, match="longer than 4 bytes"):
        w.Framer(1 << 28).feed(b"\x30\xff\xff\xff\xff\x01")


def test_publish_and_subscribe_fields():
    first, packet, at = w.Framer(1 << 20).feed(publish("devices/m/status", b"{}", qos=1, retain=True, pid=513))[0]
    assert w.parse_publish(first, packet[at:], 4) == ("devices/m/status", 1, True, 513)
    body = b"\x00\x05" + (13).to_bytes(2, "big") + b"devices/m/cmd\x01" + b"\x00\x01#\x00"
    assert w.parse_subscribe(body, 4) == [("devices/m/cmd", 1), ("#", 0)]
    with pytest.raises(w.WireError):
        w.parse_subscribe(b"\x00\x05", 4)  # no filter
    with pytest.raises(w.WireError):
        w.parse_publish(0x30, b"\x00\x09ab", 4)  # the topic runs past the packet
    with pytest.raises(w.WireError, match="UTF-8"):
        w.parse_publish(0x30, b"\x00\x02\xff\xfe", 4)


def test_a_connect_rewritten_with_the_identity_keeps_the_clients_will_and_session():
    cid, wt, wm = b"motor-1", b"devices/motor-1/status", b'{"online":false}'
    body = (b"\x00\x04MQTT\x04" + bytes([0x02 | 0x04 | 0x08 | 0x20 | 0x80 | 0x40]) + b"\x00\x1e"
            + len(cid).to_bytes(2, "big") + cid + len(wt).to_bytes(2, "big") + wt + len(wm).to_bytes(2, "big") + wm
            + b"\x00\x04user" + b"\x00\x06secret")
    c = w.parse_connect(body)
    assert (c.client_id, c.clean, c.keepalive, c.will_topic, c.will_retain, c.will_qos) == (
        "motor-1", True, 30, "devices/motor-1/status", True, 1)
    out = w.connect_as(c, "motor-1")
    first, packet, at = w.Framer(1 << 20).feed(out)[0]
    again = w.parse_connect(packet[at:])
    assert (again.client_id, again.will_topic, again.will_retain, again.will_qos, again.keepalive) == (
        "motor-1", "devices/motor-1/status", True, 1, 30)
    assert b"secret" not in out and packet.endswith(b"\x00\x07motor-1")  # the identity as user, no password
    with pytest.raises(w.WireError):
        w.parse_connect(b"\x00\x04HTTP\x04\x02\x00\x1e\x00\x00")
