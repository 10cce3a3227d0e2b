"""Talking to a board over its serial port, the one place it is written: the port checks, finding
mpremote, the script that hashes files on the board, opening the port and reading its console
lines. flashing (make flash, deploy, console), provisioning (provision device --port, rotate
--port), the hardware-in-the-loop boards and the virtual board's console all use it; it imports
contract only.

    boardlink.check_port(port, "deploy")    # refuses a port that cannot work: BoardError
    boardlink.mpremote("connect", port, "exec", script)
    boardlink.VERIFY_SCRIPT % (names,), boardlink.parse_hashes(output)
    s = boardlink.open_port(port)            # 115200 baud, the board not reset by opening it
    for line in boardlink.read_lines(s, 30): ...
    lines = boardlink.LineReader(); lines.feed(chunk) -> the lines it completed

A BoardError carries a message, a hint and an exit code of contract/exit_codes.py; each tool
raises it on as its own error type, so both report a missing port, a denied one or a missing
mpremote the same way, with the same code.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
from pathlib import Path

from contract import exit_codes

DIALOUT_HINT = "sudo usermod -aG dialout $USER, then log out and in again (or run once with sudo)"
BUSY_HINT = ("close other programs using the port (make console, screen, Thonny); if the board does not "
             "answer, hold BOOT while it connects, or check the cable")
BAUD = 115200  # the ESP32 port's REPL UART (and so the firmware's console)


class BoardError(Exception):
    def __init__(self, message: str, hint: str, code: int):
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code


def check_port(port, command="flash") -> str:
    """Refuses, before any tool runs, a port that cannot work (command: the make target to name in
    the hint). Ports that are not paths (COM3, rfc2217://host:port, socket://...) go straight to
    the tool, which reports its own errors."""
    if not port:
        raise BoardError("no serial port given",
                         "make %s PORT=/dev/ttyUSB0 (list ports: ls /dev/ttyUSB* /dev/ttyACM*, or mpremote devs)"
                         % command, exit_codes.NO_PORT)
    if not port.startswith("/"):
        return port
    try:
        mode = os.stat(port).st_mode
    except FileNotFoundError:
        raise BoardError("serial port %s does not exist" % port,
                         "plug the board in (with a data cable, not a charge-only one), then: "
                         "ls /dev/ttyUSB* /dev/ttyACM*", exit_codes.PORT_ABSENT) from None
    except PermissionError:
        raise BoardError("permission denied on %s" % port, DIALOUT_HINT, exit_codes.PORT_DENIED) from None
    if not stat.S_ISCHR(mode):
        raise BoardError("%s is not a serial device" % port,
                         "PORT must be the board's serial device, e.g. /dev/ttyUSB0 or /dev/ttyACM0",
                         exit_codes.PORT_UNUSABLE)
    if not os.access(port, os.R_OK | os.W_OK):
        raise BoardError("permission denied on %s" % port, DIALOUT_HINT, exit_codes.PORT_DENIED)
    return port


def mpremote_path() -> str:
    """mpremote: $MOTORGUARD_MPREMOTE, else next to this Python (make setup installs it there),
    else on PATH; BoardError when none exists."""
    exe = os.environ.get("MOTORGUARD_MPREMOTE") or str(Path(sys.executable).with_name("mpremote"))
    if not Path(exe).exists():
        exe = shutil.which("mpremote") or exe
    if not Path(exe).exists():
        raise BoardError("mpremote is not installed", "pip install mpremote (make setup installs it)",
                         exit_codes.MPREMOTE_MISSING)
    return exe


def mpremote(*args) -> list[str]:
    return [mpremote_path(), *args]


VERIFY_SCRIPT = (  # runs on the board: prints 'SHA <name> <hex>' per file
    "import hashlib,binascii\n"
    "for n in %r:\n"
    "    h=hashlib.sha256()\n"
    "    f=open(n,'rb')\n"
    "    while True:\n"
    "        b=f.read(512)\n"
    "        if not b: break\n"
    "        h.update(b)\n"
    "    f.close()\n"
    "    print('SHA', n, binascii.hexlify(h.digest()).decode())\n"
)


def parse_hashes(output: str) -> dict:
    """{name: sha256 hex} from VERIFY_SCRIPT's output."""
    out = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "SHA":
            out[parts[1]] = parts[2]
    return out


# ------------------------------------------------------------------ the console, line by line


def open_port(port: str, timeout_s: float = 0.1):
    """The board's serial port, open at BAUD with DTR and RTS released: on the usual USB-serial
    bridge those two lines drive EN and GPIO0, so holding either would reset the board or keep it in
    its ROM loader. timeout_s: how long one read waits. BoardError (PORT_UNUSABLE) when it will not
    open (busy, gone)."""
    import serial  # pyserial, which esptool and mpremote bring; imported late: only a real board needs it

    s = serial.Serial()
    s.port, s.baudrate, s.timeout = port, BAUD, timeout_s
    s.dtr = s.rts = False
    try:
        s.open()
    except (OSError, serial.SerialException) as e:
        raise BoardError("cannot open %s (%s)" % (port, e), BUSY_HINT, exit_codes.PORT_UNUSABLE) from None
    return s


def decode(raw: bytes) -> str:
    """One console line as text: undecodable bytes (noise at boot, the ROM's 74880-baud banner)
    replaced, never raised on; the line ending dropped."""
    return raw.decode("utf-8", "replace").rstrip("\r\n")


class LineReader:
    """Console lines out of a byte stream that comes in pieces: feed() takes a piece and returns the
    lines it completed; a partial line waits for its end (rest() hands it over when the stream
    ends). One reader per stream: the virtual board's stdout, a real board's serial port."""

    def __init__(self):
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        *done, self._pending = (self._pending + data).split(b"\n")
        return [decode(raw) for raw in done]

    def rest(self) -> str | None:
        """The unfinished last line (None if there is none), which the reader then forgets."""
        raw, self._pending = self._pending, b""
        return decode(raw) if raw else None


def read_lines(port, timeout_s: float, chunk: int = 256):
    """Yields the console lines read from an open port (open_port) until timeout_s has passed; the
    caller stops early by leaving the loop."""
    reader = LineReader()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        yield from reader.feed(port.read(chunk))


def read_until(port, ending: bytes, timeout_s: float) -> bytes:
    """Bytes from an open port until they end with ending (a prompt, which ends no line) or
    timeout_s passes: what came, so the caller can say what the board printed instead."""
    got = b""
    deadline = time.monotonic() + timeout_s
    while not got.endswith(ending) and time.monotonic() < deadline:
        got += port.read(1)
    return got
