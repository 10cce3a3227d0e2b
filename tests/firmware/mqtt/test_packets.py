"""MQTT packet encoding/decoding and client bookkeeping, under CPython and real MicroPython."""

import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motorguard import mqtt_packets as packets

from . import packet_checks
from .packet_checks import decode_length
from .conftest import FIRMWARE, HERE, micropython_exe


@pytest.mark.parametrize("check", packet_checks.CHECKS, ids=lambda f: f.__name__[6:])
def test_cpython(check):
    check()


def test_same_checks_under_micropython():
    r = subprocess.run(
        [micropython_exe(), "-X", "heapsize=110K", str(HERE / "packet_checks.py"), str(FIRMWARE)],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"mp: {len(packet_checks.CHECKS)} passed, 0 failed" in r.stdout, r.stdout + r.stderr


@given(st.integers(min_value=0, max_value=268435455))
def test_remaining_length_roundtrip(n):
    buf = bytearray(4)
    end = packets.put_length(buf, 0, n)
    assert end == packets.length_size(n)
    assert decode_length(bytes(buf[:end])) == (n, end)


@given(st.binary(min_size=1, max_size=300), st.binary(max_size=3000), st.integers(0, 1),
       st.booleans(), st.booleans(), st.integers(1, 65535))
def test_publish_head_frames_the_payload(topic, payload, qos, retain, dup, pid):
    head = bytes(packets.publish_head(topic, len(payload), qos, retain, dup, pid))
    pkt = head + payload
    assert pkt[0] >> 4 == 3
    assert (pkt[0] >> 1) & 3 == qos and bool(pkt[0] & 1) == retain and bool(pkt[0] & 8) == dup
    rem, off = decode_length(pkt, 1)
    assert rem == len(pkt) - off  # the length covers exactly the rest of the packet
    tl = pkt[off] << 8 | pkt[off + 1]
    assert pkt[off + 2: off + 2 + tl] == topic
    rest = pkt[off + 2 + tl:]
    if qos:
        assert rest[:2] == pid.to_bytes(2, "big")
        rest = rest[2:]
    assert rest == payload
