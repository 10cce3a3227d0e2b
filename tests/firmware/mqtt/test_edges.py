"""Edge cases a real broker will not produce on demand, against a scripted fake broker.

The fake is a plain TCP server in this process that speaks just enough MQTT:
it is the mock at the true edge (a broker that never PUBACKs, never answers a
PINGREQ, refuses a subscription, accepts TCP and then says nothing...). The
client under test is the unchanged firmware module, run by device_script.py
under MicroPython and under CPython.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from provisioning import pki

from .conftest import RUNTIMES

CONNACK_OK = b"\x20\x02\x00\x00"


class FakeBroker:
    """Accepts connections; handler(fake, conn) runs in a thread per connection."""

    def __init__(self, handler, rcvbuf=None):
        self.handler = handler
        self.received: list[tuple[float, int, bytes]] = []  # (time, first byte, body)
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.sock = socket.socket()
        if rcvbuf:  # a small receive window (set before listen, so accepted links inherit it)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(0.1)
            self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn):
        try:
            self.handler(self, conn)
        except (OSError, EOFError):
            pass

    def _read_exact(self, conn, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            if self.stop.is_set():
                raise EOFError
            try:
                chunk = conn.recv(n - len(buf))
            except socket.timeout:
                continue
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def read_packet(self, conn) -> tuple[int, bytes]:
        first = self._read_exact(conn, 1)[0]
        n = shift = 0
        while True:
            b = self._read_exact(conn, 1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        body = self._read_exact(conn, n) if n else b""
        self.received.append((time.monotonic(), first, body))
        return first, body

    def of_type(self, kind: int) -> list[tuple[float, int, bytes]]:
        return [p for p in self.received if p[1] & 0xF0 == kind]

    def close(self):
        self.stop.set()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()
        for t in self._threads:
            t.join(2)


def session(on_packet=None, connack=CONNACK_OK, after_connack=None):
    """A handler: CONNECT -> connack, then on_packet(fake, conn, first, body) for each packet."""

    def handler(fake, conn):
        first, _ = fake.read_packet(conn)
        assert first == 0x10
        conn.sendall(connack)
        if after_connack:
            after_connack(fake, conn)
        while not fake.stop.is_set():
            first, body = fake.read_packet(conn)
            if on_packet:
                on_packet(fake, conn, first, body)

    return handler


def silent(fake, conn):
    # Accepts the TCP connection, then never says a word (nor closes).
    fake.stop.wait(30)


@pytest.fixture
def fake_broker():
    made = []

    def make(handler, **kw):
        f = FakeBroker(handler, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


@pytest.fixture(scope="module")
def edge_tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("edge-pki")
    ca, ca_key = pki.make_ca("Edge CA", d)
    return {k: str(v) for k, v in pki.issue_client(ca, ca_key, "edge", d / "dev").items()}


def cfg(port, steps, **kw):
    c = {"client_id": "edge", "host": "127.0.0.1", "port": port, "tls": None, "steps": steps}
    c.update(kw)
    return c


def incoming_burst(n):
    """n QoS 1 PUBLISHes to the device's command topic, packet ids and payloads 1..n, as one write."""
    pkts = b""
    for i in range(1, n + 1):
        topic, msg = b"devices/edge/cmd", b'{"i": %d}' % i
        pkts += bytes([0x32, 2 + len(topic) + 2 + len(msg), 0, len(topic)]) + topic + i.to_bytes(2, "big") + msg
    return pkts


def publishes(fake):
    """(time, pid, dup) of every QoS 1 PUBLISH the fake received."""
    out = []
    for t, first, body in fake.of_type(0x30):
        tl = body[0] << 8 | body[1]
        out.append((t, body[2 + tl] << 8 | body[3 + tl], bool(first & 0x08)))
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_unacked_publish_is_retransmitted_with_dup_then_link_declared_dead(runtime, fake_broker, run_device):
    fake = fake_broker(session())  # never PUBACKs
    d = run_device(runtime, cfg(fake.port, [["connect"], ["start_run"], ["pub", "devices/edge/t", "m", 1],
                                            ["wait_run", 5000]], ack_timeout_ms=250, max_retries=2))
    end = d.expect("run_end", 10)
    d.finish()
    assert end["exc"] == {"type": "MQTTException", "args": ["no PUBACK"]}
    # Sent once, retransmitted max_retries times, then declared dead one ack timeout later.
    assert 700 <= end["ms"] < 2500, end
    pubs = publishes(fake)
    assert [p[2] for p in pubs] == [False, True, True], pubs
    assert len({p[1] for p in pubs}) == 1  # same packet id every time
    gaps = [b[0] - a[0] for a, b in zip(pubs, pubs[1:])]
    assert all(g >= 0.2 for g in gaps), gaps
    assert not d.of("puback")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ack_of_the_retransmission_ends_retries(runtime, fake_broker, run_device):
    def on_packet(fake, conn, first, body):
        if first & 0xF0 == 0x30 and first & 0x08:  # acknowledge only the DUP copy
            tl = body[0] << 8 | body[1]
            conn.sendall(b"\x40\x02" + body[2 + tl: 4 + tl])

    fake = fake_broker(session(on_packet))
    d = run_device(runtime, cfg(fake.port, [["connect"], ["start_run"], ["pub", "devices/edge/t", "m", 1],
                                            ["wait_acks", 3000], ["sleep", 700], ["stats"], ["disconnect"],
                                            ["wait_run", 2000]], ack_timeout_ms=200, max_retries=3))
    d.finish()
    assert [e["pid"] for e in d.of("puback")] == [d.of("pub")[0]["pid"]]
    assert d.of("stats")[0]["inflight"] == 0 and d.of("stats")[0]["connected"]
    assert [p[2] for p in publishes(fake)] == [False, True]
    assert d.of("run_end")[0]["exc"] is None  # disconnect() ends run() without an error
    assert fake.of_type(0xE0), "no DISCONNECT sent"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_refused_subscription_raises_and_session_continues(runtime, fake_broker, run_device):
    def on_packet(fake, conn, first, body):
        if first == 0x82:
            conn.sendall(b"\x90\x03" + body[:2] + b"\x80")

    fake = fake_broker(session(on_packet))
    d = run_device(runtime, cfg(fake.port, [["connect"], ["?sub", "devices/other/cmd", 1],
                                            ["pub", "devices/edge/t", "after", 0], ["disconnect"]]))
    d.finish()
    err = d.of("error")[0]
    assert err["step"] == "sub" and err["type"] == "MQTTException" and err["args"] == [0x80]
    assert d.of("pub") and d.of("disconnected")
    assert [p[2].endswith(b"after") for p in fake.of_type(0x30)] == [True]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_subscribe_while_the_reader_runs_gets_a_late_suback(runtime, fake_broker, run_device):
    # With run() reading, subscribe() waits for the reader to hand it the SUBACK (it polls the
    # granted code): a SUBACK that comes late, behind a PUBLISH, still ends the wait with its code.
    def on_packet(fake, conn, first, body):
        if first == 0x82:
            time.sleep(0.4)
            conn.sendall(b"\x30\x05\x00\x01xhi")  # QoS 0 PUBLISH on "x" first
            conn.sendall(b"\x90\x03" + body[:2] + b"\x01")

    fake = fake_broker(session(on_packet))
    d = run_device(runtime, cfg(fake.port, [["connect"], ["start_run"], ["sub", "devices/edge/cmd", 1],
                                            ["stats"], ["disconnect"], ["wait_run", 2000]]))
    d.finish()
    suback = d.of("suback")[0]
    assert suback["rc"] == 1 and suback["t"] >= 350, suback
    assert d.of("stats")[0]["connected"]
    assert d.of("run_end")[0]["exc"] is None


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_link_lost_during_subscribe_ends_the_wait_at_once(runtime, fake_broker, run_device):
    # The broker closes the link instead of answering the SUBSCRIBE: the waiting subscribe() sees
    # the link gone and raises within a poll or two, not after the 5 s ack timeout.
    def on_packet(fake, conn, first, body):
        if first == 0x82:
            time.sleep(0.3)
            conn.close()

    fake = fake_broker(session(on_packet))
    d = run_device(runtime, cfg(fake.port, [["connect"], ["start_run"], ["ready", "subscribing"],
                                            ["sub", "devices/edge/cmd", 1]], ack_timeout_ms=5000))
    d.finish()
    started = d.of("ready")[0]["t"]
    err = d.of("error")[0]
    assert err["step"] == "sub" and err["type"] in ("OSError", "ConnectionResetError"), err
    assert 250 <= err["t"] - started < 2000, (started, err)
    assert not d.of("suback")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_refused_connack_code(runtime, fake_broker, run_device):
    fake = fake_broker(session(connack=b"\x20\x02\x00\x05"))  # 5: not authorized
    d = run_device(runtime, cfg(fake.port, [["connect"]]))
    d.finish()
    err = d.of("error")[0]
    assert (err["step"], err["type"], err["args"]) == ("connect", "MQTTException", [5])
    assert d.of("done")[0]["connected"] is False


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_connect_times_out_against_a_silent_listener(runtime, tls, fake_broker, run_device, edge_tls):
    fake = fake_broker(silent)
    d = run_device(runtime, cfg(fake.port, [["connect", True, 600]], tls=edge_tls if tls else None))
    d.finish()
    err = d.of("error")[0]
    assert err["step"] == "connect"
    assert err["type"] in ("OSError", "TimeoutError") and err["args"][0] == 110, err  # ETIMEDOUT
    assert 500 <= err["t"] < 3000, err


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_no_pingresp_means_a_dead_link(runtime, fake_broker, run_device):
    fake = fake_broker(session())  # reads PINGREQ, never answers
    d = run_device(runtime, cfg(fake.port, [["connect"], ["start_run"], ["wait_run", 5000]],
                                keepalive=1, ack_timeout_ms=300))
    end = d.expect("run_end", 10)
    d.finish()
    assert end["exc"] == {"type": "MQTTException", "args": ["no PINGRESP"]}
    # First PINGREQ after keepalive/2 = 0.5 s of silence, dead ack_timeout later.
    assert 700 <= end["ms"] < 2500, end
    assert len(fake.of_type(0xC0)) == 1


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_busy_qos0_sender_still_notices_a_silent_broker(runtime, fake_broker, run_device):
    # Outgoing traffic alone never makes the client idle; a keepalive with
    # nothing received triggers the PINGREQ, whose missing answer ends the link.
    fake = fake_broker(session())
    d = run_device(runtime, cfg(fake.port, [["connect"], ["start_run"], ["?pub_loop", "devices/edge/t", 40, 50],
                                            ["wait_run", 3000]], keepalive=1, ack_timeout_ms=300))
    end = d.expect("run_end", 10)
    d.finish()
    assert end["exc"] == {"type": "MQTTException", "args": ["no PINGRESP"]}
    assert 1000 <= end["ms"] < 2500, end
    assert len(fake.of_type(0xC0)) == 1
    # the sender may see the dead link before or after run() reports it; either way it is told why
    assert all(e["args"] == ["no PINGRESP"] for e in d.of("error")), d.events


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_keepalive_pings_when_idle(runtime, fake_broker, run_device):
    def on_packet(fake, conn, first, body):
        if first == 0xC0:
            conn.sendall(b"\xd0\x00")

    fake = fake_broker(session(on_packet))
    d = run_device(runtime, cfg(fake.port, [["connect"], ["start_run"], ["sleep", 1700], ["stats"], ["disconnect"]],
                                keepalive=1, ack_timeout_ms=400))
    d.finish()
    stats = d.of("stats")[0]
    assert stats["connected"] and 2 <= stats["pings"] <= 4, stats
    pings = [p[0] for p in fake.of_type(0xC0)]
    assert all(b - a < 1.0 for a, b in zip(pings, pings[1:])), pings  # well inside 1.5 x keepalive


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_broker_closing_the_link_ends_run_with_oserror(runtime, fake_broker, run_device):
    def hang_up(fake, conn):
        time.sleep(0.3)
        conn.shutdown(socket.SHUT_RDWR)

    fake = fake_broker(session(after_connack=hang_up))
    d = run_device(runtime, cfg(fake.port, [["connect"], ["start_run"], ["wait_run", 3000]]))
    end = d.expect("run_end", 10)
    d.finish()
    assert end["exc"]["type"] in ("OSError", "ConnectionResetError") and end["exc"]["args"][0] == 104, end
    assert end["ms"] < 1500


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_close_stops_a_blocked_reader_at_once(runtime, fake_broker, run_device):
    fake = fake_broker(session())
    d = run_device(runtime, cfg(fake.port, [["connect"], ["start_run"], ["sleep", 200], ["close"],
                                            ["wait_run", 2000], ["stats"]]))
    d.finish()
    end = d.of("run_end")[0]
    assert end["exc"] is None and end["ms"] < 700, end
    assert d.of("stats")[0]["connected"] is False
    assert not fake.of_type(0xE0)  # close() sends no DISCONNECT (so a broker fires the will)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_incoming_qos1_burst_delivered_in_order_and_acked(runtime, fake_broker, run_device):
    n = 60

    def burst(fake, conn):
        conn.sendall(incoming_burst(n))

    fake = fake_broker(session(after_connack=burst))
    d = run_device(runtime, cfg(fake.port, [["connect"], ["start_run"], ["wait_rx", n, 5000], ["sleep", 300],
                                            ["disconnect"]]))
    d.finish()
    msgs = [e["msg"] for e in d.of("rx")]
    assert msgs == ['{"i": %d}' % i for i in range(1, n + 1)]
    acks = [int.from_bytes(body, "big") for _, _, body in fake.of_type(0x40)]
    assert acks == list(range(1, n + 1))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_packets_of_two_senders_never_mix_on_the_wire(runtime, fake_broker, run_device):
    # The reader's PUBACKs for an incoming burst and a burst of 4 KB publishes share one socket,
    # and a slow broker with a small window takes the publishes in pieces, so a sender yields in
    # the middle of a packet. Each packet must still reach the broker whole and none may be lost
    # (MicroPython's stream drops what is written into it while another task drains it).
    n, big = 60, 4000

    def burst(fake, conn):
        conn.sendall(incoming_burst(n))

    def slowly(fake, conn, first, body):
        time.sleep(0.002)

    fake = fake_broker(session(slowly, after_connack=burst), rcvbuf=4096)
    d = run_device(runtime, cfg(fake.port, [["connect"], ["sndbuf", 4096], ["start_run"],
                                            ["pub_many", "devices/edge/t", 40, 0, big], ["wait_rx", n, 5000],
                                            ["sleep", 300], ["disconnect"]]))
    d.finish(30)
    deadline = time.monotonic() + 5
    while len(fake.of_type(0x30)) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(d.of("rx")) == n, [e for e in d.events if e["ev"] != "rx"]
    acks = [int.from_bytes(body, "big") for _, _, body in fake.of_type(0x40)]
    assert acks == list(range(1, n + 1))
    payloads = [body[2 + (body[0] << 8 | body[1]):] for _, _, body in fake.of_type(0x30)]
    assert payloads == [b"%d:" % i + b"x" * big for i in range(40)]
