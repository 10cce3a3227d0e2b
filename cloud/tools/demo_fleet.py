"""The demo's devices: virtual ESP32s with a script each, and what they did.

Each device runs the shipped firmware on a VirtualESP32 and follows a small
scenario (a list of (seconds after start, action)); the demo's overload device
trips a FAULT, the flaky one loses its network for a minute.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from contract import console
from vesp32.harness import VirtualESP32

ROOT = Path(__file__).resolve().parents[2]


def _press_start(vm):
    vm.press("start")


def _overload(vm):
    vm.set_load(3.6)  # ~2.3 A: with the motor heating, combined limit -> FAULT


def _clear_overload_and_reset(vm):
    vm.set_load(1.0)
    vm.force_temperature(25.0)
    vm.force_current(0.3)
    time.sleep(0.3)
    vm.press("stop")  # the reset needs a person at the machine: the stop button
    time.sleep(0.3)
    vm.force_temperature(None)
    vm.force_current(None)


def _network_down(vm):
    vm.network("blackhole")


def _network_up(vm):
    vm.network("pass")


def _stop(vm):
    vm.press("stop")


ACTIONS = {
    "start": _press_start,
    "overload": _overload,
    "clear_and_reset": _clear_overload_and_reset,
    "network_down": _network_down,
    "network_up": _network_up,
    "stop": _stop,
}

# The three demo devices: a steady one, one that overloads, one that loses its network.
SCENARIOS = {
    "steady": [(3, "start")],
    "overload": [(3, "start"), (15, "overload"), (40, "clear_and_reset"), (45, "start")],
    # Runs, loses its network for a minute, keeps running (and buffering); it reconnects once the
    # operator stops the motor (the firmware never does a TLS handshake with the motor running).
    "flaky-network": [(3, "start"), (10, "network_down"), (70, "network_up"), (80, "stop"), (90, "start")],
}


@dataclass
class DemoDevice:
    thing: str
    scenario: str
    device_dir: Path
    vm: VirtualESP32 | None = None
    done: list = field(default_factory=list)  # (t, action) already run
    error: str | None = None

    def start(self, broker_addr: str, time_scale: float = 20.0):
        # time_scale speeds up the thermal model only, so an overload heats the motor in seconds.
        self.vm = VirtualESP32(self.device_dir, firmware_dir=ROOT / "firmware", broker=broker_addr,
                               time_scale=time_scale)
        self.vm.start()
        self._t0 = time.monotonic()

    def step(self):
        """Runs the scenario actions that are due; call it now and then."""
        if self.vm is None:
            return
        elapsed = time.monotonic() - self._t0
        for at, action in SCENARIOS[self.scenario]:
            if at <= elapsed and (at, action) not in self.done:
                self.done.append((at, action))
                try:
                    ACTIONS[action](self.vm)
                except (TimeoutError, RuntimeError, OSError) as e:
                    self.error = "%s: %s" % (action, e)

    def network_mode(self) -> str:
        return self.vm.proxy.mode if self.vm and self.vm.proxy else "-"

    def online(self) -> bool:
        """From the console: the last NET online/offline line."""
        if not self.vm:
            return False
        for line in reversed(self.vm.lines):
            if line.text.startswith(console.ONLINE):
                return True
            if line.text.startswith(console.OFFLINE):
                return False
        return False

    def stop(self):
        if self.vm:
            self.vm.stop()


def register_thing(thing: str, remote_start: bool) -> None:
    """The thing in the (moto) IoT registry with its remote_start attribute, which the API reads to
    tell the dashboard whether to offer Start. `provision device --backend aws` creates the thing
    in AWS; the local backend keeps its own registry, so the demo and the dashboard's tests put it
    in moto's."""
    import boto3

    boto3.client("iot").create_thing(thingName=thing, attributePayload={
        "attributes": {"remote_start": "true" if remote_start else "false"}})


class FleetRunner:
    """Steps every device's scenario in a background thread."""

    def __init__(self, devices):
        self.devices = devices
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-fleet", daemon=True)

    def start(self):
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            for d in self.devices:
                d.step()
            self._stop.wait(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        for d in self.devices:
            d.stop()
