"""What the flashing tests share: the real `python -m flashing` command line, and a stand-in
MicroPython .bin with the ESP32's real partition layout."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from flashing import release

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON = shutil.which("micropython") or str(ROOT / ".venv" / "bin" / "micropython")


def cli(*args, env=None):
    e = dict(os.environ)
    for k in ("PORT", "FIRMWARE", "BUNDLE", "CONFIG"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "flashing", *args], capture_output=True, text=True, cwd=ROOT, env=e)


def stand_in_firmware(path, end=release.VFS_OFFSET, extra=()):
    """A .bin shaped like MicroPython's: 0xE9 header, and at flash 0x8000 (file 0x7000) the ESP-IDF
    partition table of partitions-4MiBplus.csv, whose last partition ends where the vfs starts."""
    rows = [(b"nvs", 1, 2, 0x9000, 0x6000), (b"phy_init", 1, 1, 0xF000, 0x1000),
            (b"factory", 0, 0, 0x10000, end - 0x10000), *extra]
    data = bytearray(b"\xe9" + os.urandom(0x7000 - 1))
    for label, ptype, sub, off, size in rows:
        data += struct.pack("<2sBBII16sI", b"\xaa\x50", ptype, sub, off, size, label, 0)
    data += b"\xff" * 0x20 + os.urandom(200_000)
    path.write_bytes(bytes(data))
    return path
