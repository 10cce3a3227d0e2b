"""The one pinned MicroPython release for the ESP32 and its flash layout: change them together.

The release itself (version, board, file name, URL, size, SHA-256 and where the hash comes from) is
data, in flashing/release.json next to this file: `python -m flashing pin` rewrites that file, and
this module reads it. The flash layout below is this module's, for that release.

Where each number comes from (checked for this tag):
- Layout: micropython/micropython at tag v1.26.1. ports/esp32/boards/sdkconfig.base selects
  partitions-4MiBplus.csv: nvs 0x9000+0x6000, phy_init 0xf000+0x1000, factory 0x10000+0x1F0000, so the
  app ends at 0x200000. There is no "vfs" row: ports/esp32/main.c registers a "vfs" partition from the
  end of the last partition to the end of the physical flash. On a 4 MB board: 0x200000..0x400000,
  512 blocks of 4096 (esp32.Partition's block size). The partition table inside the release .bin
  (file offset 0x7000 = flash 0x8000) says the same; tests/flashing checks that these numbers agree.
- littlefs: modules/_boot.py mounts the vfs partition as VfsLfs2; extmod/vfs_lfs.c gives VfsLfs2 its
  defaults readsize=32, progsize=32, lookahead=32; lib/littlefs is v2.11, on-disk version 2.1.
  A littlefs image whose block count differs from the partition's does not mount: the factory image
  fits 4 MB boards only.

The SHA-256: micropython.org publishes no checksums and this build machine cannot reach it. The value
in release.json is the SHA-256 of the file of this name committed to a public GitHub repository
(Matthew-Garcia/uhcl-lunar-hawks-lunabotics, blob eebdc3efbf44c97022710f6ed3753e6dab1ba488), checked
here: 1,734,416 bytes, and 1,137,589 bytes after zlib level 9, exactly the two sizes that esptool logs of
flashing this file onto two different boards report (public READMEs: "Wrote 1734416 bytes (1137589
compressed) at 0x00001000"); esptool image-info finds its checksum and appended validation hash valid;
it says "MicroPython v1.26.1 on 2025-09-11", ESP-IDF v5.4.2; its partition table is the layout above.
It is still a third-party copy, not a checksum published by MicroPython. The check fails safe: a copy
that was not genuine would make the genuine download be refused, never the reverse. If that happens,
compare the file yourself (sha256sum) and record it: python -m flashing pin --firmware path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PINNED = Path(__file__).with_name("release.json")
FIELDS = ("version", "board", "filename", "url", "size", "sha256", "sha256_source")


def load(path=PINNED) -> dict:
    """The pinned release as recorded in release.json (every one of FIELDS)."""
    data = json.loads(Path(path).read_text())
    missing = [f for f in FIELDS if f not in data]
    if missing:
        raise ValueError("%s lacks %s" % (path, ", ".join(missing)))
    return data


def record(sha256: str, size: int, path=PINNED) -> None:
    """Writes a verified file's SHA-256 and size into release.json (the only place they live),
    atomically; the other fields stay as they are."""
    path = Path(path)
    data = load(path)
    data.update(sha256=sha256, size=int(size))
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


_pinned = load()
VERSION = _pinned["version"]
BOARD = _pinned["board"]
FILENAME = _pinned["filename"]
URL = _pinned["url"]
SIZE = _pinned["size"]
SHA256 = _pinned["sha256"]
SHA256_SOURCE = _pinned["sha256_source"]

CHIP = "esp32"
APP_OFFSET = 0x1000  # bootloader first, then partition table (0x8000) and app (0x10000): all in the .bin
FLASH_SIZE = 4 * 1024 * 1024
APP_END = 0x200000  # factory partition 0x10000 + 0x1F0000
VFS_OFFSET = APP_END
VFS_SIZE = FLASH_SIZE - VFS_OFFSET
BLOCK_SIZE = 4096
BLOCK_COUNT = VFS_SIZE // BLOCK_SIZE  # 512

# VfsLfs2 as MicroPython mounts it (readsize, progsize, lookahead defaults; littlefs on-disk 2.1).
LFS_READ_SIZE = 32
LFS_PROG_SIZE = 32
LFS_LOOKAHEAD = 32
LFS_DISK_VERSION = 0x00020001
