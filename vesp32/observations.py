"""What a test sees of the virtual board: the serial console (and the `MG STATE` lines
in it), boots, the servo PWM timeline, the plant's true values, and waits on any of it.

Everything observed is recorded under one lock with one condition, notified on every
change, so a wait_* call wakes exactly when what it waits for may have happened.
"""

from __future__ import annotations

import collections
import os
import time

import boardlink
from contract import console

ConsoleLine = collections.namedtuple("ConsoleLine", "t_ns text index")



class BoardObservations:
    """Observation part of VirtualESP32's public API (state set up in VirtualESP32.__init__)."""

    def _read_console(self, proc):
        # One thread per boot, until that process's stdout closes. Bytes as they come (the raw
        # REPL's prompts end no line) go to the serial port, lines to the console log.
        fd = proc.stdout.fileno()
        reader = boardlink.LineReader()
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                break
            port = self.serial
            if port is not None:
                port.from_board(data)
            for text in reader.feed(data):
                self._console_line(text)
        rest = reader.rest()
        if rest is not None:
            self._console_line(rest)

    def _console_line(self, text):
        t = time.time_ns()
        with self._lock:
            line = ConsoleLine(t, text, len(self.lines))
            self.lines.append(line)
            state = console.state(text)
            if state:
                self.state = state
                self.states.append((t, state))
            self._cond.notify_all()
        if self.on_line is not None:
            try:
                self.on_line(line)
            except Exception:  # noqa: BLE001 - a printing callback must not stop capture
                pass

    @property
    def boot_count(self) -> int:
        return len(self.boots)

    @property
    def boot_cause(self) -> int:
        return self._boot_cause

    @property
    def text(self) -> list[str]:
        with self._lock:
            return [line.text for line in self.lines]

    def mark(self) -> int:
        """Index of the next console line: pass it as since= to wait only for newer lines."""
        with self._lock:
            return len(self.lines)

    def wait_ready(self, timeout=10.0):
        """Wait until the current boot's simulation is up (main.py about to run)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self.halted, timeout):
                raise TimeoutError("board not up within %.1f s; console:\n%s" % (timeout, self.console_tail()))
        if not self._ready:
            raise RuntimeError("board did not start (%s); console:\n%s" % (self.halted, self.console_tail()))

    def wait_for_boot(self, count: int, timeout=10.0):
        """Wait until at least `count` boots happened and the last one is up."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.boots) >= count and self._ready, timeout):
                raise TimeoutError("boot %d not up within %.1f s (boots: %s)" % (count, timeout, self.boots))
        return self.boots[-1]

    def wait_for_line(self, pattern, timeout=10.0, since=0) -> ConsoleLine:
        """First console line (index >= since) containing `pattern` (str) or matching it
        (compiled regex, re.search)."""
        if isinstance(pattern, str):
            match = lambda s: pattern in s  # noqa: E731
        else:
            match = lambda s: pattern.search(s) is not None  # noqa: E731
        pos = [since]

        def find():
            lines = self.lines
            for i in range(pos[0], len(lines)):
                if match(lines[i].text):
                    return lines[i]
            pos[0] = max(pos[0], len(lines))
            return None

        with self._cond:
            found = self._cond.wait_for(find, timeout)
        if not found:
            raise TimeoutError("no console line matching %r within %.1f s; console:\n%s" % (pattern, timeout, self.console_tail()))
        return found

    def wait_for_state(self, state: str, timeout=10.0) -> int:
        """Wait until the last `MG STATE` line says `state`; returns that line's t_ns."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.state == state, timeout):
                raise TimeoutError("state %s not reached within %.1f s (now %s); console:\n%s" % (state, timeout, self.state, self.console_tail()))
            return self.states[-1][0] if self.states else 0

    def wait_until(self, predicate, timeout=10.0, what="condition"):
        """Wait until predicate(self) is true (evaluated whenever anything is observed)."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError("%s not met within %.1f s" % (what, timeout))

    def watch_pwm_off_after(self, t0_ns: int, timeout=2.0) -> int:
        """Latency (ns) from t0_ns until the servo PWM duty is 0 (0 if it already was)."""

        def off_at():
            before = 0
            for t, ns in self.pwm_log:
                if t < t0_ns:
                    before = ns
                elif ns == 0:
                    return t
            if before == 0 and (not self.pwm_log or self.pwm_log[-1][0] < t0_ns) and self.pwm_duty == 0:
                return t0_ns
            return None

        with self._cond:
            ok = self._cond.wait_for(lambda: off_at() is not None, timeout)
            if not ok:
                raise TimeoutError("PWM still %d ns %.1f s after t0" % (self.pwm_duty, timeout))
            return off_at() - t0_ns

    @property
    def plant(self) -> dict:
        """The plant's latest true values: temp_c, amps, pos_deg (and t)."""
        with self._lock:
            return dict(self.plant_state)

    @property
    def route(self) -> str:
        """How the device reaches its broker, for humans."""
        if self.proxy is None:
            return "direct"
        src = "%s:%s" % tuple(self._hosts[0][:2]) if self._hosts else "(no mqtt host configured)"
        return "%s -> proxy 127.0.0.1:%s [%s] -> %s:%s" % (src, self.proxy.port if self._running else "?", self.proxy.mode, *self.proxy.upstream)

    @property
    def plant_settings(self) -> dict:
        return dict(self._plant)

    def console_tail(self, n=30) -> str:
        with self._lock:
            return "\n".join(line.text for line in self.lines[-n:])
