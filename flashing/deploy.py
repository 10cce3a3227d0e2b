"""make deploy: compiled firmware + device bundle onto a board running MicroPython, checked by SHA-256
computed on the board, then a soft reset and the console followed until the device is online.

The firmware's console lines start with "MG " (firmware/motorguard/app.py and net.py):
    MG NET online            connected to the broker: done
    MG NET offline_mode      config says offline (e.g. the Wokwi config): done, nothing to wait for
    MG NET error <why>       a connection attempt failed; it retries, we keep the last one as the reason
    MG SAFE_MODE reason=...  the config is unusable: stop now and say why
"""

from __future__ import annotations

import os
import time

from contract import CONFIG_FILE, exit_codes
from flashing import files, tools
from flashing.errors import FlashError
from provisioning.bundle import VERIFY_SCRIPT, parse_hashes

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
        if line.startswith("MG ") or line.startswith("Traceback") or "Error" in line:
            echo(line)
        if line.startswith("MG NET online"):
            return "online"
        if line.startswith("MG NET offline_mode"):
            return "offline_mode"
        if line.startswith("MG SAFE_MODE"):
            raise FlashError("the device booted into safe mode: %s" % line,
                             "fix the bundle's config.json (provision device ...), then make deploy again",
                             exit_codes.NOT_ONLINE)
        if line.startswith(("MG NET error", "MG CRASH", "MG NET offline")) or "Error" in line:
            last_problem = line
    if last_problem:
        raise FlashError("the device did not come online; last problem: %s" % last_problem,
                         "MG NET error lines name the cause: Wi-Fi (ssid/password), DNS, TLS (certificate, "
                         "root-ca, clock) or the broker address in config.json", exit_codes.NOT_ONLINE)
    raise FlashError("the device printed no MG NET online before the timeout",
                     "watch it with make console PORT=...; is main.py on the board and Wi-Fi in range?",
                     exit_codes.NOT_ONLINE)


def serial_lines(port: str, timeout_s: float):
    """Soft-resets the board into main.py and yields its console lines until timeout_s."""
    import serial  # pyserial comes with esptool and mpremote

    s = serial.Serial()
    s.port, s.baudrate, s.timeout = port, 115200, 0.2
    s.dtr = s.rts = False  # both released: opening the port must not reset the board or hold it in ROM boot
    try:
        s.open()
    except (OSError, serial.SerialException) as e:
        raise FlashError("cannot open %s to follow the console (%s)" % (port, e),
                         tools.HINTS[exit_codes.PORT_UNUSABLE], exit_codes.PORT_UNUSABLE) from None
    with s:
        # Ctrl-C twice stops a running program, Ctrl-B leaves mpremote's raw REPL (main.py runs only
        # from the friendly REPL), Ctrl-D soft-resets.
        s.write(b"\r\x03\x03\x02")
        time.sleep(0.2)
        s.reset_input_buffer()
        s.write(b"\x04")
        deadline = time.monotonic() + timeout_s
        buf = b""
        while time.monotonic() < deadline:
            buf += s.read(256)
            *done, buf = buf.split(b"\n")
            for raw in done:
                yield raw.decode("utf-8", "replace")


def deploy(port, bundle=None, config=None, timeout_s=60.0, echo=print, test_hook=False) -> str:
    tools.check_port(port, "deploy")
    compiled = files.compile_firmware()
    board = files.board_files(compiled, bundle, config)
    if test_hook:
        board = files.with_test_hook(board)
        echo("test configuration: the HIL test hook is enabled (never deploy this to a machine in use)")
    if CONFIG_FILE not in board:
        echo("note: no BUNDLE given: the board keeps its current config.json and keys")
    echo("copying %d files to %s" % (len(board), port))
    out = tools.run_tool(copy_command(port, board), "mpremote (copy and verify)", timeout=300)
    bad = mismatches(out, board)
    if bad:
        raise FlashError("the board's copy differs for %s" % ", ".join(bad),
                         "run make deploy again; if it persists: make flash (erases the filesystem)",
                         exit_codes.VERIFY_FAILED)
    echo("all %d files verified by SHA-256 on the board; soft reset, following the console for %d s"
         % (len(board), timeout_s))
    return watch(serial_lines(port, timeout_s), echo)


def default_timeout() -> float:
    return float(os.environ.get("MOTORGUARD_ONLINE_TIMEOUT") or 90)
