"""One interface to a MotorGuard board under test: the virtual ESP32, or a real board on a serial port.

Both are driven the same way, through the firmware's test hook on the serial console
(firmware/motorguard/testhook.py: HOOK press/hold/temp/current/stop/stall), and observed through
the console lines the firmware prints (MG STATE, MG NET, MG HOOK ...).
"""

from __future__ import annotations

import re
import threading
import time

import boardlink
from contract import console


def hook_reply(text) -> bool:
    line = console.parse(text)
    return line is not None and line.word == "HOOK" and line.args[:1] != ("ready",)


class Board:
    """Console lines with timestamps, and the hook commands."""

    def __init__(self):
        self.lines: list[tuple[float, str]] = []
        self._cv = threading.Condition()

    # to implement: write(text), reboot(), close()
    def _add(self, text):
        with self._cv:
            self.lines.append((time.monotonic(), text))
            self._cv.notify_all()

    def mark(self) -> int:
        with self._cv:
            return len(self.lines)

    def wait_for(self, pattern, timeout=10.0, since=0) -> str:
        """The first console line since `since` that pattern (a regular expression, or a function
        of the line's text) matches."""
        matches = pattern if callable(pattern) else re.compile(pattern).search
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for _, text in self.lines[since:]:
                    if matches(text):
                        return text
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(t for _, t in self.lines[-25:])
                    raise AssertionError("no console line matching %r in %s s; last lines:\n%s" % (pattern, timeout, tail))
                self._cv.wait(left)

    def state(self) -> str | None:
        with self._cv:
            for _, text in reversed(self.lines):
                got = console.state(text)
                if got:
                    return got
        return None

    def wait_for_state(self, state, timeout=5.0, since=None):
        since = self.mark() if since is None else since
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state() == state:
                return
            time.sleep(0.02)
        tail = "\n".join(t for _, t in self.lines[-25:])
        raise AssertionError("state %s not reached (now %s); last lines:\n%s" % (state, self.state(), tail))

    def hook(self, command, reply=None, timeout=5.0) -> str:
        """Sends a test-hook command; returns its reply line (reply: a pattern it must match,
        default any HOOK line but the hook's own `ready`)."""
        since = self.mark()
        self.write("HOOK %s\n" % command)
        return self.wait_for(reply or hook_reply, timeout, since)

    def press(self, button, ms=100):
        """Press and release, like a person: returns once the button is up again (and debounced)."""
        reply = self.hook("press %s %d" % (button, ms))
        time.sleep((ms + 60) / 1000.0)
        return reply


class VirtualBoard(Board):
    def __init__(self, device_dir, broker_addr, firmware_dir):
        super().__init__()
        from vesp32.harness import VirtualESP32

        self.vm = VirtualESP32(device_dir, firmware_dir=firmware_dir, broker=broker_addr,
                               on_line=lambda line: self._add(line.text))
        self.vm.start()
        self.wait_for(console.HOOK_READY, 15)

    def write(self, text):
        self.vm.serial_write(text)

    def reboot(self):
        since = self.mark()
        self.vm.reboot()
        self.wait_for(console.HOOK_READY, 15, since=since)

    @property
    def boots(self):
        return self.vm.boots

    def close(self):
        self.vm.stop()


class SerialBoard(Board):
    """A real ESP32 running MotorGuard with a test config (test_hook: true), on a serial port."""

    def __init__(self, port):
        super().__init__()
        self.serial = boardlink.open_port(boardlink.check_port(port, "hil"), timeout_s=0.2)
        self._stop = False
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self.reboot()

    def _read(self):
        reader = boardlink.LineReader()
        while not self._stop:
            for text in reader.feed(self.serial.read(256)):
                self._add(text)

    def write(self, text):
        self.serial.write(text.encode())

    def reboot(self):
        since = self.mark()
        self.serial.write(b"\x03\x03\x04")  # interrupt, soft reset: main.py runs again
        self.wait_for(console.HOOK_READY, 30, since)

    @property
    def boots(self):
        return [line for _, line in self.lines if line.startswith(console.BOOT)]

    def close(self):
        self._stop = True
        self._t.join(2)
        self.serial.close()
