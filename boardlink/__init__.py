"""Talking to a board over its serial port, the one place it is written: the port checks, finding
mpremote, and the script that hashes files on the board. flashing (make flash, deploy, console)
and provisioning (provision device --port, rotate --port) both use it; it imports contract only.

    boardlink.check_port(port, "deploy")    # refuses a port that cannot work: BoardError
    boardlink.mpremote("connect", port, "exec", script)
    boardlink.VERIFY_SCRIPT % (names,), boardlink.parse_hashes(output)

A BoardError carries a message, a hint and an exit code of contract/exit_codes.py; each tool
raises it on as its own error type, so both report a missing port, a denied one or a missing
mpremote the same way, with the same code.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

from contract import exit_codes

DIALOUT_HINT = "sudo usermod -aG dialout $USER, then log out and in again (or run once with sudo)"


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
