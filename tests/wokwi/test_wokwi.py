"""The Wokwi project checked against the one pin map and against itself, and its scenarios run on the
virtual ESP32 under wokwi-cli's own rules (tests/wokwi/wokwi_runner.py), the servo judged from the
logic analyzer's recording as in Wokwi (wokwi/servo_vcd.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from wokwi_runner import Diagram, ScenarioFailed, ScenarioInvalid, WokwiRunner, parse_time, pwm_edges, validate

ROOT = Path(__file__).resolve().parents[2]
WOKWI = ROOT / "wokwi"
sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(WOKWI))
import servo_vcd  # noqa: E402
from motorguard import config, sensors  # noqa: E402

DIAGRAM = Diagram()
PARTS = DIAGRAM.parts
SCENARIOS = sorted((WOKWI / "scenarios").glob("*.yaml"))
WOKWI_CONFIG = config.parse((WOKWI / "config.json").read_text())
PART_PINS = {
    "wokwi-servo": {"PWM", "V+", "GND"}, "wokwi-pushbutton": {"1.l", "1.r", "2.l", "2.r"},
    "wokwi-led": {"A", "C"}, "wokwi-resistor": {"1", "2"}, "wokwi-potentiometer": {"GND", "SIG", "VCC"},
    "wokwi-logic-analyzer": {"D%d" % i for i in range(8)} | {"GND"},
}
# Which firmware pin each part's signal must reach.
ROLE = {"servo": ("servo", "PWM"), "btnStart": ("start_button", "1.l"), "btnStop": ("stop_button", "1.l"),
        "ledGreen": ("led_green", "A"), "ledRed": ("led_red", "A"), "potTemp": ("temp_adc", "SIG"),
        "potCurrent": ("current_adc", "SIG")}


def load(path):
    return yaml.safe_load(Path(path).read_text())


# ------------------------------------------------------------------ the diagram and the project


def test_every_firmware_pin_is_wired_to_its_part():
    for part, (role, pin) in ROLE.items():
        assert part in PARTS, part
        assert DIAGRAM.gpio_of("%s:%s" % (part, pin)) == config.DEFAULTS["pins"][role], (part, role)
    assert set(config.DEFAULTS["pins"]) == {role for role, _ in ROLE.values()}


def test_every_part_is_wired_and_pins_exist():
    used = {}
    for a, b, *_ in DIAGRAM.doc["connections"]:
        for end in (a, b):
            pid, _, pin = end.partition(":")
            used.setdefault(pid, set()).add(pin)
    for pid, p in PARTS.items():
        assert pid in used, "%s is not connected" % pid
        if p["type"] in PART_PINS:
            assert used[pid] <= PART_PINS[p["type"]], (pid, used[pid])
    for end in ("ledGreen:C", "ledRed:C", "potTemp:GND", "potCurrent:GND", "servo:GND", "analyzer:GND"):
        assert DIAGRAM.gpio_of(end) is None and DIAGRAM.same_net(end, DIAGRAM.esp + ":GND.1"), end


def test_the_logic_analyzer_watches_the_servo_and_the_green_led():
    pins = config.DEFAULTS["pins"]
    channels = DIAGRAM.analyzer_channels()
    assert channels == {servo_vcd.SERVO: pins["servo"], servo_vcd.GREEN: pins["led_green"], "D2": pins["led_red"]}
    assert set(servo_vcd.expectations()) == {p.stem for p in SCENARIOS}


def test_toml_points_at_the_factory_image():
    toml = tomllib.loads((WOKWI / "wokwi.toml").read_text())
    assert toml["wokwi"]["version"] == 1
    assert (WOKWI / toml["wokwi"]["firmware"]).resolve() == (ROOT / "build" / "flash-4MB.bin").resolve()
    from flashing import image, tools

    assert image.default_out("4MB") == tools.BUILD / "flash-4MB.bin"  # Wokwi's ESP32 has 4 MB of flash


def test_wokwi_config_sends_no_keys_anywhere():
    assert WOKWI_CONFIG["offline"] is True and WOKWI_CONFIG["wifi"]["ssid"] == "Wokwi-GUEST"
    assert not list(WOKWI.rglob("*.der")) and not list(WOKWI.rglob("*.pem"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_files_are_valid(path):
    validate(load(path), DIAGRAM)
    assert len(SCENARIOS) >= 6


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_each_wait_serial_follows_the_step_that_causes_its_line(path):
    """wait-serial sees only later output, so it comes first (the boot line) or right after a
    set-control; and an expect-pin never reads a pin at the very instant a line matched (the
    firmware prints a state before it sets the LEDs): a delay comes between."""
    steps = [next(k for k in step if k != "name") for step in load(path)["steps"]]
    for n, kind in enumerate(steps):
        if kind == "wait-serial" and n:
            assert steps[n - 1] == "set-control", "%s step %d: wait-serial after %s" % (path.stem, n + 1, steps[n - 1])
        if kind == "expect-pin":
            since = steps[:n][::-1]
            last_wait = since.index("wait-serial") if "wait-serial" in since else len(since)
            assert "delay" in since[:last_wait], "%s step %d: expect-pin, no delay since the wait" % (path.stem, n + 1)


# ------------------------------------------------------------------ the runner keeps wokwi-cli's rules


@pytest.mark.parametrize("text, ns", [("500ms", 500_000_000), ("1s", 10**9), ("1.5 s", 1_500_000_000),
                                      ("10us", 10_000), ("7ns", 7), ("0", 0), ("2MS", 2_000_000)])
def test_delays_are_read_as_wokwi_cli_reads_them(text, ns):
    assert parse_time(text) == ns


@pytest.mark.parametrize("value, words", [(500, "must be a string with units"), ("500", "missing units"),
                                          ("soon", "not a time")])
def test_a_delay_without_units_is_refused(value, words):
    with pytest.raises(ScenarioInvalid, match=words):
        parse_time(value)


@pytest.mark.parametrize("steps, words", [
    ([{"wait-for": "x"}], "invalid scenario step key wait-for"),
    ([{"expect-pin": {"part-id": "ledGreen", "value": 1}}], "missing required parameter `name`"),
    ([{"set-control": {"part-id": "nope", "control": "pressed", "value": 1}}], "part-id"),
    ([{"name": "only a name"}], "no command"),
])
def test_a_scenario_wokwi_cli_would_refuse_is_refused(steps, words):
    with pytest.raises(ScenarioInvalid, match=words):
        validate({"name": "bad", "version": 1, "steps": steps}, DIAGRAM)


def test_pwm_edges_follow_the_duty_a_period_late():
    # Created at t=0 with duty 0; 1.5 ms from 30 ms; 0 from 75 ms: pulses at 40 and 60 ms (the next
    # period boundaries), and the one at 80 ms is gone.
    log = [(0, 0), (30_000_000, 1_500_000), (75_000_000, 0)]
    assert pwm_edges(log, 50, 0, 100_000_000) == [(40_000_000, 1), (41_500_000, 0), (60_000_000, 1), (61_500_000, 0)]


@pytest.fixture
def board(tmp_path):
    from vesp32.harness import VirtualESP32

    dev = tmp_path / "flash"
    dev.mkdir()
    (dev / "config.json").write_text((WOKWI / "config.json").read_text())
    vm = VirtualESP32(dev, firmware_dir=ROOT / "firmware")
    try:
        yield vm
    finally:
        vm.stop()


PRESS_START = {"set-control": {"part-id": "btnStart", "control": "pressed", "value": 1}}
RELEASE_START = {"set-control": {"part-id": "btnStart", "control": "pressed", "value": 0}}
BOOTED = {"wait-serial": "MG STATE STOPPED event=BOOT"}


def test_a_wait_serial_for_a_line_printed_before_it_is_refused(board):
    """Scenario 02 as it was: the start line comes during the 150 ms delay, before the wait-serial."""
    late = {"name": "old 02", "version": 1, "steps": [
        BOOTED, {"delay": "300ms"}, PRESS_START, {"delay": "150ms"}, RELEASE_START,
        {"wait-serial": "MG STATE RUNNING event=STARTED"}]}
    with pytest.raises(ScenarioFailed) as e:
        WokwiRunner(board, timeout_ms=3000).run(late)
    message = str(e.value)
    assert "did not finish in 3000 ms" in message and "exits 42" in message
    assert "before this wait-serial started" in message and "right after the step that causes the line" in message
    assert board.state == "RUNNING"  # the board did start: only the order of the steps was wrong


def test_expect_pin_reads_the_instant_the_simulation_stands_at(board):
    """Right after the press no simulated time has passed, so the LED is still off, although the
    board turns it on a debounce later (a runner that polled would see 1)."""
    eager = {"name": "eager", "version": 1, "steps": [
        BOOTED, {"delay": "300ms"}, PRESS_START, {"expect-pin": {"part-id": "ledGreen", "pin": "A", "value": 1}}]}
    with pytest.raises(ScenarioFailed, match="expected to be 1 but was 0"):
        WokwiRunner(board, timeout_ms=5000).run(eager)
    board.wait_for_state("RUNNING", 2)


def run_scenario(vm, path, **runner_args):
    run = WokwiRunner(vm, **runner_args).run(load(path))
    channels, end = servo_vcd.parse(run.vcd)
    problems, summary = servo_vcd.check(channels, end, servo_vcd.expectations()[path.stem], WOKWI_CONFIG["servo"])
    assert not problems, problems
    assert vm.boot_count == 1
    return summary


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_on_the_virtual_esp32(path, board):
    summary = run_scenario(board, path)
    if path.stem == "02-start-running":
        assert summary["pulses"] >= 40 and summary["sweep_ns"] >= 150_000  # ~1 s of sweep at 60 deg/s


# ------------------------------------------------------------------ the potentiometers and the ADC

# Wokwi documents a potentiometer's value (0-1023) but not what MicroPython's ADC.read_uv() makes of
# it on its ESP32; the scenarios are built to hold for a gain 15 % either side of position x 3.3 V
# and an offset of 0.1 V either way (the chip's own ADC error is within that in 0.15-2.45 V).
ADC_MAPPINGS = [(gain, offset) for gain in (0.85, 1.0, 1.15) for offset in (-0.1, 0.0, 0.1)]


def zone(value, clear, combined, hard):
    if value is None:
        return "implausible"
    return "clear" if value < clear else "between" if value < combined else "over" if value < hard else "hard"


def zones(temp_pos, current_pos, gain, offset):
    lim = WOKWI_CONFIG["limits"]
    ntc, cur = sensors.NTC(WOKWI_CONFIG["ntc"]), sensors.CurrentSensor(WOKWI_CONFIG["current"])
    t = ntc.decicelsius(int((gain * temp_pos * 3.3 + offset) * 1e6))
    i = cur.milliamps(int((gain * current_pos * 3.3 + offset) * 1e6))
    return (zone(t, 10 * (lim["combined_temp_c"] - lim["clear_hysteresis_c"]), 10 * lim["combined_temp_c"],
                 10 * lim["hard_temp_c"]),
            zone(i, 1000 * (lim["combined_current_a"] - lim["clear_hysteresis_a"]), 1000 * lim["combined_current_a"],
                 1000 * lim["hard_current_a"]))


def knob_settings():
    """Every (potTemp, potCurrent) pair a scenario sets, the diagram's start values first."""
    start = {pid: int(PARTS[pid]["attrs"]["value"]) / 1023 for pid in ("potTemp", "potCurrent")}
    seen = {(start["potTemp"], start["potCurrent"])}
    for path in SCENARIOS:
        knobs = dict(start)
        for step in load(path)["steps"]:
            arg = step.get("set-control")
            if arg and arg["part-id"] in knobs:
                knobs[arg["part-id"]] = arg["value"]
                seen.add((knobs["potTemp"], knobs["potCurrent"]))
    return sorted(seen)


def test_every_knob_setting_means_the_same_whatever_the_adc_does():
    settings = knob_settings()
    nominal = {s: zones(*s, 1.0, 0.0) for s in settings}
    assert ("over", "over") in nominal.values()  # the overload the scenarios trip
    assert nominal[(0.58, 0.16)] == ("clear", "clear")  # and the reset they clear with
    for s in settings:
        for gain, offset in ADC_MAPPINGS:
            assert zones(*s, gain, offset) == nominal[s], (s, gain, offset)
        assert "hard" not in nominal[s] and "implausible" not in nominal[s], s


@pytest.mark.parametrize("gain, offset", [(1.15, 0.1), (0.85, -0.1)])
def test_the_fault_and_its_reset_hold_with_another_adc_mapping(board, gain, offset):
    run_scenario(board, WOKWI / "scenarios" / "05-reset-after-clear.yaml", volts=lambda pos: gain * pos * 3.3 + offset)


# ------------------------------------------------------------------ the recording's rules


def vcd(servo, green, end_ms):
    """A recording in Wokwi's layout: servo pulses [(start ms, width us)], green [(on ms, off ms)]."""
    changes = [(0, "!", 0), (0, '"', 0)]
    for start, width in servo:
        changes += [(int(start * 1e6), "!", 1), (int(start * 1e6 + width * 1e3), "!", 0)]
    for on, off in green:
        changes += [(int(on * 1e6), '"', 1), (int(off * 1e6), '"', 0)]
    lines = ["$version Generated by Wokwi.com $end", "$timescale 1ns $end", "$scope module logic $end",
             "$var wire 1 ! %s $end" % servo_vcd.SERVO, '$var wire 1 " %s $end' % servo_vcd.GREEN, "$upscope $end",
             "$enddefinitions $end"]
    for t, ident, v in sorted(changes, key=lambda c: c[0]):
        lines += ["#%d" % t, "%d%s" % (v, ident)]
    lines.append("#%d" % int(end_ms * 1e6))
    return "\n".join(lines) + "\n"


SERVO = WOKWI_CONFIG["servo"]
SWEEP = [(1000 + 20 * k, 1100 + 6 * k) for k in range(40)]  # 40 pulses, 1.1 ms -> 1.33 ms


@pytest.mark.parametrize("servo, green, expect, words", [
    (SWEEP, [(995, 1800)], "sweeps", None),
    ([(1000 + 20 * k, 1500) for k in range(40)], [(995, 1800)], "sweeps", "did not sweep"),
    ([(1000 + 20 * k, 1500) for k in range(40)], [(995, 1800)], "runs", None),
    (SWEEP + [(1900, 1500)], [(995, 1800)], "runs", "while the green LED is off"),
    ([(1000 + 30 * k, 1500) for k in range(20)], [(995, 1600)], "runs", "apart"),
    ([(1000 + 20 * k, 2600) for k in range(5)], [(995, 1100)], "runs", "outside"),
    ([], [(995, 1800)], "runs", "no servo pulse"),
    (SWEEP, [(995, 1800)], "still", "should stay still"),
    ([(500, 10)], [], "still", None),  # a 10 us glitch is no servo command
])
def test_the_servo_rules_catch_what_they_claim(servo, green, expect, words):
    channels, end = servo_vcd.parse(vcd(servo, green, 2500))
    problems, _ = servo_vcd.check(channels, end, expect, SERVO)
    if words is None:
        assert problems == []
    else:
        assert problems and any(words in p for p in problems), problems


def test_a_wokwi_recording_with_repeated_zero_timestamps_parses():
    text = ("$timescale 1ns $end\n$scope module logic $end\n$var wire 1 ! D0 $end\n$var wire 1 \" D1 $end\n"
            "$upscope $end\n$enddefinitions $end\n#0\n0!\n#0\n0\"\n#100131625\n1!\n#100136562\n0!\n")
    channels, end = servo_vcd.parse(text)
    assert channels == {"D0": [(0, 0), (100131625, 1), (100136562, 0)], "D1": [(0, 0)]} and end == 100136562


def check_cli(*args):
    return subprocess.run([sys.executable, str(WOKWI / "servo_vcd.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_the_check_command_says_what_it_saw(tmp_path):
    from contract import exit_codes

    good, bad = tmp_path / "good.vcd", tmp_path / "bad.vcd"
    good.write_text(vcd(SWEEP, [(995, 1800)], 2500))
    bad.write_text(vcd([], [(995, 1800)], 2500))
    r = check_cli(good, "02-start-running")
    assert r.returncode == exit_codes.OK and "40 servo pulses" in r.stdout, r.stderr
    r = check_cli(bad, "02-start-running")
    assert r.returncode == exit_codes.CHECK_FAILED and "no servo pulse" in r.stderr
    assert check_cli(tmp_path / "absent.vcd", "01-boot-stopped").returncode == exit_codes.OK
    assert check_cli(tmp_path / "absent.vcd", "02-start-running").returncode == exit_codes.CHECK_FAILED
    (tmp_path / "x.vcd").write_text("hello")
    r = check_cli(tmp_path / "x.vcd", "02-start-running")
    assert r.returncode == exit_codes.BAD_INPUT and "not a VCD" in r.stderr
    assert check_cli(good, "99-nope").returncode == exit_codes.BAD_INPUT


def test_make_wokwi_checks_each_recording(tmp_path):
    """scripts/wokwi.sh with a stand-in wokwi-cli that 'records' a given VCD."""
    fake = tmp_path / "wokwi-cli"
    fake.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = --vcd-file ] && cp "$FAKE_VCD" "$2"; shift; done\n')
    fake.chmod(0o755)
    recorded = tmp_path / "rec.vcd"
    env = dict(os.environ, WOKWI_CLI_TOKEN="t", WOKWI_CLI=str(fake), FAKE_VCD=str(recorded), PYTHON=sys.executable,
               WOKWI_OUT=str(tmp_path / "out"))
    recorded.write_text(vcd(SWEEP, [(995, 1800)], 2500))
    r = subprocess.run(["bash", "scripts/wokwi.sh", "02-start-running"], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=60)
    assert r.returncode == 0 and "servo sweeps: 40 servo pulses" in r.stdout, r.stderr
    assert (tmp_path / "out" / "02-start-running.vcd").read_text() == recorded.read_text()
    recorded.write_text(vcd([], [], 2500))
    r = subprocess.run(["bash", "scripts/wokwi.sh", "02-start-running"], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=60)
    assert r.returncode != 0 and "did not do what the scenario claims" in r.stderr
    r = subprocess.run(["bash", "scripts/wokwi.sh"], capture_output=True, text=True, cwd=ROOT,
                       env=dict(env, WOKWI_CLI_TOKEN=""), timeout=60)
    assert r.returncode == 2 and "WOKWI_CLI_TOKEN is not set" in r.stderr


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
