"""What can go wrong while provisioning, as one line, a hint, and an exit code scripts can rely on.

The numbers are MotorGuard's one exit-code table, contract/exit_codes.py (listed in docs/cli.md and
in `provision --help`). The names below are that table's, imported for the many provisioning
modules that raise with them; this module defines none of its own.
"""

from contract.exit_codes import (  # noqa: F401 - re-exported: provisioning's modules import them from here
    ACCESS_DENIED,
    BAD_INPUT,
    BROKER_MISSING,
    CHECK_FAILED,
    CONFLICT,
    MPREMOTE_MISSING,
    NO_CREDENTIALS,
    NOT_FOUND,
    OK,
    PORT_ABSENT,
    PORT_DENIED,
    PORT_UNUSABLE,
    SERVICE_ERROR,
    UNEXPECTED,
)

# Every code `provision` exits with (its --help lists them).
# A board's port is checked by boardlink, as the board tools check it: the same three codes.
CODES = (OK, UNEXPECTED, BAD_INPUT, CONFLICT, NO_CREDENTIALS, ACCESS_DENIED, PORT_ABSENT, PORT_DENIED, PORT_UNUSABLE,
         MPREMOTE_MISSING, CHECK_FAILED, SERVICE_ERROR, NOT_FOUND, BROKER_MISSING)


class ProvisionError(Exception):
    """One clear line (what was wrong), a hint (what to do) and an exit code."""

    def __init__(self, message: str, hint: str = "", code: int = UNEXPECTED):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self):
        return self.message
