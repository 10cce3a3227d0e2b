# Virtual ESP32 launcher: what the ROM bootloader and MicroPython's startup do
# on the chip, for the unix interpreter.
#
#   micropython -X heapsize=110K vesp32/board/vesp32_boot.py
#
# env: VESP32_CTRL=127.0.0.1:PORT (harness channel), VESP32_BOOT_CAUSE (1..5),
#      VESP32_FIRMWARE (dir holding main.py; default ../../firmware),
#      VESP32_DEVICE_DIR (the device's flash: config.json, certificates; default cwd),
#      VESP32_EXTRA_PATH (colon-separated dirs appended to sys.path, for tests),
#      VESP32_MAC (12 hex digits), VESP32_REPL ("raw": a soft reset from the raw REPL, so
#      main.py does not run and the board comes up in the raw REPL, as the chip does).
#
#      VESP32_HEAP_TARGET (bytes the firmware should see; the rest of -X heapsize,
#      the simulator's own footprint, is fenced off with a ballast block).
#
# sys.path becomes [board dir, firmware dir, firmware/lib, .frozen]: the
# simulated machine/network/ntptime come first (shadowing the unix built-in
# machine), the firmware next, then the interpreter's frozen asyncio. The
# working directory is the device dir, so open("config.json") finds the
# device's own file, as on the flash. Then boot.py (if any) and main.py run as
# __main__, exactly as the ESP32 runs them. When main.py ends the board sits at
# the REPL (_vrepl: outputs keep their state, nothing feeds the watchdog); SystemExit
# means a soft reboot.

import os
import sys


def _abs(p):
    if p.startswith("/"):
        return p
    cwd = os.getcwd()
    return cwd if p in ("", ".") else cwd + "/" + p


_board = _abs(__file__.rsplit("/", 1)[0] if "/" in __file__ else "")
_fw = _abs(os.getenv("VESP32_FIRMWARE") or _board + "/../../firmware")
_extra = [_abs(p) for p in (os.getenv("VESP32_EXTRA_PATH") or "").split(":") if p]
while sys.path:
    sys.path.pop()
for _p in [_board, _fw, _fw + "/lib", ".frozen"] + _extra:
    sys.path.append(_p)
os.chdir(_abs(os.getenv("VESP32_DEVICE_DIR") or ""))

# _vboard brings the rest of the simulator with it (_vwire, _vpins, _vtimers,
# _vplant), so all of it is loaded, and fenced off, before the firmware runs.
import _vboard  # noqa: E402  (connects to the harness and waits for its init)

_vboard.install_socket_shim()
import _vselect  # noqa: E402  (waits on the FreeRTOS tick: before the firmware imports asyncio)

_vselect.install()
import _vflash  # noqa: E402  (file writes and deletes stall the chip, as the flash does)

_vflash.install()
# On the chip these modules are built in and cost no heap; load them now so that
# what they cost here can be fenced off below.
import machine  # noqa: E402,F401
import network  # noqa: E402,F401
import ntptime  # noqa: E402,F401


def _fence(target):
    """Pin a ballast block so the firmware sees `target` bytes of heap, not
    target + what the simulator itself occupies (-X heapsize is target + reserve)."""
    import gc

    gc.collect()
    extra = gc.mem_free() - (target - 1024)  # ~1 KB: the bare interpreter's own use
    if extra <= 64:
        if extra < -1024:
            print("vesp32: heap reserve too small by %d bytes" % -extra)
        return None
    return bytearray(extra - 48)  # minus the block header and rounding


_ballast = _fence(int(os.getenv("VESP32_HEAP_TARGET"))) if os.getenv("VESP32_HEAP_TARGET") else None
_vboard.ready(len(_ballast) if _ballast else 0)


def _run(name):
    path = _fw + "/" + name
    try:
        os.stat(path)
    except OSError:
        return False
    with open(path) as f:
        src = f.read()
    code = compile(src, name, "exec")
    src = None
    exec(code, {"__name__": "__main__", "__file__": name})
    return True


def _boot():
    raw = os.getenv("VESP32_REPL") == "raw"
    try:
        _run("boot.py")
        if raw:
            why = "raw REPL"  # the port runs main.py only from the friendly REPL (ports/esp32/main.c)
        else:
            why = "returned" if _run("main.py") else "no main.py"
    except SystemExit:
        sys.stdout.write("MPY: soft reboot\r\n")
        _vboard.reset(_vboard.SOFT_RESET, soft=True, repl="friendly")
    except KeyboardInterrupt as e:  # Ctrl-C on the serial port (mpremote, make deploy)
        sys.print_exception(e)
        why = "KeyboardInterrupt"
    except BaseException as e:  # noqa: BLE001 - whatever main.py raised ends at the REPL
        sys.print_exception(e)
        why = "exception: " + repr(e)
    _vboard.halt(why, raw)


_boot()
