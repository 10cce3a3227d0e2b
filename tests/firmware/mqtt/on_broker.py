"""The shipped firmware on the virtual ESP32 against the local broker, as the MQTT tests of this
folder drive it: a device's flash as provisioning writes it (device_dir), boards made and stopped
with the test (boards), and the service side that validates all it receives (Cloud). One copy for
every test module here; each module's `board` fixture only says its defaults."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

from cloud.domain import messages
from cloud.local.broker import LocalBroker
from vesp32.harness import VirtualESP32

ROOT = Path(__file__).resolve().parents[3]
# The shipped telemetry settings (30 samples a message) at a fast sample rate, so a few seconds of
# outage is several full-size messages.
SAMPLE_MS = 100
BATCH = 30


def device_dir(tmp_path: Path, broker: LocalBroker, thing: str, **overrides) -> Path:
    """A device's flash as provisioning writes it: config.json plus DER certificate, key and CA."""
    cfg = {
        "thing": thing,
        "wifi": {"ssid": "lab", "password": "pw"},
        # "localhost": the name in the broker's certificate, so SNI and hostname checks are real.
        "mqtt": {"host": "localhost", "port": 8883, "keepalive_s": 10, "ack_timeout_ms": 2000,
                 "backoff_min_ms": 200, "backoff_max_ms": 1000, "connect_timeout_ms": 3000},
        "telemetry": {"sample_period_ms": SAMPLE_MS},
        "control": {"wdt_timeout_ms": 2000, "remote_start_enabled": True},
    }
    return broker.device_dir(thing, tmp_path / thing, merged(cfg, overrides))


class Cloud:
    """The service side: subscribes to devices/# as the service identity, re-subscribing
    after every reconnect (the broker is restarted in these tests), and validates as it goes."""

    def __init__(self, broker: LocalBroker):
        self.messages: list[tuple[str, dict]] = []
        self.invalid: list[tuple[str, bytes, list]] = []
        self._cv = threading.Condition()
        self._received: dict[int, float] = {}
        self.subscriptions = 0

        def setup(c):
            acked = c.on_subscribe  # service_client's own: it waits for the first SUBACK

            def count(*args):  # every SUBACK, one per connect: restart_broker waits for the next
                acked(*args)
                self._on_subscribe()

            c.on_subscribe = count
            c.reconnect_delay_set(0.1, 0.5)

        self.client = broker.service_client("cloud-%d" % time.monotonic_ns(), topics=[("devices/#", 1)],
                                            on_message=self._on_message, keepalive=10, setup=setup)

    def _on_subscribe(self, *args):
        with self._cv:
            self.subscriptions += 1
            self._cv.notify_all()

    def restart_broker(self, broker: LocalBroker, vm: VirtualESP32):
        """Brings the broker back, and lets the device reach it only once we listen again:
        the broker keeps no sessions across a restart, so what the device replays before
        this observer has re-subscribed would be lost to the test (not to the device)."""
        before = self.subscriptions
        vm.network("drop")
        mark = vm.mark()
        broker.start()
        self.wait(lambda c: c.subscriptions > before, 10, "re-subscription after the restart")
        vm.network("pass")
        vm.wait_for_line("MG NET online", 15, since=mark)

    KINDS = {"telemetry": "telemetry", "events": "event", "status": "status", "ack": "ack"}

    def _on_message(self, client, userdata, msg):
        kind = msg.topic.rsplit("/", 1)[-1]
        if kind == "cmd":
            return  # our own commands, echoed by the devices/# subscription
        try:
            body = json.loads(msg.payload)
            problems = messages.errors(self.KINDS[kind], body) if kind in self.KINDS else ["unexpected topic"]
        except ValueError as e:
            body, problems = None, [str(e)]
        with self._cv:
            if problems:
                self.invalid.append((msg.topic, msg.payload, problems))
            else:
                self.messages.append((kind, body))
                self._received[id(body)] = time.monotonic()
            self._cv.notify_all()

    def received_at(self, body: dict) -> float:
        """When a message (one of of()'s) arrived here, time.monotonic()."""
        return self._received[id(body)]

    def of(self, kind: str) -> list[dict]:
        with self._cv:
            return [b for k, b in self.messages if k == kind]

    def wait(self, pred, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                found = pred(self)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("cloud: no %s within %s s; got %s" % (what, timeout, self.summary()))
                self._cv.wait(min(left, 0.2))

    def event(self, name: str, timeout: float = 5.0, after: int = -1) -> dict:
        return self.wait(lambda c: next((e for e in c.of("events") if e["event"] == name and e["seq"] > after), None),
                         timeout, "%s event" % name)

    def ack(self, cid: str, timeout: float = 5.0) -> dict:
        return self.wait(lambda c: next((a for a in c.of("ack") if a["id"] == cid), None), timeout, "ack %s" % cid)

    def command(self, thing: str, **cmd):
        """A version 2 command as the API sends it: issued now unless the caller says otherwise."""
        cmd.setdefault("v", 2)
        cmd.setdefault("issued_at", int(time.time() * 1000))
        self.raw(thing, json.dumps(cmd).encode())

    def raw(self, thing: str, payload: bytes, retain=False):
        info = self.client.publish("devices/%s/cmd" % thing, payload, qos=1, retain=retain)
        info.wait_for_publish(5)

    def summary(self) -> str:
        with self._cv:
            return "%d valid (%s), %d invalid %s" % (
                len(self.messages), sorted({k for k, _ in self.messages}), len(self.invalid), self.invalid[:2])

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def past_boot(vm: VirtualESP32, tolerance_ms=2000):
    """Waits until a remote start may run: the board refuses any start issued before, or
    within the clock tolerance after, its boot (docs/commands.md)."""
    boot_ns = vm.boots[-1][0]
    time.sleep(max(0.0, boot_ns / 1e9 + tolerance_ms / 1000 + 0.5 - time.time()))


def merged(base: dict, overrides: dict) -> dict:
    """base with overrides: a dict value (a config section) merges into base's, any other replaces."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = dict(out.get(key, {}), **value) if isinstance(value, dict) else value
    return out


@contextlib.contextmanager
def boards(tmp_path: Path, broker: LocalBroker, thing: str, online: bool = False, **defaults):
    """make(thing=thing, **overrides) -> a started VirtualESP32 with this module's config defaults
    and the call's overrides (config sections merged key by key); online: wait for MG NET online
    before returning it. Every board made is stopped when the block ends."""
    made = []

    def make(name: str = thing, **overrides):
        vm = VirtualESP32(device_dir(tmp_path, broker, name, **merged(defaults, overrides)),
                          firmware_dir=ROOT / "firmware", broker="%s:%d" % (broker.host, broker.port))
        made.append(vm)
        vm.start()
        if online:
            vm.wait_for_line("MG NET online", 15)
        return vm

    try:
        yield make
    finally:
        for vm in made:
            vm.stop()
