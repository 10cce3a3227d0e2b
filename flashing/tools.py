"""What every command shares: paths, the serial-port checks, and running esptool/mpremote with their
failures turned into FlashErrors with exit codes."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import boardlink
from contract import exit_codes
from flashing.errors import FlashError

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"



def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def check_port(port, command="flash") -> str:
    """boardlink.check_port, as a FlashError."""
    try:
        return boardlink.check_port(port, command)
    except boardlink.BoardError as e:
        raise FlashError(e.message, e.hint, e.code) from None


def open_port(port):
    """boardlink.open_port, as a FlashError."""
    try:
        return boardlink.open_port(port)
    except boardlink.BoardError as e:
        raise FlashError(e.message, e.hint, e.code) from None


def esptool(*args) -> list[str]:
    return [sys.executable, "-m", "esptool", *args]


def mpremote(*args) -> list[str]:
    """boardlink.mpremote, as a FlashError when mpremote is missing."""
    try:
        return boardlink.mpremote(*args)
    except boardlink.BoardError as e:
        raise FlashError(e.message, e.hint, e.code) from None


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
    exit_codes.PORT_DENIED: boardlink.DIALOUT_HINT,
    exit_codes.PORT_UNUSABLE: boardlink.BUSY_HINT,
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
