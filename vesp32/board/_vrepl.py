# Virtual ESP32 serial REPL: what the chip runs on its UART once main.py has ended (or at once
# after a soft reset into the raw REPL), so that mpremote and `make deploy` can talk to the
# virtual board as they talk to a real one (the harness puts the console on a pseudo-terminal).
#
# The protocol is MicroPython's own (shared/runtime/pyexec.c):
#   friendly  Ctrl-A raw REPL, Ctrl-B banner, Ctrl-C cancel the line, Ctrl-D soft reset, Enter runs
#   raw       "raw REPL; CTRL-B to exit\r\n>"; bytes up to Ctrl-D are one program: "OK", its output,
#             Ctrl-D, its error, Ctrl-D, ">"; Ctrl-D on an empty program soft-resets ("OK\r\n");
#             Ctrl-E "A" Ctrl-A starts raw-paste mode (flow-controlled windows), as mpremote uses
# A soft reset restarts the board process (the harness) with reset cause SOFT_RESET, in the same
# REPL mode, and the watchdog keeps running through it, as the chip's does. Ctrl-C reaches a
# running program as KeyboardInterrupt: the harness turns the byte into SIGINT, which the unix
# port raises as the chip's UART interrupt does.

import sys
import time

import _vboard as _B
import _vselect

RAW_BANNER = "raw REPL; CTRL-B to exit\r\n"
FRIENDLY_BANNER = "MicroPython (vesp32) on the virtual ESP32; ESP32 module with ESP32\r\nType \"help()\" for more information.\r\n"
_WINDOW = 128  # raw-paste flow control: half of the port's 256-byte stdin buffer

_globals = {"__name__": "__main__"}


def _out(s):
    sys.stdout.write(s)


class _Input:
    """Bytes from the serial port, one at a time, while the board stays alive (harness input,
    timers, the watchdog's view of a board that does not feed it)."""

    def __init__(self):
        self.poller = _vselect._real.poll()
        self.poller.register(sys.stdin, _vselect._real.POLLIN)
        self.buf = sys.stdin.buffer

    def byte(self):
        while True:
            if self.poller.poll(5):
                b = self.buf.read(1)  # read(n) would wait for all n bytes
                if not b:
                    time.sleep_ms(5)  # stdin closed: nobody types any more
                    continue
                return b[0]
            _B.poll()


def _soft_reset(raw):
    _out("MPY: soft reboot\r\n")
    _B.reset(_B.SOFT_RESET, soft=True, repl="raw" if raw else "friendly")


def _execute(src, raw):
    """Runs one program; in raw mode frames its output and error with Ctrl-D as pyexec does."""
    try:
        exec(compile(src, "<stdin>", "exec"), _globals)
    except SystemExit:
        _soft_reset(raw)
    except BaseException as e:  # noqa: BLE001 - whatever the program raised goes to the host
        if raw:
            _out("\x04")
        sys.print_exception(e)
        if raw:
            _out("\x04")
        return
    if raw:
        _out("\x04\x04")


def _raw_paste(inp):
    """Raw-paste mode: the program arrives in windows the board grants; Ctrl-D ends it."""
    _out("R\x01")
    sys.stdout.buffer.write(bytes((_WINDOW & 0xFF, _WINDOW >> 8, 1)))  # bytes: a str would be UTF-8
    src = bytearray()
    remain = _WINDOW
    while True:
        c = inp.byte()
        if c == 3 or c == 4:
            _out("\x04")
            if c == 3:
                _out("\x04Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n\x04")
                return
            break
        src.append(c)
        remain -= 1
        if remain == 0:
            _out("\x01")
            remain = _WINDOW
    _execute(bytes(src), True)


def run(raw):
    """The REPL, forever (a reset or the harness ends the process)."""
    inp = _Input()
    line = bytearray()
    _out(RAW_BANNER + ">" if raw else FRIENDLY_BANNER + ">>> ")
    while True:
        try:
            c = inp.byte()
            if raw:
                if c == 1:  # Ctrl-A: a new raw prompt, or raw paste after Ctrl-E "A"
                    if len(line) == 2 and line[0] == 5:
                        if line[1] == 65:
                            _raw_paste(inp)
                        else:
                            _out("R\x00")
                    else:
                        _out(RAW_BANNER)
                    line = bytearray()
                    _out(">")
                elif c == 2:  # Ctrl-B: friendly REPL
                    raw = False
                    line = bytearray()
                    _out("\r\n" + FRIENDLY_BANNER + ">>> ")
                elif c == 3:
                    line = bytearray()
                elif c == 4:
                    _out("OK")
                    if not line:
                        _out("\r\n")
                        _soft_reset(True)
                    _execute(bytes(line), True)
                    line = bytearray()
                    _out(">")
                else:
                    line.append(c)
            else:
                if c == 1:
                    raw = True
                    line = bytearray()
                    _out("\r\n" + RAW_BANNER + ">")
                elif c == 2:
                    line = bytearray()
                    _out("\r\n" + FRIENDLY_BANNER + ">>> ")
                elif c == 3:
                    line = bytearray()
                    _out("\r\n>>> ")
                elif c == 4:
                    _out("\r\n")
                    _soft_reset(False)
                elif c == 13:
                    _out("\r\n")
                    if line:
                        _execute(bytes(line), False)
                    line = bytearray()
                    _out(">>> ")
                elif c != 10:
                    line.append(c)
                    _out(chr(c))  # the friendly REPL echoes what is typed
        except KeyboardInterrupt:
            line = bytearray()  # Ctrl-C at the prompt: the line is dropped
