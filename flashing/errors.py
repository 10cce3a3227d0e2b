"""The one error type of `python -m flashing`.

Every failure a user can cause or fix ends as one `error:` line and one `hint:` line on stderr and a
distinct exit code, so scripts (and make) can tell a missing board from a bad download. The codes
are MotorGuard's one exit-code table, contract/exit_codes.py (docs/cli.md).
"""

from __future__ import annotations

from contract import exit_codes

# Every code `python -m flashing` exits with (its --help lists them). `console` ends with TOOL_FAILED
# when mpremote fails.
CODES = (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.NO_PORT, exit_codes.PORT_ABSENT, exit_codes.PORT_DENIED,
         exit_codes.PORT_UNUSABLE, exit_codes.WRONG_CHIP, exit_codes.DOWNLOAD_FAILED, exit_codes.HASH_MISMATCH,
         exit_codes.TOOL_FAILED, exit_codes.VERIFY_FAILED, exit_codes.NOT_ONLINE)
INTERRUPTED = exit_codes.INTERRUPTED  # Ctrl-C (130), outside the table


class FlashError(Exception):
    """A failure the user can act on: message says what went wrong, hint what to do."""

    def __init__(self, message: str, hint: str = "", code: int = exit_codes.UNEXPECTED):
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code
