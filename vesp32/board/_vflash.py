# The ESP32's flash as the firmware's files feel it: a write or an erase stalls the chip.
#
# ESP-IDF suspends task execution while the SPI flash is written or erased (the cache that code
# runs from is off; only IRAM interrupt handlers run), and splits a long erase into slices of at
# most CONFIG_SPI_FLASH_ERASE_YIELD_DURATION_MS (20 ms by default) between which tasks run. So
# here a write to a file blocks the interpreter for its pages' program time, every 4 KB written
# costs a sector erase of one 20 ms slice (littlefs takes a fresh block), closing a written file
# commits its metadata (one page), and a delete or rename costs an erase slice. The figures are
# a model (docs/virtual-esp32.md): the firmware may write only while its motor is stopped,
# which the backlog tests check from the stop latency, not from these numbers.
#
# A power cut in the middle of a write: the harness arms cut_after(n) and the board resets
# (power-on) after n more bytes reached the file, leaving a torn write behind.

import sys
import time

import builtins
import _vboard

PAGE = 256
PROGRAM_US = 1000  # a 256-byte page programmed, with the driver's overhead
ERASE_US = 20000  # one erase slice between the driver's yields
BLOCK = 4096

_open = builtins.open
_cut = -1  # bytes until a power cut, or -1
stalled_us = 0  # all the stalls so far (the harness reads it through the board's reports)


def stall(us):
    global stalled_us
    stalled_us += us
    time.sleep_us(us)  # blocks the interpreter: no soft IRQ, no task, as on the chip


def cut_after(n):
    global _cut
    _cut = int(n)


class _File:
    """A file opened for writing: the real one, stalling as the chip's flash does."""

    def __init__(self, f, size):
        self.f = f
        self.size = size

    def write(self, data):
        global _cut
        n = len(data)
        if _cut >= 0 and n > _cut:
            self.f.write(data[:_cut])
            self.f.close()
            _cut = -1
            _vboard.reset(_vboard.PWRON_RESET)  # the power went during this write
        if _cut >= 0:
            _cut -= n
        pages = (n + PAGE - 1) // PAGE
        erases = (self.size + n) // BLOCK - self.size // BLOCK
        self.size += n
        stall(pages * PROGRAM_US + erases * ERASE_US)
        return self.f.write(data)

    def close(self):
        self.f.close()
        stall(PROGRAM_US)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def _flash_open(path, mode="r", *args, **kw):
    f = _open(path, mode, *args, **kw)
    if "w" not in mode and "a" not in mode:
        return f
    size = 0
    if "a" in mode:
        try:
            size = _os.stat(path)[6]
        except OSError:
            pass
    return _File(f, size)


class _FlashOS:
    """os, with a delete or rename stalling for an erase slice."""

    def __getattr__(self, name):
        return getattr(_os, name)

    def remove(self, path):
        _os.remove(path)
        stall(ERASE_US)

    def rename(self, a, b):
        _os.rename(a, b)
        stall(ERASE_US)


import os as _os  # noqa: E402


def install():
    builtins.open = _flash_open
    sys.modules["os"] = _FlashOS()
