"""What can go wrong while provisioning, as one line, a hint, and an exit code scripts can rely on."""

# Exit codes of the `provision` CLI (also listed in `provision --help` and docs/provisioning.md).
OK = 0
UNEXPECTED = 1
BAD_INPUT = 2  # also click's own code for usage errors
CONFLICT = 3  # the name is taken by another certificate / the thing exists differently
NO_CREDENTIALS = 4
ACCESS_DENIED = 5
SERIAL_PORT = 6  # absent, busy or not permitted
MPREMOTE_MISSING = 7
CHECK_FAILED = 8
SERVICE_ERROR = 9  # AWS or the local broker failed; what this run created was removed
NOT_FOUND = 10
BROKER_MISSING = 11

EXIT_CODES = {
    OK: "success",
    UNEXPECTED: "unexpected error (run again with --debug for a traceback)",
    BAD_INPUT: "invalid input or usage",
    CONFLICT: "already exists in a different form (name taken by another certificate)",
    NO_CREDENTIALS: "no AWS credentials",
    ACCESS_DENIED: "access denied by AWS",
    SERIAL_PORT: "serial port absent, busy or not permitted",
    MPREMOTE_MISSING: "mpremote is not installed",
    CHECK_FAILED: "the connection check failed",
    SERVICE_ERROR: "AWS or the local broker failed (this run's resources were removed)",
    NOT_FOUND: "no such device",
    BROKER_MISSING: "Mosquitto is not installed",
}


class ProvisionError(Exception):
    """One clear line (what was wrong), a hint (what to do) and an exit code."""

    def __init__(self, message: str, hint: str = "", code: int = UNEXPECTED):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self):
        return self.message
