"""The network path of the virtual ESP32: the proxy between board and broker that drops, delays,
refuses and cuts, and a device reaching the broker through it."""

import socket
import time

import pytest

from vesp32.netproxy import NetProxy

from vesp32_support import BASE_CONFIG


# --------------------------------------------------------------------------- network path


def _roundtrip(port, payload=b"hello\n", timeout=0.5):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.settimeout(timeout)
    try:
        s.sendall(payload)
        return s.recv(100)
    finally:
        s.close()


def _assert_closed_by_peer(s):
    # The far side closed the connection: EOF, or a reset if it had unread data. Closes s.
    s.settimeout(2)
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass
    s.close()


def test_netproxy_modes(echo_server):
    with NetProxy(("127.0.0.1", echo_server.port)) as proxy:
        assert _roundtrip(proxy.port) == b"hello\n"
        # blackhole: accepted and read, nothing comes back ...
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        c.sendall(b"one\n")
        assert c.recv(100) == b"one\n"
        proxy.set_mode("blackhole")
        time.sleep(0.05)
        c.sendall(b"held\n")
        c.settimeout(0.3)
        with pytest.raises(socket.timeout):
            c.recv(100)
        with pytest.raises(socket.timeout):
            _roundtrip(proxy.port, timeout=0.3)
        # ... and what was held is delivered when the path comes back, as TCP would.
        proxy.set_mode("pass")
        c.settimeout(2)
        assert c.recv(100) == b"held\n"
        # drop: existing connections are closed, new ones closed at once.
        proxy.set_mode("drop")
        _assert_closed_by_peer(c)
        _assert_closed_by_peer(socket.create_connection(("127.0.0.1", proxy.port), timeout=2))
        assert proxy.stats["refused"] >= 1
        proxy.set_mode("pass")
        assert _roundtrip(proxy.port) == b"hello\n"
        with pytest.raises(ValueError):
            proxy.set_mode("flaky")


def test_netproxy_unreachable_upstream():
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    with NetProxy(("127.0.0.1", port)) as proxy:
        _assert_closed_by_peer(socket.create_connection(("127.0.0.1", proxy.port), timeout=2))
        deadline = time.time() + 2
        while proxy.stats["upstream_failed"] < 1 and time.time() < deadline:
            time.sleep(0.01)
        assert proxy.stats["upstream_failed"] >= 1


def test_device_reaches_broker_through_proxy_and_faults(make_vm, echo_server):
    cfg = dict(BASE_CONFIG, mqtt={"host": "broker.invalid", "port": 8883, "tls": False})
    vm = make_vm(config=cfg, broker="127.0.0.1:%d" % echo_server.port)
    # The configured host name resolves to the proxy, which forwards to the echo server.
    vm.wait_for_line("MG ECHO ok", 5)
    assert echo_server.accepted >= 1
    assert vm.proxy.stats["accepted"] >= 1
    mark = vm.mark()
    vm.network("drop")
    vm.wait_for_line("MG ECHO fail", 3, since=mark)
    vm.network("pass")
    vm.wait_for_line("MG ECHO ok", 3, since=vm.mark())
    # Wi-Fi down: name resolution fails on the board.
    mark = vm.mark()
    vm.wifi(False)
    line = vm.wait_for_line("MG ECHO fail", 3, since=mark)
    assert "-202" in line.text or "OSError" in line.text
    vm.wifi(True)
    vm.wait_for_line("MG ECHO ok", 3, since=vm.mark())
