"""make image: one factory image build/flash-4MB.bin, flashable with a single `write-flash 0x0`.

    0x000000  0xFF (what erase-flash leaves)
    0x001000  the MicroPython .bin (bootloader, partition table at 0x8000, app at 0x10000)
    0x200000  littlefs (VfsLfs2 geometry, release.py) holding the compiled firmware [+ bundle/config]
    0x400000  end (4 MB)
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from contract import exit_codes
from flashing import files, firmware, release, tools
from flashing.errors import FlashError

PARTITION_TABLE = 0x8000
_ENTRY = struct.Struct("<2sBBII16sI")  # magic 0xAA50, type, subtype, offset, size, label, flags


def partitions(fw_bytes: bytes) -> list[dict]:
    """The ESP-IDF partition table inside a .bin written at APP_OFFSET (empty if there is none)."""
    start = PARTITION_TABLE - release.APP_OFFSET
    out = []
    for pos in range(start, min(len(fw_bytes), start + 0xC00) - _ENTRY.size + 1, _ENTRY.size):
        magic, ptype, sub, off, size, label, _ = _ENTRY.unpack_from(fw_bytes, pos)
        if magic != b"\xaa\x50":
            break
        out.append({"label": label.rstrip(b"\0").decode(errors="replace"), "type": ptype, "subtype": sub,
                    "offset": off, "size": size})
    return out


def check_layout(fw: Path) -> None:
    """Refuses a .bin whose partitions end anywhere but VFS_OFFSET: MicroPython would put its
    filesystem elsewhere and our littlefs image would never mount."""
    data = fw.read_bytes()
    if data[:1] != b"\xe9":
        raise FlashError("%s is not an ESP32 firmware image (no 0xE9 header)" % fw,
                         "FIRMWARE= must be the MicroPython ESP32_GENERIC .bin", exit_codes.BAD_INPUT)
    table = partitions(data)
    if not table:
        raise FlashError("%s has no partition table at %#x" % (fw, PARTITION_TABLE),
                         "use the MicroPython ESP32_GENERIC .bin meant for 0x1000", exit_codes.BAD_INPUT)
    if any(p["label"] in ("vfs", "ffat") for p in table):
        raise FlashError("%s defines its own filesystem partition" % fw,
                         "use ESP32_GENERIC %s (flashing/release.py pins its layout)" % release.VERSION,
                         exit_codes.BAD_INPUT)
    end = max(p["offset"] + p["size"] for p in table)
    if end != release.VFS_OFFSET:
        raise FlashError("%s's partitions end at %#x, not %#x: its filesystem would not be where the image "
                         "puts it" % (fw, end, release.VFS_OFFSET),
                         "use ESP32_GENERIC %s, or update the layout in flashing/release.py" % release.VERSION,
                         exit_codes.BAD_INPUT)
    if release.APP_OFFSET + len(data) > release.VFS_OFFSET:
        raise FlashError("%s is too large to end before %#x" % (fw, release.VFS_OFFSET), "", exit_codes.BAD_INPUT)


def new_fs(mount=True):
    from littlefs import LittleFS

    return LittleFS(block_size=release.BLOCK_SIZE, block_count=release.BLOCK_COUNT, read_size=release.LFS_READ_SIZE,
                    prog_size=release.LFS_PROG_SIZE, lookahead_size=release.LFS_LOOKAHEAD,
                    disk_version=release.LFS_DISK_VERSION, mount=mount)


def littlefs_image(board_files: dict) -> bytes:
    fs = new_fs()
    for name, src in board_files.items():
        parent = os.path.dirname(name)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(name, "wb") as f:
            f.write(Path(src).read_bytes())
    fs.unmount()
    data = bytes(fs.context.buffer)
    assert len(data) == release.VFS_SIZE
    return data


def read_back(vfs_bytes: bytes) -> dict[str, bytes]:
    """Every file in a littlefs partition image, as MicroPython will see it."""
    fs = new_fs(mount=False)
    fs.context.buffer = bytearray(vfs_bytes)
    fs.mount()
    out = {}
    for root, _dirs, names in fs.walk("/"):
        for n in names:
            path = (root.rstrip("/") + "/" + n).lstrip("/")
            with fs.open(path, "rb") as f:
                out[path] = f.read()
    return out


def build(out=None, firmware_path=None, bundle=None, config=None, compiled=None, echo=print, test_hook=False) -> dict:
    """Writes the factory image; returns what went in (for --json and the tests)."""
    fw = firmware.obtain(firmware_path, echo=echo)
    check_layout(fw)
    compiled = Path(compiled) if compiled else files.compile_firmware()
    board = files.board_files(compiled, bundle, config)
    if test_hook:
        board = files.with_test_hook(board)
    out = Path(out or tools.BUILD / "flash-4MB.bin")
    out.parent.mkdir(parents=True, exist_ok=True)
    vfs = out.with_name(out.stem + ".littlefs.bin")
    vfs.write_bytes(littlefs_image(board))
    tools.run_tool(tools.esptool("--chip", release.CHIP, "merge-bin", "--output", str(out), "--flash-size", "4MB",
                                 "--pad-to-size", "4MB", hex(release.APP_OFFSET), str(fw),
                                 hex(release.VFS_OFFSET), str(vfs)), "esptool merge-bin")
    vfs.unlink()
    if out.stat().st_size != release.FLASH_SIZE:
        raise FlashError("merge-bin wrote %d bytes, expected %d" % (out.stat().st_size, release.FLASH_SIZE),
                         "check the esptool version (v5 needed)", exit_codes.TOOL_FAILED)
    return {"image": str(out), "size": release.FLASH_SIZE, "firmware": str(fw), "app_offset": release.APP_OFFSET,
            "vfs_offset": release.VFS_OFFSET, "vfs_blocks": release.BLOCK_COUNT, "block_size": release.BLOCK_SIZE,
            "files": sorted(board), "test_hook": bool(test_hook)}
