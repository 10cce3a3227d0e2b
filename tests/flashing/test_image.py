"""The factory image built with a stand-in MicroPython .bin and read back, by littlefs-python and
by real MicroPython's VfsLfs2."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract import exit_codes
from flashing import files, image, release, tools
from flashing.errors import FlashError

from flashing_cli import MICROPYTHON, ROOT, cli, stand_in_firmware


# ------------------------------------------------------------------ layout and factory image


def test_layout_numbers_agree():
    assert release.APP_OFFSET == 0x1000 and release.VFS_OFFSET == release.APP_END == 0x200000
    assert release.VFS_OFFSET + release.VFS_SIZE == release.FLASH_SIZE == 4 * 1024 * 1024
    assert release.BLOCK_COUNT == 512 and release.BLOCK_SIZE * release.BLOCK_COUNT == release.VFS_SIZE


def test_partition_table_is_read_from_the_bin(tmp_path):
    table = image.partitions(stand_in_firmware(tmp_path / "fw.bin").read_bytes())
    assert [p["label"] for p in table] == ["nvs", "phy_init", "factory"]
    assert table[-1]["offset"] + table[-1]["size"] == release.VFS_OFFSET


@pytest.mark.parametrize("kind, match", [
    ("not_esp32", "no 0xE9 header"),
    ("other_end", "end at 0x180000"),
    ("own_vfs", "its own filesystem"),
])
def test_a_firmware_with_another_layout_is_refused(tmp_path, kind, match):
    fw = tmp_path / "fw.bin"
    if kind == "not_esp32":
        fw.write_bytes(b"\x7fELF" + bytes(5000))
    elif kind == "other_end":
        stand_in_firmware(fw, end=0x180000)
    else:
        stand_in_firmware(fw, extra=[(b"vfs", 1, 0x81, 0x200000, 0x200000)])
    with pytest.raises(FlashError, match=match) as e:
        image.check_layout(fw)
    assert e.value.code == exit_codes.BAD_INPUT


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One factory image through the CLI, with a stand-in .bin and a device bundle."""
    tmp = tmp_path_factory.mktemp("image")
    fw = stand_in_firmware(tmp / "stand-in.bin")
    bundle = tmp / "bundle"
    bundle.mkdir()
    for n in files.BOARD_FILES:
        (bundle / n).write_bytes(os.urandom(300) if n != "config.json" else b'{"thing": "m1"}')
    out = tmp / "flash-4MB.bin"
    r = cli("image", "--firmware", str(fw), "--bundle", str(bundle), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), fw, bundle, out


def test_image_offsets(built):
    info, fw, _, out = built
    img = out.read_bytes()
    app = fw.read_bytes()
    assert len(img) == release.FLASH_SIZE == info["size"]
    assert img[:release.APP_OFFSET] == b"\xff" * release.APP_OFFSET  # what erase-flash leaves
    assert img[release.APP_OFFSET:release.APP_OFFSET + len(app)] == app
    assert set(img[release.APP_OFFSET + len(app):release.VFS_OFFSET]) == {0xFF}
    assert info["vfs_offset"] == release.VFS_OFFSET and info["vfs_blocks"] == 512
    assert not list(out.parent.glob("*.littlefs.bin"))  # the intermediate is cleaned up


def test_image_files_read_back_with_littlefs_python(built):
    info, _, bundle, out = built
    got = image.read_back(out.read_bytes()[release.VFS_OFFSET:])
    assert sorted(got) == info["files"]
    assert "main.py" in got and "motorguard/app.mpy" in got and "device.key.der" in got
    for name in files.BOARD_FILES:
        assert got[name] == (bundle / name).read_bytes(), name
    for name in got:
        if name.endswith(".mpy"):
            assert got[name][:2] == b"M\x06", name  # an .mpy of the format MicroPython 1.26 loads
    assert got["main.py"] == (ROOT / "firmware" / "main.py").read_bytes()


MOUNT_SCRIPT = """
import vfs, hashlib, binascii
class Flash:
    def __init__(self, path):
        self.f = open(path, 'rb')
    def readblocks(self, n, buf, off=0):
        self.f.seek(%(vfs)d + n * %(bs)d + off)
        self.f.readinto(buf)
    def writeblocks(self, n, buf, off=None):
        raise OSError(30)
    def ioctl(self, op, arg):
        if op == 4: return %(count)d
        if op == 5: return %(bs)d
        return 0
fs = vfs.VfsLfs2(Flash(%(path)r))
vfs.mount(fs, '/flash', readonly=True)
def walk(d):
    for name, kind, *_ in vfs_ilistdir(d):
        p = d + '/' + name
        if kind == 0x4000: walk(p)
        else:
            h = hashlib.sha256()
            with open(p, 'rb') as f: h.update(f.read())
            print('SHA', p[len('/flash/'):], binascii.hexlify(h.digest()).decode())
import os
vfs_ilistdir = os.ilistdir
walk('/flash')
"""


def test_micropython_itself_mounts_the_image(built):
    """The unix MicroPython port mounts the partition with VfsLfs2's defaults, as the ESP32 will."""
    info, _, _, out = built
    script = MOUNT_SCRIPT % {"vfs": release.VFS_OFFSET, "bs": release.BLOCK_SIZE, "count": release.BLOCK_COUNT,
                             "path": str(out)}
    r = subprocess.run([MICROPYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seen = dict(line.split()[1:] for line in r.stdout.splitlines() if line.startswith("SHA "))
    want = {n: hashlib.sha256(b).hexdigest() for n, b in image.read_back(out.read_bytes()[release.VFS_OFFSET:]).items()}
    assert seen == want and sorted(seen) == info["files"]


def test_wokwi_config_image_has_no_keys(tmp_path):
    fw = stand_in_firmware(tmp_path / "fw.bin")
    out = tmp_path / "wokwi.bin"
    r = cli("image", "--firmware", str(fw), "--config", str(ROOT / "wokwi" / "config.json"), "--out", str(out),
            "--json")
    assert r.returncode == 0, r.stderr
    got = image.read_back(out.read_bytes()[release.VFS_OFFSET:])
    assert json.loads(got["config.json"]) == json.loads((ROOT / "wokwi" / "config.json").read_text())
    assert not [n for n in got if n.endswith((".der", ".pem"))]


def test_test_hook_image_enables_the_hook_and_leaves_the_bundle_alone(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "firmware"))
    from motorguard import config

    monkeypatch.setattr(tools, "BUILD", tmp_path / "build")
    fw = stand_in_firmware(tmp_path / "fw.bin")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for n in files.BOARD_FILES:
        (bundle / n).write_bytes(os.urandom(64))
    production = json.loads((ROOT / "firmware" / "config.example.json").read_text())
    assert not production.get("test_hook")
    (bundle / "config.json").write_text(json.dumps(production))
    done = image.build(tmp_path / "img.bin", fw, bundle, echo=lambda *_: None, test_hook=True)
    got = image.read_back((tmp_path / "img.bin").read_bytes()[release.VFS_OFFSET:])
    cfg = config.parse(got["config.json"].decode())
    assert cfg["test_hook"] is True and done["test_hook"] is True
    assert cfg["control"]["remote_start_enabled"] is True  # the HIL tests start the motor over MQTT
    assert json.loads((bundle / "config.json").read_text()) == production  # the bundle is unchanged
    written = tmp_path / "build" / "test-hook-config.json"
    assert written.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FlashError, match="needs a config") as e:
        files.with_test_hook({"main.py": fw})
    assert e.value.code == exit_codes.BAD_INPUT


# ------------------------------------------------------------------ one image per flash size


def test_each_flash_size_has_its_own_filesystem_geometry():
    """MicroPython's vfs runs from the end of the app (0x200000) to the end of the physical flash."""
    want = {"4MB": 512, "8MB": 1536, "16MB": 3584}
    for size, blocks in want.items():
        geo = image.layout(size)
        assert geo["vfs_blocks"] == blocks and geo["vfs_offset"] == release.VFS_OFFSET
        assert geo["vfs_offset"] + geo["vfs_blocks"] * release.BLOCK_SIZE == geo["size"] == image.FLASH_SIZES[size]
    assert image.layout("4MB")["vfs_blocks"] == release.BLOCK_COUNT  # the pinned layout's own numbers
    with pytest.raises(FlashError, match="2MB") as e:
        image.layout("2MB")
    assert e.value.code == exit_codes.BAD_INPUT and "4MB, 8MB, 16MB" in e.value.hint


def bootable_stand_in(path):
    """The stand-in .bin with a real (tiny) ESP32 image as its bootloader, so esptool treats it as one
    and writes the flash size into its header, as it does with the MicroPython release."""
    from esptool.bin_image import ESP32FirmwareImage, ImageSegment

    boot = ESP32FirmwareImage()
    boot.entrypoint, boot.flash_size_freq, boot.append_digest = 0x40080000, 0x20, True
    segment = ImageSegment(0x3FFF0000, os.urandom(512))
    segment.name = ".dram0.data"
    boot.segments = [segment]
    boot.save(str(path) + ".boot")
    head = Path(str(path) + ".boot").read_bytes()
    data = bytearray(stand_in_firmware(path).read_bytes())
    data[:0x7000] = head + b"\xff" * (0x7000 - len(head))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def by_size(tmp_path_factory):
    """A 4 MB and an 8 MB image of the same files, through the CLI (--flash-size)."""
    tmp = tmp_path_factory.mktemp("sizes")
    fw = bootable_stand_in(tmp / "stand-in.bin")
    out = {}
    for size in ("4MB", "8MB"):
        path = tmp / ("flash-%s.bin" % size)
        r = cli("image", "--firmware", str(fw), "--config", str(ROOT / "wokwi" / "config.json"),
                "--flash-size", size, "--out", str(path), "--json")
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["flash_size"] == size and info["image"] == str(path)
        out[size] = (info, path.read_bytes())
    return out


def test_the_8mb_image_fills_8mb_and_says_so_in_its_header(by_size):
    import io

    from esptool.bin_image import ESP32FirmwareImage

    for size, code in (("4MB", 0x20), ("8MB", 0x30)):  # esptool's header codes for 4 and 8 MB
        info, img = by_size[size]
        assert len(img) == info["size"] == image.FLASH_SIZES[size]
        assert info["vfs_blocks"] == image.layout(size)["vfs_blocks"]
        assert img[release.APP_OFFSET + 3] & 0xF0 == code
        ESP32FirmwareImage(io.BytesIO(img[release.APP_OFFSET:])).verify()  # its SHA-256 redone, still valid
    assert by_size["4MB"][0]["files"] == by_size["8MB"][0]["files"]


def flash_of(img: bytes, size: str) -> bytes:
    """What a board with `size` of flash holds after `write-flash 0x0 img` on an erased chip."""
    n = image.FLASH_SIZES[size]
    return (img + b"\xff" * n)[:n]


def test_a_4mb_image_does_not_mount_on_an_8mb_board_and_the_8mb_image_does(by_size):
    from littlefs import LittleFSError

    _, img4 = by_size["4MB"]
    info8, img8 = by_size["8MB"]
    on_8mb = flash_of(img4, "8MB")[release.VFS_OFFSET:]  # the partition MicroPython registers: 1536 blocks
    with pytest.raises(LittleFSError, match="INVAL"):
        image.read_back(on_8mb)
    got = image.read_back(flash_of(img8, "8MB")[release.VFS_OFFSET:])
    assert sorted(got) == info8["files"]
    assert got == image.read_back(img4[release.VFS_OFFSET:])  # the same files, only the geometry differs
    with pytest.raises(LittleFSError):  # and the other way round: an 8 MB image cut to a 4 MB chip
        image.read_back(flash_of(img8, "4MB")[release.VFS_OFFSET:])


def test_micropython_refuses_a_4mb_image_on_an_8mb_board(by_size, tmp_path):
    """Real MicroPython's VfsLfs2 on a block device of the 8 MB board's vfs partition (1536 blocks)."""
    results = {}
    for size in ("4MB", "8MB"):
        flash = tmp_path / ("board-8MB-with-%s-image.bin" % size)
        flash.write_bytes(flash_of(by_size[size][1], "8MB"))
        script = MOUNT_SCRIPT % {"vfs": release.VFS_OFFSET, "bs": release.BLOCK_SIZE,
                                 "count": image.layout("8MB")["vfs_blocks"], "path": str(flash)}
        results[size] = subprocess.run([MICROPYTHON, "-c", script], capture_output=True, text=True, timeout=60)
    refused = results["4MB"]
    assert refused.returncode != 0  # the unix port prints the traceback on stdout
    assert "OSError: [Errno 22] EINVAL" in refused.stdout + refused.stderr  # vfs.VfsLfs2() itself refuses
    ok = results["8MB"]
    assert ok.returncode == 0, ok.stderr
    seen = sorted(line.split()[1] for line in ok.stdout.splitlines() if line.startswith("SHA "))
    assert seen == by_size["8MB"][0]["files"]


def test_the_16mb_image_gets_its_own_name(tmp_path, monkeypatch):
    monkeypatch.setattr(tools, "BUILD", tmp_path / "build")
    fw = stand_in_firmware(tmp_path / "fw.bin")
    done = image.build(firmware_path=fw, config=ROOT / "wokwi" / "config.json", echo=lambda *_: None,
                       flash_size="16MB")
    out = tmp_path / "build" / "flash-16MB.bin"
    assert done["image"] == str(out) and out.stat().st_size == 16 * 1024 * 1024 and done["vfs_blocks"] == 3584
    assert "config.json" in image.read_back(out.read_bytes()[release.VFS_OFFSET:])
