"""The exit codes of every MotorGuard command-line tool, in one table without collisions.

`provision`, `python -m flashing`, `python -m vesp32`, the cloud tools and the benchmarks all exit
with these numbers, so a script (or make) can tell a missing board from a refused credential
whichever tool it ran. docs/cli.md lists them; a test holds that page and every tool to this table.
"""

import sys

OK = 0
UNEXPECTED = 1  # a bug: the message says how to get a traceback
BAD_INPUT = 2  # invalid argument or usage (argparse exits 2 for a malformed command line too)
CONFLICT = 3  # already exists in a different form (a name taken by another certificate)
NO_CREDENTIALS = 4  # no AWS credentials
ACCESS_DENIED = 5  # AWS refused the credentials' access
SERIAL_PORT = 6  # the serial port is absent, busy or not permitted
MPREMOTE_MISSING = 7  # mpremote is not installed
CHECK_FAILED = 8  # a connection check or verification step failed
SERVICE_ERROR = 9  # AWS or the local broker failed; what the run created was removed
NOT_FOUND = 10  # no such device or resource
BROKER_MISSING = 11  # Mosquitto is not installed
NO_PORT = 12  # no serial port given
PORT_ABSENT = 13  # the serial port does not exist (board unplugged?)
PORT_DENIED = 14  # no permission to open the serial port (dialout group)
PORT_UNUSABLE = 15  # not a serial device, busy, or the board does not answer
WRONG_CHIP = 16  # the board is not an ESP32
DOWNLOAD_FAILED = 17  # the pinned MicroPython release could not be downloaded
HASH_MISMATCH = 18  # a downloaded file does not match its pinned SHA-256
TOOL_FAILED = 19  # esptool, mpremote or mpy-cross failed for another reason
VERIFY_FAILED = 20  # a file on the board differs from the one sent
NOT_ONLINE = 21  # deployed, but the device did not report online (or booted into safe mode)
TARGET_MISSED = 22  # a benchmark ran, and a figure missed its target
SETUP_FAILED = 23  # a benchmark or simulator could not set itself up (broker, MicroPython)
# Ctrl-C: the shell's own number for a process ended by SIGINT (128 + 2).
INTERRUPTED = 130

MEANINGS = {
    OK: "success",
    UNEXPECTED: "unexpected error (a bug: report it with the output; provision --debug adds a traceback)",
    BAD_INPUT: "invalid input or usage",
    CONFLICT: "already exists in a different form (name taken by another certificate)",
    NO_CREDENTIALS: "no AWS credentials",
    ACCESS_DENIED: "access denied by AWS",
    SERIAL_PORT: "serial port absent, busy or not permitted",
    MPREMOTE_MISSING: "mpremote is not installed",
    CHECK_FAILED: "the connection check or a verification failed",
    SERVICE_ERROR: "AWS or the local broker failed (this run's resources were removed)",
    NOT_FOUND: "no such device",
    BROKER_MISSING: "Mosquitto is not installed",
    NO_PORT: "no serial port given (PORT=)",
    PORT_ABSENT: "the serial port does not exist (board unplugged?)",
    PORT_DENIED: "no permission to open the serial port (dialout group)",
    PORT_UNUSABLE: "the port is not a serial device, is busy, or the board does not answer",
    WRONG_CHIP: "the board is not an ESP32 (this firmware is for the original ESP32)",
    DOWNLOAD_FAILED: "the pinned MicroPython release could not be downloaded",
    HASH_MISMATCH: "the firmware file does not match the pinned SHA-256 (deleted)",
    TOOL_FAILED: "esptool, mpremote or mpy-cross failed for another reason",
    VERIFY_FAILED: "a file on the board differs from the one sent",
    NOT_ONLINE: "deployed, but the device did not report online (or booted into safe mode)",
    TARGET_MISSED: "a benchmark figure missed its target",
    SETUP_FAILED: "the benchmark or simulator could not set itself up",
    INTERRUPTED: "interrupted (Ctrl-C)",
}


def epilog(codes) -> str:
    """The 'exit codes' paragraph of a tool's --help, for the codes that tool can return."""
    return "exit codes:\n" + "\n".join("  %2d  %s" % (c, MEANINGS[c]) for c in sorted(codes))


def fail(message: str, hint: str = "", code: int = UNEXPECTED) -> int:
    """How every tool ends on an error it can name: one `error:` line, one `hint:` line (what to do)
    on stderr, and the code to exit with, returned."""
    print("error: %s" % message, file=sys.stderr)
    if hint:
        print("hint: %s" % hint, file=sys.stderr)
    return code
