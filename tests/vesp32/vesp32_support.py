"""Shared helpers of the Virtual ESP32 tests (the fixtures live in conftest.py)."""

import json
import pathlib
import socket
import threading


HERE = pathlib.Path(__file__).parent
ROOT = HERE.parents[1]
FIXTURE_FW = HERE / "fixture_fw"

BASE_CONFIG = {
    "thing": "fixture-1",
    "wifi": {"ssid": "lab", "password": "pw"},
    "control": {"wdt_timeout_ms": 1000},
}


def write_device(path, config):
    path.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    return path


class EchoServer:
    """A plain TCP echo server on loopback, standing in for a broker."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            t = threading.Thread(target=self._echo, args=(c,), daemon=True)
            t.start()

    def _echo(self, c):
        with c:
            while True:
                try:
                    data = c.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                c.sendall(data)

    def close(self):
        self._stop = True
        self.sock.close()
