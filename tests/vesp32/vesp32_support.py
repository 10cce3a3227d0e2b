"""Shared helpers of the Virtual ESP32 tests (the fixtures live in conftest.py)."""

import json
import math
import pathlib
import re
import socket
import threading

from vesp32 import harness


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


# ------------------------------------------------------------------ the ADC as the board reports it
ADC_RE = re.compile(r"MG ADC temp_uv=(\d+) cur_uv=(\d+)")
DEFAULTS = harness.config_module().DEFAULTS


def ntc_uv(celsius, ntc=DEFAULTS["ntc"]):
    """The NTC divider, written out independently of the board code."""
    r = ntc["r0_ohm"] * math.exp(ntc["beta"] * (1 / (celsius + 273.15) - 1 / (ntc["t0_c"] + 273.15)))
    return ntc["supply_uv"] * r / (ntc["fixed_ohm"] + r)


def current_uv(amps, cur=DEFAULTS["current"]):
    return cur["zero_uv"] + cur["uv_per_a"] * amps


def next_adc(vm, since):
    line = vm.wait_for_line(ADC_RE, 3, since=since)
    m = ADC_RE.search(line.text)
    return int(m.group(1)), int(m.group(2))


def settled_adc(vm):
    """An ADC report taken wholly after the last command was applied."""
    if vm.last_command is not None:
        vm.wait_applied()
    since = vm.mark()
    next_adc(vm, since)  # may straddle the change
    return next_adc(vm, vm.mark())
