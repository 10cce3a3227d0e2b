"""make deploy: compiled firmware + device bundle onto a board running MicroPython, checked by SHA-256
computed on the board, then a hard reset and the console followed until the device is online.

A board that already runs MotorGuard has its watchdog armed, and the ESP32's watchdog cannot be
stopped and survives a soft reset: mpremote's copy would be cut by a reset two seconds in. So a
deploy goes through maintenance mode (firmware/main.py):

  1. enter   Ctrl-C stops the firmware; in the raw REPL, within the watchdog's window, one short
             program writes the new main.py and maintenance.mpy and the file MAINTENANCE_FILE, then
             resets the board. It boots into maintenance: no watchdog, motor off, motorguard/ not
             imported.
  2. copy    mpremote makes the directories, copies every file and hashes each on the board.
  3. leave   the file is removed and the board reset: it boots the new firmware normally, and
             its console is followed until it says it is online.

An interrupted deploy leaves the file in place: the board stays in maintenance (motor off) until a
deploy finishes, never running a mix of old and new files.

The firmware's console lines (contract/console.py defines them) that deploy reads:
    MG MAINTENANCE ...       maintenance mode (step 1 waits for it)
    MG NET online            connected to the broker: done
    MG NET offline_mode      config says offline (e.g. the Wokwi config): done, nothing to wait for
    MG NET error <why>       a connection attempt failed; it retries, we keep the last one as the reason
    MG SAFE_MODE reason=...  the config is unusable: stop now and say why
"""

from __future__ import annotations

import os
import time

import boardlink
from boardlink import VERIFY_SCRIPT, parse_hashes
from contract import BOARD_FILES, CONFIG_FILE, console, exit_codes
from flashing import files, tools
from flashing.errors import FlashError

PREPARE_SCRIPT = (  # runs on the board: directories first (parents before children), stale sources out
    "import os\n"
    "for d in %r:\n"
    "    try: os.mkdir(d)\n"
    "    except OSError: pass\n"
    "for f in %r:\n"
    "    try: os.remove(f)\n"
    "    except OSError: pass\n"
)


def directories(board_files) -> list[str]:
    dirs = set()
    for name in board_files:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def copy_command(port: str, board_files: dict) -> list[str]:
    """One mpremote run (one connection): prepare, copy every file, hash every file on the board."""
    cmd = tools.mpremote("connect", port, "exec", PREPARE_SCRIPT % (directories(board_files),
                                                                     files.stale_sources(board_files)))
    for name, src in board_files.items():
        cmd += ["+", "fs", "cp", str(src), ":" + name]
    return cmd + ["+", "exec", VERIFY_SCRIPT % (list(board_files),)]


def mismatches(output: str, board_files: dict) -> list[str]:
    """Board paths whose on-board SHA-256 is missing or differs from the local file's."""
    got = parse_hashes(output)
    return [n for n, src in board_files.items() if got.get(n) != tools.sha256_file(src)]


def watch(lines, echo=print) -> str:
    """Reads console lines until the device says it is online (returns "online" or "offline_mode");
    raises NOT_ONLINE on safe mode, or when the lines run out (timeout) with the last reason seen."""
    last_problem = None
    for line in lines:
        line = line.rstrip()
        if console.parse(line) or line.startswith("Traceback") or "Error" in line:
            echo(line)
        if line.startswith(console.ONLINE):
            return "online"
        if line.startswith(console.OFFLINE_MODE):
            return "offline_mode"
        if line.startswith(console.SAFE_MODE):
            raise FlashError("the device booted into safe mode: %s" % line,
                             "fix the bundle's config.json (provision device ...), then make deploy again",
                             exit_codes.NOT_ONLINE)
        if line.startswith((console.NET_ERROR, console.CRASH, console.OFFLINE)) or "Error" in line:
            last_problem = line
    if last_problem:
        raise FlashError("the device did not come online; last problem: %s" % last_problem,
                         "MG NET error lines name the cause: Wi-Fi (ssid/password), DNS, TLS (certificate, "
                         "root-ca, clock) or the broker address in config.json", exit_codes.NOT_ONLINE)
    raise FlashError("the device printed no MG NET online before the timeout",
                     "watch it with make console PORT=...; is main.py on the board and Wi-Fi in range?",
                     exit_codes.NOT_ONLINE)


MAINTENANCE_FILE = "maintenance"  # firmware/main.py looks for it by this name (a test holds them equal)
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"

MAINTENANCE_CODE = ("main.py", "maintenance.mpy")  # what step 1 writes before the maintenance boot
ENTER_SCRIPT = (  # runs on the board inside the watchdog's window: ~2 KB, well under a second
    "import os\n"
    "def put(name,data):\n"
    "    f=open('new.tmp','wb')\n"
    "    f.write(data)\n"
    "    f.close()\n"
    "    os.rename('new.tmp',name)\n"  # littlefs renames atomically: the old file or the new one
    "for name,data in %r:\n"
    "    put(name,data)\n"
    "try: os.remove('maintenance.py')\n"  # an earlier source would shadow the .mpy
    "except OSError: pass\n"
    "put(%r,b'make deploy\\n')\n"
    "import machine\n"
    "machine.reset()\n"
)
LEAVE_SCRIPT = "import os\nos.remove(%r)\nimport machine\nmachine.reset()\n" % MAINTENANCE_FILE


RAW_REPL_TRIES = 3  # Ctrl-C and a raw REPL, again after a watchdog reset that came in between


def raw_session(port: str, script: str, timeout_s: float):
    """Stops whatever runs on the board (Ctrl-C), runs script in the raw REPL (no soft reset: the
    watchdog's clock is running) and yields the console lines that follow, the port kept open, until
    timeout_s. The script is expected to reset the board; the lines are its next boot's."""
    s = tools.open_port(port)
    with s:
        for _ in range(RAW_REPL_TRIES):
            s.write(b"\r\x03\x03")  # interrupt the firmware (twice: once may land in a handler)
            time.sleep(0.1)
            s.reset_input_buffer()
            s.write(b"\r\x01")  # raw REPL
            got = boardlink.read_until(s, RAW_PROMPT, 3.0)
            if got.endswith(RAW_PROMPT):
                break
            # No prompt: the interrupt may have come too late for the watchdog's window, which reset
            # the board (it then boots the firmware again, motor off): interrupt the new boot.
        if not got.endswith(RAW_PROMPT):
            raise FlashError("the board on %s does not answer with a raw REPL (it printed %r)" % (port, got[-80:]),
                             "is MicroPython on it (make flash)? press its EN button and run again",
                             exit_codes.PORT_UNUSABLE)
        data = script.encode()
        for i in range(0, len(data), 256):  # as mpremote does without raw paste: 256 bytes a time
            s.write(data[i : i + 256])
            time.sleep(0.01)
        s.write(b"\x04")
        if boardlink.read_until(s, b"OK", 2.0)[-2:] != b"OK":
            raise FlashError("the board on %s did not take the program" % port,
                             "run make deploy again; press the board's EN button if it persists",
                             exit_codes.PORT_UNUSABLE)
        yield from boardlink.read_lines(s, timeout_s)


def enter_maintenance(port: str, board: dict, timeout_s: float = 20.0, echo=print):
    """Step 1: the new main.py and maintenance.mpy (from board, {path on the board: local file}) and the
    maintenance file onto the board, then its maintenance boot."""
    script = ENTER_SCRIPT % ([(n, board[n].read_bytes()) for n in MAINTENANCE_CODE], MAINTENANCE_FILE)
    for line in raw_session(port, script, timeout_s):
        if line.startswith(console.MAINTENANCE):
            echo(line)
            return
        if "Error" in line:
            echo(line)
    raise FlashError("the board did not come up in maintenance mode within %d s" % timeout_s,
                     "watch it with make console PORT=...; then run make deploy again",
                     exit_codes.NOT_ONLINE)


def deploy(port, bundle=None, config=None, timeout_s=60.0, echo=print, test_hook=False, compiled=None,
           bundle_only=False) -> str:
    """The three steps above; returns "online" or "offline_mode". compiled: an existing compiled
    tree to deploy (tests), else the firmware is compiled into build/mpy. bundle_only: copy the
    bundle's files alone (a new identity, `provision device --port` and `provision rotate --port`),
    still through maintenance mode, whose own two files come along."""
    tools.check_port(port, "deploy")
    if bundle_only and not bundle:
        raise FlashError("--bundle-only needs --bundle", "name the bundle directory to copy", exit_codes.BAD_INPUT)
    compiled = compiled or files.compile_firmware()
    board = files.board_files(compiled, bundle, config)
    if bundle_only:
        board = {n: f for n, f in board.items() if n in BOARD_FILES or n in MAINTENANCE_CODE}
    if test_hook:
        board = files.with_test_hook(board)
        echo("test configuration: the HIL test hook is enabled (never deploy this to a machine in use)")
    if CONFIG_FILE not in board:
        echo("note: no BUNDLE given: the board keeps its current config.json and keys")
    echo("maintenance mode on %s: the firmware stops, the motor stays off, no watchdog" % port)
    enter_maintenance(port, board, echo=echo)
    echo("copying %d files to %s" % (len(board), port))
    out = tools.run_tool(copy_command(port, board), "mpremote (copy and verify)", timeout=300)
    bad = mismatches(out, board)
    if bad:
        raise FlashError("the board's copy differs for %s (it stays in maintenance mode, motor off)" % ", ".join(bad),
                         "run make deploy again; if it persists: make flash (erases the filesystem)",
                         exit_codes.VERIFY_FAILED)
    echo("all %d files verified by SHA-256 on the board; leaving maintenance (hard reset), following the "
         "console for %d s" % (len(board), timeout_s))
    return watch(raw_session(port, LEAVE_SCRIPT, timeout_s), echo)


def default_timeout() -> float:
    return float(os.environ.get("MOTORGUARD_ONLINE_TIMEOUT") or 90)
