"""Exit codes of `python -m flashing` and the one error type that carries them.

Every failure a user can cause or fix ends as one `error:` line and one `hint:` line on stderr and a
distinct exit code, so scripts (and make) can tell a missing board from a bad download.
"""

from __future__ import annotations

OK = 0
UNEXPECTED = 1
BAD_INPUT = 2  # also argparse's code for a malformed command line
NO_PORT = 3
PORT_ABSENT = 4
PORT_DENIED = 5
PORT_UNUSABLE = 6
WRONG_CHIP = 7
DOWNLOAD_FAILED = 8
HASH_MISMATCH = 9
TOOL_FAILED = 10
VERIFY_FAILED = 11
NOT_ONLINE = 12

EXIT_CODES = {
    OK: "success",
    UNEXPECTED: "unexpected error (a bug: please report it with the output)",
    BAD_INPUT: "bad argument: missing firmware file, incomplete bundle, unusable layout",
    NO_PORT: "no serial port given (PORT=)",
    PORT_ABSENT: "the serial port does not exist (board unplugged?)",
    PORT_DENIED: "no permission to open the serial port (dialout group)",
    PORT_UNUSABLE: "the port is not a serial device, is busy, or the board does not answer",
    WRONG_CHIP: "the board is not an ESP32 (this firmware is for the original ESP32)",
    DOWNLOAD_FAILED: "the pinned MicroPython release could not be downloaded",
    HASH_MISMATCH: "the firmware file does not match the pinned SHA-256 (deleted)",
    TOOL_FAILED: "esptool or mpremote failed for another reason",
    VERIFY_FAILED: "a file on the board differs from the one sent",
    NOT_ONLINE: "deployed, but the device did not report online (or booted into safe mode)",
}


class FlashError(Exception):
    """A failure the user can act on: message says what went wrong, hint what to do."""

    def __init__(self, message: str, hint: str = "", code: int = UNEXPECTED):
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code
