"""The Wokwi project checked against the one pin map and against itself, and its scenarios run on the
virtual ESP32 by translating each step into a harness action, so the scenarios are proven here too."""

from __future__ import annotations

import json
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WOKWI = ROOT / "wokwi"
sys.path.insert(0, str(ROOT / "firmware"))
from motorguard import config  # noqa: E402

DIAGRAM = json.loads((WOKWI / "diagram.json").read_text())
PARTS = {p["id"]: p for p in DIAGRAM["parts"]}
SCENARIOS = sorted((WOKWI / "scenarios").glob("*.yaml"))
STEP_KINDS = {"delay", "wait-serial", "write-serial", "set-control", "expect-pin", "take-screenshot"}
CONTROLS = {"wokwi-pushbutton": {"pressed"}, "wokwi-potentiometer": {"position"},
            "wokwi-slide-potentiometer": {"position"}}
PART_PINS = {
    "wokwi-servo": {"PWM", "V+", "GND"}, "wokwi-pushbutton": {"1.l", "1.r", "2.l", "2.r"},
    "wokwi-led": {"A", "C"}, "wokwi-resistor": {"1", "2"}, "wokwi-potentiometer": {"GND", "SIG", "VCC"},
}
ESP = next(p["id"] for p in DIAGRAM["parts"] if p["type"] == "wokwi-esp32-devkit-v1")
# Which firmware pin each part's signal must reach.
ROLE = {"servo": ("servo", "PWM"), "btnStart": ("start_button", "1.l"), "btnStop": ("stop_button", "1.l"),
        "ledGreen": ("led_green", "A"), "ledRed": ("led_red", "A"), "potTemp": ("temp_adc", "SIG"),
        "potCurrent": ("current_adc", "SIG")}


def nets():
    """Connected endpoints, merged through resistors (a series resistor carries the signal)."""
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    for a, b, *_ in DIAGRAM["connections"]:
        union(a, b)
    for pid, p in PARTS.items():
        if p["type"] == "wokwi-resistor":
            union(pid + ":1", pid + ":2")
    return find


def gpio_of(endpoint):
    find = nets()
    root = find(endpoint)
    for pin in range(40):
        if find("%s:D%d" % (ESP, pin)) == root:
            return pin
    return None


def test_every_firmware_pin_is_wired_to_its_part():
    for part, (role, pin) in ROLE.items():
        assert part in PARTS, part
        assert gpio_of("%s:%s" % (part, pin)) == config.DEFAULTS["pins"][role], (part, role)
    assert set(config.DEFAULTS["pins"]) == {role for role, _ in ROLE.values()}


def test_every_part_is_wired_and_pins_exist():
    used = {}
    for a, b, *_ in DIAGRAM["connections"]:
        for end in (a, b):
            pid, _, pin = end.partition(":")
            used.setdefault(pid, set()).add(pin)
    for pid, p in PARTS.items():
        assert pid in used, "%s is not connected" % pid
        if p["type"] in PART_PINS:
            assert used[pid] <= PART_PINS[p["type"]], (pid, used[pid])
    for pid in ("ledGreen", "ledRed", "potTemp", "potCurrent", "servo"):
        assert gpio_of(pid + ":" + ("C" if pid.startswith("led") else "GND")) is None
        find = nets()
        assert find(pid + ":" + ("C" if pid.startswith("led") else "GND")) == find(ESP + ":GND.1")


def test_toml_points_at_the_factory_image():
    toml = tomllib.loads((WOKWI / "wokwi.toml").read_text())
    assert toml["wokwi"]["version"] == 1
    assert (WOKWI / toml["wokwi"]["firmware"]).resolve() == (ROOT / "build" / "flash-4MB.bin").resolve()
    from flashing import tools

    assert (tools.BUILD / "flash-4MB.bin").resolve() == (ROOT / "build" / "flash-4MB.bin").resolve()


def test_wokwi_config_sends_no_keys_anywhere():
    cfg = config.parse((WOKWI / "config.json").read_text())
    assert cfg["offline"] is True and cfg["wifi"]["ssid"] == "Wokwi-GUEST"
    assert not list(WOKWI.rglob("*.der")) and not list(WOKWI.rglob("*.pem"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_files_are_valid(path):
    doc = yaml.safe_load(path.read_text())
    assert doc["version"] == 1 and doc["name"] and doc["steps"]
    for step in doc["steps"]:
        (kind,) = step.keys()
        assert kind in STEP_KINDS, kind
        if kind in ("set-control", "expect-pin"):
            args = step[kind]
            assert args["part-id"] in PARTS, args
            part = PARTS[args["part-id"]]
            if kind == "set-control":
                assert args["control"] in CONTROLS[part["type"]], args
            else:
                assert args["pin"] in PART_PINS[part["type"]], args
    assert len(SCENARIOS) >= 6


# ------------------------------------------------------------------ the scenarios on the virtual ESP32


class Runner:
    """Turns wokwi-cli steps into VirtualESP32 actions."""

    def __init__(self, vm):
        self.vm = vm
        self.mark = 0
        for pid, p in PARTS.items():
            if p["type"] == "wokwi-potentiometer":
                self.position(pid, int(p["attrs"].get("value", "0")) / 1023)

    def position(self, pid, pos):
        self.vm.set_adc(gpio_of(pid + ":SIG"), int(pos * 3300000))

    def step(self, step):
        (kind, arg), = step.items()
        vm = self.vm
        if kind == "delay":
            time.sleep(float(str(arg).rstrip("ms")) / (1000 if str(arg).endswith("ms") else 1))
        elif kind == "wait-serial":
            line = vm.wait_for_line(arg, 10, since=self.mark)
            self.mark = line.index + 1
        elif kind == "set-control":
            part = PARTS[arg["part-id"]]
            if part["type"] == "wokwi-pushbutton":
                vm.button(gpio_of(arg["part-id"] + ":1.l"), bool(arg["value"]))
            else:
                self.position(arg["part-id"], float(arg["value"]))
            vm.wait_applied()
        elif kind == "expect-pin":
            gpio = gpio_of("%s:%s" % (arg["part-id"], arg["pin"]))
            vm.wait_until(lambda v: v.outputs.get(gpio, 0) == int(arg["value"]), 2,
                          "%s.%s == %s" % (arg["part-id"], arg["pin"], arg["value"]))
        elif kind == "write-serial":
            vm.serial_write(arg)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_on_the_virtual_esp32(path, tmp_path):
    from vesp32.harness import VirtualESP32

    dev = tmp_path / "flash"
    dev.mkdir()
    (dev / "config.json").write_text((WOKWI / "config.json").read_text())
    vm = VirtualESP32(dev, firmware_dir=ROOT / "firmware")
    try:
        vm.start()
        runner = Runner(vm)
        for step in yaml.safe_load(path.read_text())["steps"]:
            runner.step(step)
        assert vm.boot_count == 1
    finally:
        vm.stop()


def test_ci_workflow_runs_every_scenario_on_the_factory_image():
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "wokwi.yml").read_text())
    (job,) = flow["jobs"].values()
    assert sorted(job["strategy"]["matrix"]["scenario"]) == [p.stem for p in SCENARIOS]
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert "make image CONFIG=wokwi/config.json" in runs  # the pinned, hash-checked MicroPython
    action = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("wokwi/wokwi-ci-action@"))
    assert action["uses"] == "wokwi/wokwi-ci-action@v1"
    assert action["with"]["token"] == "${{ secrets.WOKWI_CLI_TOKEN }}" and action["with"]["path"] == "wokwi"
    assert action["with"]["scenario"] == "scenarios/${{ matrix.scenario }}.yaml"
