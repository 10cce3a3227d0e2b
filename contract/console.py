"""The firmware's console lines: one fact a line on the serial console, `MG <WORD> ...`, which the
host tools wait on and parse (flashing's deploy, the demo, the virtual board's observations and
bench, the soak, the hardware-in-the-loop boards). Defined here once. The firmware prints them
through firmware/motorguard/base.py (log, say) from the words below, which it carries as literals:
tests/contract/test_console.py holds every line its source can print to this list, and the host
reads them only through parse() and the constants here.
"""

from __future__ import annotations

import re
from typing import NamedTuple

PREFIX = "MG"

# WORD -> what a line with it says
WORDS = {
    "BOOT": "a boot: version=, thing=, boot= (its id), cause= (the reset cause)",
    "STATE": "the motor's state, then event=<EVENT> or reason=<REASON> (a fault)",
    "START_REFUSED": "a start button press refused: reason=",
    "RESET_REFUSED": "a stop press that could not clear a fault: reason=",
    "NET": "a network step (NET_STEPS)",
    "CMD": "a remote command: its name, then result= or refused=",
    "BACKLOG": "the flash backlog: stored=, dropped=, drained, error",
    "CRASH": "a task or the firmware crashed (the motor is off, a reset follows)",
    "SAFE_MODE": "the config is missing or unusable: reason=, msg= (repeated, the board waits)",
    "MAINTENANCE": "maintenance mode: files are being replaced, motor and watchdog off",
    "HOOK": "the test hook's replies (test configurations only)",
}
# The second word of a NET line.
NET_STEPS = ("wifi_up", "time_synced", "online", "offline", "offline_mode", "error", "retry_in_ms",
             "deferred", "publish_failed")

ONLINE = "MG NET online"  # connected to the broker
OFFLINE = "MG NET offline"  # the connection was lost (also the start of "MG NET offline_mode")
OFFLINE_MODE = "MG NET offline_mode"  # the config says offline: there is nothing to wait for
NET_ERROR = "MG NET error"  # an attempt failed, and why
SAFE_MODE = "MG SAFE_MODE"
MAINTENANCE = "MG MAINTENANCE"
CRASH = "MG CRASH"
BOOT = "MG BOOT"
HOOK_READY = "MG HOOK ready"
BACKLOG_STORED = "MG BACKLOG stored="


class Line(NamedTuple):
    word: str  # BOOT, STATE, NET, ...
    args: tuple  # the words after it, key=value ones included as they are
    fields: dict  # the key=value words


def parse(text: str) -> Line | None:
    """A console line as (word, args, fields), or None for any other output (a traceback, the REPL)."""
    parts = text.split()
    if len(parts) < 2 or parts[0] != PREFIX or parts[1] not in WORDS:
        return None
    args = tuple(parts[2:])
    return Line(parts[1], args, dict(a.split("=", 1) for a in args if "=" in a))


_STATE = re.compile(r"^MG STATE (\S+)")


def state(text: str) -> str | None:
    """The state an `MG STATE` line reports (STOPPED, RUNNING, FAULT), or None."""
    m = _STATE.match(text)
    return m.group(1) if m else None
