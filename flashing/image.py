"""make image: one factory image per flash size, build/flash-<SIZE>.bin, flashable with a single
`write-flash 0x0`; with a port, the board's flash size is read first and a mismatch refused.

    0x000000  0xFF (what erase-flash leaves)
    0x001000  the MicroPython .bin (bootloader, partition table at 0x8000, app at 0x10000)
    0x200000  littlefs (VfsLfs2 geometry, release.py) holding the compiled firmware [+ bundle/config]
    end       4, 8 or 16 MB: the filesystem runs to the end of the flash

Why one image per size: MicroPython v1.26.1's ESP32_GENERIC has no filesystem row in its partition
table; at boot (ports/esp32/main.c, boardctrl_startup) it asks the flash chip for its physical size
and registers a "vfs" partition from the end of the last partition (0x200000) to the end of the
flash. littlefs keeps its block count in its superblock and refuses to mount when the partition has
another count (lfs2_mount: "Invalid block count"), so a 4 MB image on an 8 MB board boots into
"The filesystem appears to be corrupted" forever. 4 MB: 512 blocks, 8 MB: 1536, 16 MB: 3584.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

from contract import exit_codes
from flashing import files, firmware, release, tools
from flashing.errors import FlashError

PARTITION_TABLE = 0x8000
MB = 1024 * 1024
# The flash sizes an image can be built for (esptool's spelling). Below 4 MB there is no room for a
# filesystem after the 2 MB app; the original ESP32 addresses at most 16 MB of flash.
FLASH_SIZES = {"4MB": 4 * MB, "8MB": 8 * MB, "16MB": 16 * MB}
DEFAULT_FLASH_SIZE = "4MB"
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


def layout(flash_size: str = DEFAULT_FLASH_SIZE) -> dict:
    """Where the filesystem sits on a board with this much flash, as MicroPython will register it."""
    if flash_size not in FLASH_SIZES:
        raise FlashError("no factory image for a flash size of %r" % flash_size,
                         "choose one of %s (the board's size: esptool --chip esp32 --port PORT flash-id)"
                         % ", ".join(FLASH_SIZES), exit_codes.BAD_INPUT)
    size = FLASH_SIZES[flash_size]
    vfs_size = size - release.VFS_OFFSET
    return {"flash_size": flash_size, "size": size, "vfs_offset": release.VFS_OFFSET, "vfs_size": vfs_size,
            "vfs_blocks": vfs_size // release.BLOCK_SIZE}


def default_out(flash_size: str = DEFAULT_FLASH_SIZE) -> Path:
    return tools.BUILD / ("flash-%s.bin" % flash_size)


def new_fs(block_count=release.BLOCK_COUNT, mount=True):
    from littlefs import LittleFS

    return LittleFS(block_size=release.BLOCK_SIZE, block_count=block_count, read_size=release.LFS_READ_SIZE,
                    prog_size=release.LFS_PROG_SIZE, lookahead_size=release.LFS_LOOKAHEAD,
                    disk_version=release.LFS_DISK_VERSION, mount=mount)


def littlefs_image(board_files: dict, block_count=release.BLOCK_COUNT) -> bytes:
    fs = new_fs(block_count)
    for name, src in board_files.items():
        parent = os.path.dirname(name)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(name, "wb") as f:
            f.write(Path(src).read_bytes())
    fs.unmount()
    data = bytes(fs.context.buffer)
    assert len(data) == block_count * release.BLOCK_SIZE
    return data


def read_back(vfs_bytes: bytes) -> dict[str, bytes]:
    """Every file in a littlefs partition image, mounted as MicroPython mounts it: with the
    partition's own block count (its length), so an image made for another size fails here too."""
    fs = new_fs(len(vfs_bytes) // release.BLOCK_SIZE, mount=False)
    fs.context.buffer = bytearray(vfs_bytes)
    fs.mount()
    out = {}
    for root, _dirs, names in fs.walk("/"):
        for n in names:
            path = (root.rstrip("/") + "/" + n).lstrip("/")
            with fs.open(path, "rb") as f:
                out[path] = f.read()
    return out


def build(out=None, firmware_path=None, bundle=None, config=None, compiled=None, echo=print, test_hook=False,
          flash_size=DEFAULT_FLASH_SIZE) -> dict:
    """Writes the factory image for a board with `flash_size` of flash; returns what went in (for
    --json and the tests)."""
    geometry = layout(flash_size)
    fw = firmware.obtain(firmware_path, echo=echo)
    check_layout(fw)
    compiled = Path(compiled) if compiled else files.compile_firmware()
    board = files.board_files(compiled, bundle, config)
    if test_hook:
        board = files.with_test_hook(board)
    out = Path(out or default_out(flash_size))
    out.parent.mkdir(parents=True, exist_ok=True)
    vfs = out.with_name(out.stem + ".littlefs.bin")
    vfs.write_bytes(littlefs_image(board, geometry["vfs_blocks"]))
    # --flash-size also goes into the bootloader's header (esptool rewrites it in a valid image).
    tools.run_tool(tools.esptool("--chip", release.CHIP, "merge-bin", "--output", str(out), "--flash-size", flash_size,
                                 "--pad-to-size", flash_size, hex(release.APP_OFFSET), str(fw),
                                 hex(release.VFS_OFFSET), str(vfs)), "esptool merge-bin")
    vfs.unlink()
    if out.stat().st_size != geometry["size"]:
        raise FlashError("merge-bin wrote %d bytes, expected %d" % (out.stat().st_size, geometry["size"]),
                         "check the esptool version (v5 needed)", exit_codes.TOOL_FAILED)
    return {"image": str(out), "flash_size": flash_size, "size": geometry["size"], "firmware": str(fw),
            "app_offset": release.APP_OFFSET, "vfs_offset": release.VFS_OFFSET, "vfs_blocks": geometry["vfs_blocks"],
            "block_size": release.BLOCK_SIZE, "files": sorted(board), "test_hook": bool(test_hook)}


# ------------------------------------------------------------------ the board in hand

# esptool's flash-id prints this line (esptool/cmds.py print_flash_id, v4 and v5 alike);
# tests/flashing checks the phrase is still in the installed esptool.
_DETECTED_RE = re.compile(r"^Detected flash size:\s*(\S+)\s*$", re.M)


def parse_flash_size(output: str) -> str | None:
    """The flash size esptool flash-id detected ("4MB", "8MB", ...), or None when it printed
    "Unknown" or no such line."""
    m = _DETECTED_RE.search(output)
    if not m or m.group(1).lower() == "unknown":
        return None
    return m.group(1)


def board_flash_size(port: str, run=None) -> str:
    """Asks the board on `port` how much flash it has (esptool flash-id)."""
    args = tools.esptool("--chip", release.CHIP, "--port", port, "flash-id")
    out = (run or tools.run_tool)(args, "esptool flash-id", timeout=120)
    size = parse_flash_size(out)
    if size is None:
        line = next((ln.strip() for ln in out.splitlines() if "flash size" in ln.lower()),
                    "no 'Detected flash size' line")
        raise FlashError("esptool could not tell the flash size of the board on %s (%s)" % (port, line),
                         "check the cable and the board (a flash chip that does not answer reads as Unknown), "
                         "then try again; without a port, --flash-size builds the image to write by hand",
                         exit_codes.TOOL_FAILED)
    return size


def check_fits(flash_size: str, board_size: str, port: str) -> None:
    """Refuses an image for one flash size on a board with another: MicroPython would size its
    filesystem partition from the board's flash and never mount the image's littlefs."""
    if board_size not in FLASH_SIZES:
        raise FlashError("the board on %s has %s of flash; a factory image needs one of %s"
                         % (port, board_size, ", ".join(FLASH_SIZES)),
                         "use a board with 4, 8 or 16 MB of flash, or make flash + make deploy (no image)",
                         exit_codes.BAD_INPUT)
    if flash_size != board_size:
        raise FlashError("the image is for %s of flash but the board on %s has %s: MicroPython would make its "
                         "filesystem %d blocks, the image's has %d, and it would not mount"
                         % (flash_size, port, board_size, layout(board_size)["vfs_blocks"],
                            layout(flash_size)["vfs_blocks"]),
                         "build it for this board: --flash-size %s (or leave --flash-size out with --port)"
                         % board_size, exit_codes.BAD_INPUT)


def write(port: str, image_path, run=None, echo=print) -> None:
    """Writes a whole factory image at 0x0."""
    echo("writing %s to %s" % (Path(image_path).name, port))
    args = tools.esptool("--chip", release.CHIP, "--port", port, "write-flash", "0x0", str(image_path))
    (run or tools.run_tool)(args, "esptool write-flash", timeout=900)


def build_for_board(port, flash_size=None, run=None, echo=print, **build_args) -> dict:
    """The image for the board on `port`: its flash size read first (a --flash-size that differs is
    refused before anything is built or written), the image built for it, then written at 0x0."""
    tools.check_port(port, "image")
    board_size = board_flash_size(port, run)
    echo("the board on %s has %s of flash" % (port, board_size))
    check_fits(flash_size or board_size, board_size, port)
    done = build(flash_size=board_size, echo=echo, **build_args)
    write(port, done["image"], run, echo)
    return dict(done, port=port, board_flash_size=board_size)


def pin(firmware_path, data=release.PINNED) -> tuple[str, int]:
    """Records FILE's SHA-256 and size as the pinned release (in release.json, `data`), for a file
    you verified yourself; refuses one whose layout the factory image cannot use."""
    fw = Path(firmware_path)
    if not fw.is_file():
        raise FlashError("firmware file %s not found" % fw, "pass the .bin you verified", exit_codes.BAD_INPUT)
    check_layout(fw)
    digest, size = tools.sha256_file(fw), fw.stat().st_size
    release.record(digest, size, data)
    return digest, size
