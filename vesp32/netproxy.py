"""A loopback TCP proxy between a (virtual) device and its broker, with network faults.

Modes:

- ``pass``: forward both ways.
- ``drop``: close every connection now; new connections are accepted and closed at once
  (what the device sees as a reset link or an unreachable port).
- ``blackhole``: accept and read, but forward and answer nothing. Data that arrives is
  held, as TCP holds unacknowledged data, and delivered if the mode returns to ``pass``
  before the connection is given up; a connection opened during a blackhole reaches the
  upstream only then. So a short outage is survivable, a long one is not -- the device's
  own timeouts decide, as on a real link.

One thread, one selector; works with any TCP upstream (MQTT, MQTT over TLS: the proxy
never looks inside the stream).

    with NetProxy(("broker.example", 8883)) as proxy:
        ...  # point the device at ("127.0.0.1", proxy.port)
        proxy.set_mode("blackhole")
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time

MODES = ("pass", "drop", "blackhole")
_HOLD_LIMIT = 4 * 1024 * 1024  # bytes held per direction before a blackholed link is cut


class _Conn:
    __slots__ = ("client", "upstream", "to_up", "to_client", "up_ready", "client_eof", "up_eof", "opened")

    def __init__(self, client):
        self.client = client
        self.upstream = None
        self.to_up = bytearray()
        self.to_client = bytearray()
        self.up_ready = False  # upstream connect finished
        self.client_eof = False
        self.up_eof = False
        self.opened = time.time()


class NetProxy:
    def __init__(self, upstream, listen=("127.0.0.1", 0), mode="pass", connect_timeout=10.0):
        if isinstance(upstream, str):
            host, _, port = upstream.rpartition(":")
            upstream = (host, int(port))
        self.upstream = (upstream[0], int(upstream[1]))
        self._listen_addr = listen
        self._mode = mode
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._applied = None
        self._applied_cond = threading.Condition()
        self._conns: list[_Conn] = []
        self._sel = None
        self._thread = None
        self._running = False
        self._wake_r = self._wake_w = None
        self._listener = None
        self.stats = {"accepted": 0, "refused": 0, "closed": 0, "bytes_up": 0, "bytes_down": 0, "upstream_failed": 0}

    # ------------------------------------------------------------------ public
    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def address(self):
        return self._listener.getsockname()[:2]

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def start(self):
        if self._running:
            return self
        self._listener = socket.create_server(self._listen_addr, reuse_port=False)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="netproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if not self._running:
            return
        self._running = False
        self._wake()
        self._thread.join(5)
        for c in list(self._conns):
            self._close(c)
        for s in (self._listener, self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass
        self._sel.close()

    def set_mode(self, mode: str, wait=1.0):
        """Switch mode; returns once the proxy thread has applied it (drop: links closed)."""
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % (MODES,))
        with self._applied_cond:
            self._mode = mode
            self._wake()
            if self._running and self._thread is not threading.current_thread():
                self._applied_cond.wait_for(lambda: self._applied == mode, wait)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---------------------------------------------------------------- internals
    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _loop(self):
        applied = None
        while self._running:
            mode = self._mode
            if mode != applied:
                applied = mode
                if mode == "drop":
                    for c in list(self._conns):
                        self._close(c)
                with self._applied_cond:
                    self._applied = mode
                    self._applied_cond.notify_all()
            for c in list(self._conns):
                self._update(c, mode)
            for key, events in self._sel.select(timeout=0.5):
                tag = key.data
                if tag == "listen":
                    self._accept(self._mode)
                elif tag == "wake":
                    try:
                        while self._wake_r.recv(512):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    conn, side = tag
                    if conn in self._conns:
                        self._io(conn, side, events, mode)

    def _accept(self, mode):
        while True:
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            if mode == "drop":
                self.stats["refused"] += 1
                client.close()
                continue
            client.setblocking(False)
            conn = _Conn(client)
            with self._lock:
                self._conns.append(conn)
            self.stats["accepted"] += 1
            self._sel.register(client, selectors.EVENT_READ, (conn, "client"))
            if mode == "pass":
                self._connect_upstream(conn)

    def _connect_upstream(self, conn):
        try:
            up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            up.setblocking(False)
            err = up.connect_ex(self._resolve())
        except OSError:
            self.stats["upstream_failed"] += 1
            self._close(conn)
            return
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            up.close()
            self.stats["upstream_failed"] += 1
            self._close(conn)
            return
        conn.upstream = up
        conn.up_ready = err == 0
        self._sel.register(up, selectors.EVENT_READ | selectors.EVENT_WRITE, (conn, "up"))

    def _resolve(self):
        host, port = self.upstream
        return socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]

    def _update(self, conn, mode):
        """Set what each socket waits for, given the mode and what is buffered."""
        if mode == "pass" and conn.upstream is None:
            self._connect_upstream(conn)
            if conn not in self._conns:
                return
        if mode == "pass" and not conn.up_ready and time.time() - conn.opened > self.connect_timeout:
            self.stats["upstream_failed"] += 1
            self._close(conn)
            return
        flowing = mode == "pass"
        ev = selectors.EVENT_READ if not conn.client_eof else 0
        if flowing and conn.to_client:
            ev |= selectors.EVENT_WRITE
        self._modify(conn.client, ev, (conn, "client"))
        if conn.upstream is not None:
            ev = selectors.EVENT_READ if (conn.up_ready and not conn.up_eof) else 0
            if not conn.up_ready or (flowing and conn.to_up):
                ev |= selectors.EVENT_WRITE
            self._modify(conn.upstream, ev, (conn, "up"))
        if flowing and conn.up_ready:
            if conn.client_eof and not conn.to_up:
                self._close(conn)
            elif conn.up_eof and not conn.to_client:
                self._close(conn)
        elif len(conn.to_up) > _HOLD_LIMIT or len(conn.to_client) > _HOLD_LIMIT:
            self._close(conn)

    def _modify(self, sock, ev, data):
        try:
            if ev:
                try:
                    self._sel.modify(sock, ev, data)
                except KeyError:
                    self._sel.register(sock, ev, data)
            else:
                try:
                    self._sel.unregister(sock)
                except KeyError:
                    pass
        except (ValueError, OSError):
            pass

    def _io(self, conn, side, events, mode):
        flowing = mode == "pass"
        try:
            if side == "up" and not conn.up_ready and events & selectors.EVENT_WRITE:
                err = conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.stats["upstream_failed"] += 1
                    self._close(conn)
                    return
                conn.up_ready = True
            sock = conn.client if side == "client" else conn.upstream
            if events & selectors.EVENT_READ:
                data = sock.recv(65536)
                if not data:
                    if side == "client":
                        conn.client_eof = True
                    else:
                        conn.up_eof = True
                elif side == "client":
                    conn.to_up += data
                else:
                    conn.to_client += data
            if flowing and conn.up_ready:
                if conn.to_up:
                    n = conn.upstream.send(conn.to_up)
                    self.stats["bytes_up"] += n
                    del conn.to_up[:n]
                if conn.to_client:
                    n = conn.client.send(conn.to_client)
                    self.stats["bytes_down"] += n
                    del conn.to_client[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(conn)

    def _close(self, conn):
        with self._lock:
            if conn not in self._conns:
                return
            self._conns.remove(conn)
        self.stats["closed"] += 1
        for s in (conn.client, conn.upstream):
            if s is None:
                continue
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.close()
            except OSError:
                pass
