"""The Wokwi scenarios on the virtual ESP32, under wokwi-cli's rules.

What wokwi-cli does, read in its source (github.com/wokwi/wokwi-cli, packages/cli/src:
commands/simulate.ts, TestScenario.ts, scenario/*.ts, utils/parseTime.ts; packages/client/src/
APIClient.ts):

- With a scenario the simulation starts paused. Only `delay` (a time-relative pause point) and
  `wait-serial` (a serial-bytes pause point) resume it, and it pauses again when that point is
  reached. `set-control`, `expect-pin` and `write-serial` act on the paused simulation, at the
  instant the last delay or wait-serial ended: no simulated time passes between them.
- `wait-serial` registers its pause point when the step runs. Nothing printed before is kept, so
  a line printed during an earlier `delay` is never seen, and the step waits on. It has no timeout
  of its own: the run's `--timeout` (default 30000 ms of simulated time; exit code 42) ends it.
- `delay` needs units (`ns`, `us`, `ms`, `s`; `0` alone is allowed); a bare number is refused.
- `expect-pin` reads the pin once (1 when high, else 0) and fails unless that equals `value`.
  It names the pin with `name`, or the older `pin`; `set-control` its control with `name`, or
  the older `control`.
- Every step key must be a known command (or `name`); a scenario with another is refused before
  the simulation starts.

The virtual board cannot be paused, so this runner keeps "the instant" as a time stamp, the
cursor, and treats whatever the board did after it as not yet happened: a wait-serial sees only
console lines after the cursor (and moves the cursor to the line it matched), a delay moves the
cursor on and sleeps until then, and an expect-pin reads the pin's level at the cursor from the
board's timeline. The logic analyzer's recording is rebuilt from the board's PWM and pin
timeline as a VCD file in Wokwi's format, and judged by wokwi/servo_vcd.py like Wokwi's own.
"""

from __future__ import annotations

import bisect
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WOKWI = ROOT / "wokwi"
DEFAULT_TIMEOUT_MS = 30000  # wokwi-cli's --timeout default, and what scripts/wokwi.sh and CI pass
COMMANDS = ("delay", "wait-serial", "write-serial", "set-control", "expect-pin", "take-screenshot")
CONTROLS = {"wokwi-pushbutton": "pressed", "wokwi-potentiometer": "position", "wokwi-slide-potentiometer": "position"}
SUPPLY_UV = 3_300_000  # a potentiometer between 3V3 and GND
CHANNEL_CATCH_UP_NS = 50_000_000  # how late the board's pin messages may arrive at the harness

_TIME_RE = re.compile(r"^(\d+(\.\d*)?)\s*(ns|us|ms|s)$|^0(\.?0*)$", re.I)  # parseTime.ts
_NS_PER = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


class ScenarioInvalid(ValueError):
    """wokwi-cli would refuse the scenario before starting the simulation."""


class ScenarioFailed(AssertionError):
    """wokwi-cli would run the scenario and fail it (a timeout included)."""


def parse_time(value) -> int:
    """A delay in ns, as wokwi-cli's parseTime reads it."""
    if not isinstance(value, str):
        raise ScenarioInvalid("delay %r: the value must be a string with units (e.g. %sms)" % (value, value))
    m = _TIME_RE.match(value.strip())
    if not m:
        try:
            float(value)
        except ValueError:
            raise ScenarioInvalid("delay %r: not a time" % value) from None
        raise ScenarioInvalid("delay %r: missing units (ns, us, ms or s)" % value)
    if m.group(1) is None:
        return 0
    return round(float(m.group(1)) * _NS_PER[m.group(3).lower()])


# ------------------------------------------------------------------ the diagram


class Diagram:
    """Parts and nets of wokwi/diagram.json; a series resistor carries its signal through."""

    def __init__(self, path=WOKWI / "diagram.json"):
        self.doc = json.loads(Path(path).read_text())
        self.parts = {p["id"]: p for p in self.doc["parts"]}
        self.esp = next(p["id"] for p in self.doc["parts"] if p["type"] == "wokwi-esp32-devkit-v1")
        self._parent = {}
        for a, b, *_ in self.doc["connections"]:
            self._union(a, b)
        for pid, p in self.parts.items():
            if p["type"] == "wokwi-resistor":
                self._union(pid + ":1", pid + ":2")

    def _find(self, x):
        self._parent.setdefault(x, x)
        while self._parent[x] != x:
            self._parent[x] = self._parent[self._parent[x]]
            x = self._parent[x]
        return x

    def _union(self, a, b):
        self._parent[self._find(a)] = self._find(b)

    def same_net(self, a, b) -> bool:
        return self._find(a) == self._find(b)

    def gpio_of(self, endpoint) -> int | None:
        for pin in range(40):
            if self.same_net(endpoint, "%s:D%d" % (self.esp, pin)):
                return pin
        return None

    def analyzer_channels(self) -> dict[str, int]:
        """{channel name: GPIO} of the logic analyzer's connected inputs."""
        part = next((p for p in self.parts.values() if p["type"] == "wokwi-logic-analyzer"), None)
        if part is None:
            return {}
        names = part.get("attrs", {}).get("channelNames", ",".join("D%d" % i for i in range(8))).split(",")
        out = {}
        for i, name in enumerate(names[:8]):
            gpio = self.gpio_of("%s:D%d" % (part["id"], i))
            if gpio is not None:
                out[name.strip()] = gpio
        return out


def validate(doc, diagram: Diagram) -> None:
    """wokwi-cli's checks before it starts (TestScenario.validate and each command's validate),
    plus the part and control names, which Wokwi checks only once the step runs."""
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise ScenarioInvalid("the scenario needs a name (a string)")
    if doc.get("version") != 1:
        raise ScenarioInvalid("unsupported scenario version %r (only 1)" % doc.get("version"))
    if not isinstance(doc.get("steps"), list):
        raise ScenarioInvalid("the scenario's steps must be a list")
    for n, step in enumerate(doc["steps"], 1):
        if not isinstance(step, dict):
            raise ScenarioInvalid("step %d is not a mapping" % n)
        unknown = [k for k in step if k != "name" and k not in COMMANDS]
        if unknown:
            raise ScenarioInvalid("step %d: invalid scenario step key %s" % (n, unknown[0]))
        kinds = [k for k in step if k in COMMANDS]
        if not kinds:
            raise ScenarioInvalid("step %d has no command" % n)
        kind, arg = kinds[0], step[kinds[0]]
        if kind == "delay":
            parse_time(arg)
        elif kind in ("set-control", "expect-pin", "take-screenshot"):
            if not isinstance(arg, dict) or arg.get("part-id") not in diagram.parts:
                raise ScenarioInvalid("step %d: %s needs the part-id of a part in the diagram" % (n, kind))
            if kind == "set-control" and not (arg.get("name") or arg.get("control")):
                raise ScenarioInvalid("step %d: set-control: missing required parameter `name`" % n)
            if kind == "expect-pin" and not (arg.get("name") or arg.get("pin")):
                raise ScenarioInvalid("step %d: expect-pin: missing required parameter `name`" % n)
        elif kind == "write-serial":
            if not isinstance(arg, (str, list)) or (isinstance(arg, list) and not arg):
                raise ScenarioInvalid("step %d: write-serial takes a string or a list of numbers" % n)


# ------------------------------------------------------------------ running one scenario


@dataclass
class Run:
    """What a run leaves behind: the analyzer's recording and where each step ended."""

    vcd: str = ""
    t0_ns: int = 0
    end_ns: int = 0
    marks: list = field(default_factory=list)  # (step kind, cursor ns since start)


class WokwiRunner:
    """Runs one scenario on a VirtualESP32 that is not started yet.

    volts(position) -> volts at a potentiometer's SIG (default: position x 3.3 V) stands in for
    Wokwi's potentiometer -> ESP32 ADC path, which Wokwi does not document."""

    def __init__(self, vm, diagram: Diagram | None = None, timeout_ms=DEFAULT_TIMEOUT_MS, volts=None):
        self.vm = vm
        self.diagram = diagram or Diagram()
        self.timeout_ns = int(timeout_ms) * 1_000_000
        self.volts = volts or (lambda pos: pos * SUPPLY_UV / 1e6)
        self.cursor = (0, -1)  # (t_ns, console index): what happened up to here has happened
        self.t0 = 0

    # -- the instant the paused simulation stands at
    def _ms(self, t_ns) -> str:
        return "%.0f ms" % ((t_ns - self.t0) / 1e6)

    def _after_cursor(self, line) -> bool:
        return (line.t_ns, line.index) > self.cursor

    def _set_position(self, pid, pos):
        gpio = self.diagram.gpio_of(pid + ":SIG")
        self.vm.set_adc(gpio, int(round(self.volts(float(pos)) * 1e6)))

    def run(self, doc) -> Run:
        validate(doc, self.diagram)
        for pid, p in self.diagram.parts.items():  # the knobs where the diagram leaves them, from power-on
            if p["type"] in ("wokwi-potentiometer", "wokwi-slide-potentiometer"):
                self._set_position(pid, int(p.get("attrs", {}).get("value", "0")) / 1023)
        self.vm.start()
        self.t0 = self.vm.boots[0][0]
        self.cursor = (self.t0, -1)
        result = Run(t0_ns=self.t0)
        for step in doc["steps"]:
            kind = next(k for k in step if k in COMMANDS)
            getattr(self, "_" + kind.replace("-", "_"))(step[kind])
            result.marks.append((kind, self.cursor[0] - self.t0))
        result.end_ns = self.cursor[0]
        self._catch_up(result.end_ns)
        result.vcd = recording(self.vm, self.diagram, self.t0, result.end_ns)
        return result

    def _deadline_passed(self, what, why=""):
        raise ScenarioFailed("%s: the simulation did not finish in %d ms (wokwi-cli's --timeout; it exits 42).%s"
                             % (what, self.timeout_ns // 1_000_000, why))

    def _delay(self, value):
        target = self.cursor[0] + parse_time(value)
        if target - self.t0 > self.timeout_ns:
            self._deadline_passed("delay %s" % value)
        wait = (target - time.time_ns()) / 1e9
        if wait > 0:
            time.sleep(wait)
        self.cursor = (target, float("inf"))

    def _wait_serial(self, text):
        text = str(text)
        deadline = self.t0 + self.timeout_ns

        def seen(vm):
            return next((ln for ln in vm.lines if self._after_cursor(ln) and text in ln.text), None)

        try:
            self.vm.wait_until(lambda vm: seen(vm) is not None, max(0.0, (deadline - time.time_ns()) / 1e9),
                               "wait-serial %r" % text)
        except TimeoutError:
            earlier = [ln for ln in self.vm.lines if text in ln.text and not self._after_cursor(ln)]
            why = ""
            if earlier:
                why = (" The line was printed at %s, before this wait-serial started at %s, and wokwi-cli keeps "
                       "no earlier output: put the wait-serial right after the step that causes the line."
                       % (self._ms(earlier[-1].t_ns), self._ms(self.cursor[0])))
            self._deadline_passed("wait-serial %r" % text, why)
        line = seen(self.vm)
        self.cursor = (line.t_ns, line.index)

    def _set_control(self, arg):
        pid, control, value = arg["part-id"], arg.get("name") or arg.get("control"), arg.get("value")
        part_type = self.diagram.parts[pid]["type"]
        if CONTROLS.get(part_type) != control:
            raise ScenarioFailed("set-control: %s (%s) has no control %r" % (pid, part_type, control))
        if part_type == "wokwi-pushbutton":
            self.vm.button(self.diagram.gpio_of(pid + ":1.l"), bool(value))
        else:
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ScenarioFailed("set-control: %s position %r is not between 0 and 1" % (pid, value))
            self._set_position(pid, value)
        self.vm.wait_applied()

    def _catch_up(self, t_ns):
        """Wait until the board's messages up to t_ns have reached the harness: its messages come in
        order on one channel, and it reports a watchdog feed every few ticks, so a feed stamped after
        t_ns means every pin change before it is in. A board that feeds nothing gets a fixed wait."""
        try:
            self.vm.wait_until(lambda vm: vm.last_feed_ns > t_ns, 2.0, "a watchdog feed after %s" % self._ms(t_ns))
        except TimeoutError:
            wait = (t_ns + CHANNEL_CATCH_UP_NS - time.time_ns()) / 1e9
            if wait > 0:
                time.sleep(wait)

    def _expect_pin(self, arg):
        pid, pin, want = arg["part-id"], arg.get("name") or arg.get("pin"), arg.get("value")
        gpio = self.diagram.gpio_of("%s:%s" % (pid, pin))
        if gpio is None:
            raise ScenarioFailed("expect-pin %s:%s is not wired to a GPIO the board drives" % (pid, pin))
        at = self.cursor[0]
        self._catch_up(at)
        got = level_at(self.vm.pin_log, gpio, at)
        if type(want) is not int or got != want:  # wokwi-cli compares with !==: true is not 1
            raise ScenarioFailed("expect-pin %s:%s expected to be %r but was %d (GPIO %d at %s)"
                                 % (pid, pin, want, got, gpio, self._ms(at)))

    def _write_serial(self, arg):
        self.vm.serial_write(arg if isinstance(arg, str) else bytes(arg).decode("latin-1"))

    def _take_screenshot(self, arg):
        pass  # no part here has a framebuffer to compare


# ------------------------------------------------------------------ the board's timeline as the analyzer sees it


def level_at(pin_log, gpio, t_ns) -> int:
    """The level an output had at t_ns (0 before its first change)."""
    level = 0
    for t, pin, v in pin_log:
        if t > t_ns:
            break
        if pin == gpio:
            level = 1 if v else 0
    return level


def pwm_edges(pwm_log, freq_hz, t0, end) -> list[tuple[int, int]]:
    """(t, level) edges of a PWM output from its duty timeline [(t, duty_ns)]: the timer runs from
    the first entry (the PWM's creation) with period 1/freq, and a new duty takes effect at the
    next period, as the ESP32's LEDC latches it."""
    if not pwm_log or not freq_hz:
        return []
    period = round(1e9 / freq_hz)
    times = [t for t, _ in pwm_log]
    edges = []
    start = pwm_log[0][0]
    while start < end:
        duty = pwm_log[bisect.bisect_right(times, start) - 1][1]
        if duty > 0 and start >= t0:
            edges += [(start, 1), (start + min(duty, period), 0)]
        start += period
    return [(t, v) for t, v in edges if t < end]


def recording(vm, diagram: Diagram, t0, end) -> str:
    """The logic analyzer's VCD file (Wokwi's layout: 1 ns timescale, a #0 entry per channel) of
    what the board did from t0 to end."""
    channels = diagram.analyzer_channels()
    changes = []
    for n, (name, gpio) in enumerate(channels.items()):
        ident = chr(33 + n)
        if gpio == vm.servo_pin:
            freq = (vm.pwm.get(gpio) or (0, 0))[1]
            edges = pwm_edges(vm.pwm_log, freq, t0, end)
        else:
            edges = [(t, 1 if v else 0) for t, pin, v in vm.pin_log if pin == gpio and t0 <= t < end]
        changes.append((0, ident, 0))
        changes += [(t - t0, ident, v) for t, v in edges]
    head = ["$timescale 1ns $end", "$scope module logic $end"]
    head += ["$var wire 1 %s %s $end" % (chr(33 + n), name) for n, name in enumerate(channels)]
    head += ["$upscope $end", "$enddefinitions $end"]
    body = []
    for t, ident, v in sorted(changes, key=lambda c: c[0]):
        body += ["#%d" % t, "%d%s" % (v, ident)]
    body.append("#%d" % (end - t0))  # where the recording ends: the scenario's last instant
    return "\n".join(head + body) + "\n"
