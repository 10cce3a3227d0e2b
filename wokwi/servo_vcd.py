"""What the logic analyzer saw on the servo pin, checked against what the scenario claims.

The diagram's `analyzer` (wokwi-logic-analyzer) records the servo signal (GPIO 18) on its channel
D0 and the green LED (GPIO 22, on exactly while the motor RUNS) on D1 (D2: the red LED, for
people); `wokwi-cli --vcd-file` writes that recording as a VCD file when the scenario ends, each
channel under its default name. The local scenario runner (tests/wokwi/wokwi_runner.py) writes the
same file from the virtual ESP32's PWM and pin timeline, and both are judged here by one set of
rules:

  every scenario  a servo pulse (a high level of 50 us or more; shorter ones are glitches no servo
                  acts on) starts only while the green LED is on, give or take one control tick;
                  every pulse is min_pulse_ns..max_pulse_ns wide (the firmware's servo config)
  still           no servo pulse at all
  runs            while the green LED is on, a pulse every period (1/freq_hz, +-10 %) from the
                  first period after it comes on until it goes off
  sweeps          runs, and within one stretch of running the pulse width moves by 100 us or
                  more (18 degrees on a 1-2 ms servo): the sweep, not a servo held in place

wokwi/servo-checks.yaml says which of still / runs / sweeps each scenario must show.

    python wokwi/servo_vcd.py RECORDING.vcd SCENARIO-STEM

Exit 0 when the recording keeps the rules, 8 (CHECK_FAILED) with the reasons when not, 2
(BAD_INPUT) for a file that is not a VCD of this diagram. wokwi-cli writes no file when the
analyzer recorded nothing; for a `still` scenario that is a pass.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXPECTATIONS = HERE / "servo-checks.yaml"
KINDS = ("still", "runs", "sweeps")
SERVO, GREEN = "D0", "D1"  # the analyzer channels the diagram wires to GPIO 18 and 22

GLITCH_NS = 50_000  # shorter highs are not servo commands (those are 500-2500 us)
SLACK_NS = 10_000_000  # one control tick on the chip (FreeRTOS tick: 10 ms) between the LED and the PWM
WIDTH_SLACK_NS = 10_000  # the PWM's duty resolution at 50 Hz is ~0.3 us; 10 us is generous
PERIOD_SLACK = 0.10
SWEEP_NS = 100_000

_UNITS_NS = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0, "ps": 1e-3, "fs": 1e-6}


class BadRecording(ValueError):
    """Not a VCD file, or not one with the channels this diagram records."""


# ------------------------------------------------------------------ reading a VCD file


def parse(text: str) -> tuple[dict[str, list[tuple[int, int]]], int]:
    """({channel name: [(t_ns, level), ...]}, time of the last entry in ns) of a VCD file's
    1-bit signals. x and z read as 0."""
    head, sep, body = text.partition("$enddefinitions")
    if not sep:
        raise BadRecording("no $enddefinitions: not a VCD file")
    m = re.search(r"\$timescale\s+(\d+)\s*(s|ms|us|ns|ps|fs)\s+\$end", head)
    if not m:
        raise BadRecording("no $timescale in the VCD header")
    scale = int(m.group(1)) * _UNITS_NS[m.group(2)]
    names = {}
    for var in re.finditer(r"\$var\s+\S+\s+(\d+)\s+(\S+)\s+(\S+)(?:\s+\[[^\]]*\])?\s+\$end", head):
        if var.group(1) == "1":
            names[var.group(2)] = var.group(3)
    changes: dict[str, list[tuple[int, int]]] = {name: [] for name in names.values()}
    now = 0
    for token in body.split()[1:]:  # [0] is the $end closing $enddefinitions
        if token.startswith("#"):
            now = round(int(token[1:]) * scale)
        elif token[0] in "01xXzZ" and token[1:] in names:
            changes[names[token[1:]]].append((now, 1 if token[0] == "1" else 0))
        # $dumpvars / $end / vector values: nothing to record for 1-bit channels
    return changes, now


def highs(changes: list[tuple[int, int]], end_ns: int) -> list[tuple[int, int]]:
    """(start, stop) of every stretch at level 1; one still high at the end stops at end_ns."""
    out, since = [], None
    for t, level in changes:
        if level and since is None:
            since = t
        elif not level and since is not None:
            out.append((since, t))
            since = None
    if since is not None:
        out.append((since, end_ns))
    return out


# ------------------------------------------------------------------ the rules


def servo_limits(config_path=HERE / "config.json") -> dict:
    """The servo settings the board runs with: the firmware's defaults merged with the Wokwi config."""
    sys.path.insert(0, str(ROOT / "firmware"))
    from motorguard import config

    return config.parse(Path(config_path).read_text())["servo"]


def check(channels: dict, end_ns: int, expect: str, servo: dict) -> tuple[list[str], dict]:
    """(problems, summary) of one recording; no problems = the recording keeps the rules."""
    if expect not in KINDS:
        raise BadRecording("unknown expectation %r (one of %s)" % (expect, ", ".join(KINDS)))
    missing = [c for c in (SERVO, GREEN) if c not in channels]
    if missing:
        raise BadRecording("the recording has no channel %s (channels: %s): the analyzer needs D0 on the servo pin "
                           "and D1 on the green LED" % (", ".join(missing), ", ".join(sorted(channels))))
    pulses = [(a, b - a) for a, b in highs(channels[SERVO], end_ns) if b - a >= GLITCH_NS and b < end_ns]
    running = highs(channels[GREEN], end_ns)
    period = round(1e9 / servo["freq_hz"])
    lo, hi = servo["min_pulse_ns"] - WIDTH_SLACK_NS, servo["max_pulse_ns"] + WIDTH_SLACK_NS
    problems = []

    def ms(t):
        return "%.1f ms" % (t / 1e6)

    for t, width in pulses:
        if not any(start - SLACK_NS <= t <= stop + SLACK_NS for start, stop in running):
            problems.append("servo pulse at %s while the green LED is off (the motor must not move)" % ms(t))
        if not lo <= width <= hi:
            problems.append("servo pulse at %s is %.1f us wide, outside %.0f-%.0f us"
                            % (ms(t), width / 1e3, servo["min_pulse_ns"] / 1e3, servo["max_pulse_ns"] / 1e3))
    spans = []
    for start, stop in running:
        mine = [(t, w) for t, w in pulses if start - SLACK_NS <= t <= stop + SLACK_NS]
        if stop - start < 2 * period + SLACK_NS:
            continue  # too short a stretch to hold a pulse train to account
        if not mine:
            problems.append("no servo pulse while the green LED was on from %s to %s" % (ms(start), ms(stop)))
            continue
        if mine[0][0] > start + period + SLACK_NS:
            problems.append("the first servo pulse came %s after the green LED went on" % ms(mine[0][0] - start))
        if stop < end_ns and mine[-1][0] < stop - period - SLACK_NS:
            problems.append("the servo pulses stopped at %s, before the green LED went off at %s"
                            % (ms(mine[-1][0]), ms(stop)))
        for (t1, _), (t2, _) in zip(mine, mine[1:]):
            if abs((t2 - t1) - period) > PERIOD_SLACK * period:
                problems.append("servo pulses %s apart at %s (period %s)" % (ms(t2 - t1), ms(t1), ms(period)))
        widths = [w for _, w in mine]
        spans.append(max(widths) - min(widths))
    if expect == "still" and (pulses or running):
        problems.append("the servo should stay still, but it got %d pulses (green LED on %d times)"
                        % (len(pulses), len(running)))
    if expect in ("runs", "sweeps") and not pulses:
        problems.append("the servo should run, but the analyzer saw no pulse on it")
    if expect == "sweeps" and pulses and max(spans, default=0) < SWEEP_NS:
        problems.append("the servo did not sweep: its pulse width moved %.1f us at most within one run "
                        "(at least %.0f us expected)" % (max(spans, default=0) / 1e3, SWEEP_NS / 1e3))
    widths = [w for _, w in pulses]
    summary = {"pulses": len(pulses), "running": len(running), "min_width_ns": min(widths, default=0),
               "max_width_ns": max(widths, default=0), "sweep_ns": max(spans, default=0)}
    return problems, summary


def expectations(path=EXPECTATIONS) -> dict[str, str]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    bad = {k: v for k, v in data.items() if v not in KINDS}
    if bad:
        raise BadRecording("%s: unknown expectations %s (one of %s)" % (path, bad, ", ".join(KINDS)))
    return data


def check_file(vcd: Path, scenario: str) -> tuple[list[str], str]:
    """(problems, one line saying what was seen) for a wokwi-cli recording of a scenario."""
    expect = expectations().get(scenario)
    if expect is None:
        raise BadRecording("%s lists no scenario %r" % (EXPECTATIONS.name, scenario))
    if not vcd.exists():
        if expect == "still":
            return [], "no recording (the analyzer saw no change): the servo stayed still, as expected"
        return ["no recording at %s: the analyzer saw no change, but the servo should %s" % (vcd, expect)], ""
    channels, end_ns = parse(vcd.read_text())
    problems, s = check(channels, end_ns, expect, servo_limits())
    seen = "%s: %d servo pulses in %d runs, %.1f-%.1f us wide, sweep %.1f us" % (
        expect, s["pulses"], s["running"], s["min_width_ns"] / 1e3, s["max_width_ns"] / 1e3, s["sweep_ns"] / 1e3)
    return problems, seen


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    from contract import exit_codes

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        return exit_codes.fail("usage: python wokwi/servo_vcd.py RECORDING.vcd SCENARIO-STEM",
                               "e.g. python wokwi/servo_vcd.py build/wokwi/02-start-running.vcd 02-start-running",
                               exit_codes.BAD_INPUT)
    try:
        problems, seen = check_file(Path(args[0]), args[1])
    except (BadRecording, OSError) as e:
        return exit_codes.fail(str(e), "run wokwi-cli with --vcd-file on wokwi/diagram.json", exit_codes.BAD_INPUT)
    if problems:
        for p in problems:
            print("servo: %s" % p, file=sys.stderr)
        return exit_codes.fail("%s: the servo did not do what the scenario claims" % args[1],
                               "the lines above say what the logic analyzer saw", exit_codes.CHECK_FAILED)
    print("servo %s" % seen)
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
