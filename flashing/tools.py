"""What every command shares: paths, the serial-port checks, and running esptool/mpremote with their
failures turned into FlashErrors with exit codes."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from contract import exit_codes
from flashing.errors import FlashError

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"

DIALOUT_HINT = "sudo usermod -aG dialout $USER, then log out and in again (or run once with sudo)"


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def check_port(port, command="flash") -> str:
    """Refuses, before any tool runs, a port that cannot work. Ports that are not paths (COM3,
    rfc2217://host:port, socket://...) go straight to the tool, which reports its own errors."""
    if not port:
        raise FlashError("no serial port given",
                         "make %s PORT=/dev/ttyUSB0 (list ports: ls /dev/ttyUSB* /dev/ttyACM*, or mpremote devs)"
                         % command, exit_codes.NO_PORT)
    if not port.startswith("/"):
        return port
    try:
        mode = os.stat(port).st_mode
    except FileNotFoundError:
        raise FlashError("serial port %s does not exist" % port,
                         "plug the board in (with a data cable, not a charge-only one), then: "
                         "ls /dev/ttyUSB* /dev/ttyACM*", exit_codes.PORT_ABSENT) from None
    except PermissionError:
        raise FlashError("permission denied on %s" % port, DIALOUT_HINT, exit_codes.PORT_DENIED) from None
    if not stat.S_ISCHR(mode):
        raise FlashError("%s is not a serial device" % port,
                         "PORT must be the board's serial device, e.g. /dev/ttyUSB0 or /dev/ttyACM0",
                         exit_codes.PORT_UNUSABLE)
    if not os.access(port, os.R_OK | os.W_OK):
        raise FlashError("permission denied on %s" % port, DIALOUT_HINT, exit_codes.PORT_DENIED)
    return port


def esptool(*args) -> list[str]:
    return [sys.executable, "-m", "esptool", *args]


def mpremote(*args) -> list[str]:
    exe = os.environ.get("MOTORGUARD_MPREMOTE") or str(Path(sys.executable).with_name("mpremote"))
    if not Path(exe).exists():
        exe = shutil.which("mpremote") or exe
    return [exe, *args]


# esptool's own wording (esptool/loader.py, v5): tests/flashing checks these phrases are still there.
WRONG_CHIP_RE = re.compile(r"This chip is ([\w-]+), not ESP32\b")
FAILURES = [
    (WRONG_CHIP_RE, exit_codes.WRONG_CHIP),
    (re.compile(r"Permission denied", re.I), exit_codes.PORT_DENIED),
    (re.compile(r"port is busy or doesn't exist|could not open port|Device or resource busy", re.I),
     exit_codes.PORT_UNUSABLE),
    (re.compile(r"Failed to connect to ESP32|No serial data received|Wrong boot mode", re.I), exit_codes.PORT_UNUSABLE),
    (re.compile(r"no device found|failed to access", re.I), exit_codes.PORT_UNUSABLE),
]
HINTS = {
    exit_codes.WRONG_CHIP: "MotorGuard runs on the original ESP32 (e.g. ESP32-DevKitC / DevKit V1); check the board",
    exit_codes.PORT_DENIED: DIALOUT_HINT,
    exit_codes.PORT_UNUSABLE: "close other programs using the port (make console, screen, Thonny); if the board does "
                          "not answer, hold BOOT while it connects, or check the cable",
}


def classify(output: str) -> tuple[int, str]:
    """(exit code, the line that says why) for a failed esptool/mpremote run."""
    for pattern, code in FAILURES:
        m = pattern.search(output)
        if m:
            line = next((ln.strip() for ln in output.splitlines() if pattern.search(ln)), m.group(0))
            return code, line
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return exit_codes.TOOL_FAILED, (lines[-1] if lines else "no output")


def run_tool(args, what: str, timeout: float | None = None) -> str:
    """Runs a tool, returns its output; a failure becomes a FlashError with the matching exit code."""
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FlashError("%s did not finish within %d s" % (what, timeout),
                         "is the board still connected? try again, or run: %s" % " ".join(args),
                         exit_codes.PORT_UNUSABLE) from None
    out = (p.stdout or "") + (p.stderr or "")
    if p.returncode != 0:
        code, why = classify(out)
        if code == exit_codes.WRONG_CHIP:
            m = WRONG_CHIP_RE.search(out)
            raise FlashError("the board is an %s, not an ESP32" % m.group(1), HINTS[code], code)
        hint = HINTS.get(code) or "run it by hand to see everything: %s" % " ".join(args)
        raise FlashError("%s failed: %s" % (what, why), hint, code)
    return out


def console(port) -> None:
    """The board's serial REPL and log (mpremote repl) until Ctrl-]; mpremote prints its own reason
    when it fails, and the command then ends with TOOL_FAILED."""
    check_port(port, "console")
    status = subprocess.call(mpremote("connect", port, "repl"))
    if status != 0:
        raise FlashError("mpremote repl on %s ended with status %d" % (port, status),
                         HINTS[exit_codes.PORT_UNUSABLE], exit_codes.TOOL_FAILED)
