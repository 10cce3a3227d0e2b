"""Flashing tools without a board: every error path through the real CLI, the pinned download served
over HTTP and checked, the factory image built with a stand-in MicroPython .bin and read back (by
littlefs-python and by real MicroPython's VfsLfs2), and the deploy steps a board would see, down to
deploy following the console of the real firmware booting on a virtual ESP32."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from contract import exit_codes
from flashing import deploy, errors, files, firmware, flash, image, release, tools
from flashing.errors import FlashError

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


# ------------------------------------------------------------------ the command line


def test_help_teaches_commands_and_exit_codes():
    r = cli("--help")
    assert r.returncode == 0
    for word in ("flash", "deploy", "image", "console", "pin", "make flash PORT=", "docs/cli.md"):
        assert word in r.stdout
    listed = r.stdout.split("exit codes:\n", 1)[1]
    for code in errors.CODES:
        assert "%2d  %s" % (code, exit_codes.MEANINGS[code]) in listed


def test_no_flashing_code_means_something_else_to_provision():
    """3 once meant "no port" here and "conflict" to provision: the board codes are flashing's own."""
    from provisioning import errors as provisioning_errors

    shared = set(errors.CODES) & set(provisioning_errors.CODES)
    assert shared == {exit_codes.OK, exit_codes.BAD_INPUT}
    assert exit_codes.NO_PORT not in provisioning_errors.CODES and exit_codes.NO_PORT in errors.CODES


def test_no_port():
    r = cli("flash")
    assert r.returncode == exit_codes.NO_PORT and "no serial port" in r.stderr and "PORT=" in r.stderr


def test_absent_port():
    r = cli("flash", "--port", "/dev/ttyUSB-not-there")
    assert r.returncode == exit_codes.PORT_ABSENT and "does not exist" in r.stderr and "ls /dev/ttyUSB" in r.stderr


def test_a_file_is_not_a_serial_port(tmp_path):
    p = tmp_path / "ttyFAKE"
    p.write_text("")
    r = cli("deploy", "--port", str(p))
    assert r.returncode == exit_codes.PORT_UNUSABLE and "not a serial device" in r.stderr


def test_permission_denied_names_the_dialout_group(monkeypatch):
    # root may open anything, so the denial comes from the OS check we call (the one edge mocked here)
    monkeypatch.setattr(tools.os, "access", lambda *_: False)
    with pytest.raises(FlashError) as e:
        tools.check_port("/dev/null")
    assert e.value.code == exit_codes.PORT_DENIED and "dialout" in e.value.hint


def test_a_port_with_no_board_behind_it_fails_cleanly(tmp_path):
    master, slave = os.openpty()  # a real serial device that nothing answers on
    try:
        fw = stand_in_firmware(tmp_path / "fw.bin")
        r = cli("flash", "--port", os.ttyname(slave), "--firmware", str(fw))
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == exit_codes.PORT_UNUSABLE, r.stderr
    assert "Failed to connect to ESP32" in r.stderr and "hold BOOT" in r.stderr and "Traceback" not in r.stderr


def test_missing_firmware_file():
    r = cli("flash", "--port", "/dev/null", "--firmware", "/nowhere/fw.bin")
    assert r.returncode == exit_codes.BAD_INPUT and "not found" in r.stderr


def test_flash_erases_then_writes_at_0x1000(tmp_path):
    erase, write = flash.commands("/dev/ttyUSB0", tmp_path / "fw.bin")
    assert erase[-1] == "erase-flash" and "--chip" in erase and erase[erase.index("--chip") + 1] == "esp32"
    assert write[-3:] == ["write-flash", "0x1000", str(tmp_path / "fw.bin")]


def test_a_failing_console_is_a_tool_failure(tmp_path):
    fake = tmp_path / "mpremote"
    fake.write_text("#!/bin/sh\necho 'mpremote: failed to access the port' >&2\nexit 1\n")
    fake.chmod(0o755)
    master, slave = os.openpty()
    try:
        r = cli("console", "--port", os.ttyname(slave), env={"MOTORGUARD_MPREMOTE": str(fake)})
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == exit_codes.TOOL_FAILED, r.stderr
    assert "failed to access" in r.stderr and "ended with status 1" in r.stderr


def test_bundle_and_config_together_are_refused():
    r = cli("image", "--bundle", "x", "--config", "y")
    assert r.returncode == exit_codes.BAD_INPUT and "not both" in r.stderr


# ------------------------------------------------------------------ the pinned release


def test_the_release_is_pinned_in_one_place():
    assert len(release.SHA256) == 64 and int(release.SHA256, 16) >= 0
    assert release.SIZE > 1_000_000 and release.SHA256_SOURCE
    assert release.URL.endswith("/" + release.FILENAME) and release.VERSION in release.FILENAME
    # the offline hint tells a user what sha256sum must print
    with pytest.raises(FlashError) as e:
        firmware._download("http://127.0.0.1:9/" + release.FILENAME, Path("/nonexistent/x"))
    assert release.SHA256 in e.value.hint and "FIRMWARE=" in e.value.hint and e.value.code == exit_codes.DOWNLOAD_FAILED


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A local HTTP server with a file named like the release, and an empty download cache."""
    site = tmp_path / "site"
    site.mkdir()
    body = b"pretend micropython" * 100
    (site / release.FILENAME).write_bytes(body)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MOTORGUARD_FIRMWARE_CACHE", str(cache))

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(site), **kw)

        def log_message(self, *_):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/%s" % (httpd.server_address[1], release.FILENAME), body, cache
    httpd.shutdown()


def test_download_with_matching_hash_is_kept_and_reused(served):
    url, body, cache = served
    got = firmware.pinned(url=url, sha256=hashlib.sha256(body).hexdigest(), echo=lambda *_: None)
    assert got == cache / release.FILENAME and got.read_bytes() == body
    # cached: a second call does not need the server
    again = firmware.pinned(url="http://127.0.0.1:9/gone", sha256=hashlib.sha256(body).hexdigest(),
                            echo=lambda *_: None)
    assert again == got


def test_download_with_wrong_hash_is_refused_and_deleted(served):
    url, _, cache = served
    with pytest.raises(FlashError) as e:
        firmware.pinned(url=url, sha256="0" * 64, echo=lambda *_: None)
    assert e.value.code == exit_codes.HASH_MISMATCH and "deleted" in e.value.message
    assert not list(cache.glob("*"))


def test_the_real_pin_refuses_a_file_of_the_wrong_size_through_the_cli(served, tmp_path):
    url, _, cache = served
    r = cli("flash", "--port", "/dev/null", env={"MOTORGUARD_FIRMWARE_URL": url,
                                                  "MOTORGUARD_FIRMWARE_CACHE": str(cache)})
    assert r.returncode == exit_codes.HASH_MISMATCH and "bytes, expected %d" % release.SIZE in r.stderr
    assert not list(cache.glob("*.bin"))


def test_download_impossible_names_the_offline_route(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTORGUARD_FIRMWARE_CACHE", str(tmp_path))
    r = cli("flash", "--port", "/dev/null", env={"MOTORGUARD_FIRMWARE_URL": "http://127.0.0.1:9/x.bin",
                                                  "MOTORGUARD_FIRMWARE_CACHE": str(tmp_path)})
    assert r.returncode == exit_codes.DOWNLOAD_FAILED and "FIRMWARE=" in r.stderr and "cannot download" in r.stderr


def test_the_pinned_release_is_data_the_module_reads():
    pinned = json.loads((ROOT / "flashing" / "release.json").read_text())
    assert (release.VERSION, release.BOARD, release.FILENAME, release.URL, release.SIZE, release.SHA256,
            release.SHA256_SOURCE) == tuple(pinned[f] for f in release.FIELDS)


def test_pin_rewrites_hash_and_size_in_the_data_file(tmp_path):
    data = tmp_path / "release.json"
    shutil.copyfile(release.PINNED, data)
    before = release.load(data)
    fw = stand_in_firmware(tmp_path / "fw.bin")
    digest, size = firmware.pin(fw, data)
    assert digest == hashlib.sha256(fw.read_bytes()).hexdigest() and size == fw.stat().st_size
    after = release.load(data)
    assert (after["sha256"], after["size"]) == (digest, size)
    assert {k: v for k, v in after.items() if k not in ("sha256", "size")} == \
        {k: v for k, v in before.items() if k not in ("sha256", "size")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw.bin", "release.json"]  # no leftover temp file


def test_pin_refuses_a_file_with_another_layout_and_keeps_the_pin(tmp_path):
    data = tmp_path / "release.json"
    shutil.copyfile(release.PINNED, data)
    with pytest.raises(FlashError, match="end at 0x180000") as e:
        firmware.pin(stand_in_firmware(tmp_path / "fw.bin", end=0x180000), data)
    assert e.value.code == exit_codes.BAD_INPUT
    assert data.read_bytes() == release.PINNED.read_bytes()


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


# ------------------------------------------------------------------ deploy


def test_bundle_without_the_key_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FlashError, match="device.key.der") as e:
        files.board_files(tmp_path, tmp_path)
    assert e.value.code == exit_codes.BAD_INPUT


def test_unreadable_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(FlashError, match="not a readable JSON") as e:
        files.board_files(tmp_path, config=tmp_path / "config.json")
    assert e.value.code == exit_codes.BAD_INPUT


def test_deploy_plan_makes_directories_and_removes_shadowing_sources(tmp_path):
    board = {"main.py": tmp_path / "m", "motorguard/app.mpy": tmp_path / "a", "motorguard/x/y.mpy": tmp_path / "y",
             "config.json": tmp_path / "c"}
    assert deploy.directories(board) == ["motorguard", "motorguard/x"]
    assert files.stale_sources(board) == ["motorguard/app.py", "motorguard/x/y.py"]
    cmd = deploy.copy_command("/dev/ttyUSB0", board)
    assert cmd[1:4] == ["connect", "/dev/ttyUSB0", "exec"]
    copies = [cmd[i + 2] for i, a in enumerate(cmd) if a == "cp"]
    assert copies == [":" + n for n in board]
    assert cmd[-2] == "exec" and "SHA" in cmd[-1]


def test_the_prepare_script_runs_under_micropython(tmp_path):
    board = {"motorguard/app.mpy": tmp_path / "a", "main.py": tmp_path / "m"}
    (tmp_path / "motorguard").mkdir()
    (tmp_path / "motorguard" / "app.py").write_text("stale")
    script = deploy.PREPARE_SCRIPT % (deploy.directories(board), files.stale_sources(board))
    r = subprocess.run([MICROPYTHON, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "motorguard").is_dir() and not (tmp_path / "motorguard" / "app.py").exists()


def test_deploy_hash_check_names_the_differing_files(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    c.write_bytes(b"three")
    out = "SHA a %s\nSHA b %s\n" % (hashlib.sha256(b"one").hexdigest(), "f" * 64)
    assert deploy.mismatches(out, {"a": a, "b": b, "c": c}) == ["b", "c"]


def test_console_watch_outcomes():
    quiet = lambda *_: None  # noqa: E731
    assert deploy.watch(["boot", "MG BOOT x", "MG NET online broker=..."], quiet) == "online"
    assert deploy.watch(["MG NET offline_mode"], quiet) == "offline_mode"
    with pytest.raises(FlashError, match="safe mode") as e:
        deploy.watch(["MG SAFE_MODE reason=bad_config"], quiet)
    assert e.value.code == exit_codes.NOT_ONLINE
    with pytest.raises(FlashError, match="MG NET error tls") as e:
        deploy.watch(["MG NET error dns", "MG NET error tls"], quiet)
    assert e.value.code == exit_codes.NOT_ONLINE and "certificate" in e.value.hint
    with pytest.raises(FlashError, match="no MG NET online"):
        deploy.watch([], quiet)


def watch_a_virtual_board(device_dir, timeout_s):
    """Watches the real firmware boot on a virtual ESP32 whose flash is device_dir: deploy.watch of
    its console lines until timeout_s, as deploy follows a board's console after its soft reset."""
    from vesp32.harness import VirtualESP32

    def lines(vm):
        deadline, seen = time.monotonic() + timeout_s, 0
        while time.monotonic() < deadline:
            text = vm.text
            yield from text[seen:]
            seen = len(text)
            time.sleep(0.05)

    with VirtualESP32(device_dir, firmware_dir=ROOT / "firmware", proxy=False) as vm:
        return deploy.watch(lines(vm), lambda *_: None)


def board_with(tmp_path, config_text):
    (tmp_path / "flash").mkdir()
    (tmp_path / "flash" / "config.json").write_text(config_text)
    return tmp_path / "flash"


def test_deploy_sees_the_firmware_run_offline(tmp_path):
    board = board_with(tmp_path, (ROOT / "wokwi" / "config.json").read_text())
    assert watch_a_virtual_board(board, 20) == "offline_mode"


def test_deploy_sees_the_firmware_boot_into_safe_mode(tmp_path):
    board = board_with(tmp_path, "{not json")
    with pytest.raises(FlashError, match="safe mode: MG SAFE_MODE") as e:
        watch_a_virtual_board(board, 20)
    assert e.value.code == exit_codes.NOT_ONLINE


def test_deploy_names_the_firmware_s_connection_error(tmp_path):
    with socket.socket() as s:  # a port nothing listens on: the broker connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = {"thing": "fl-refused", "wifi": {"ssid": "lab", "password": "secret123"},
           "mqtt": {"host": "127.0.0.1", "port": port, "tls": False}}
    board = board_with(tmp_path, json.dumps(cfg))
    with pytest.raises(FlashError, match="last problem: MG NET error") as e:
        watch_a_virtual_board(board, 8)
    assert e.value.code == exit_codes.NOT_ONLINE


@pytest.mark.broker
def test_deploy_sees_the_firmware_come_online(tmp_path):
    """A provisioned bundle on the local broker: the line deploy waits for is the one the firmware prints."""
    from provisioning import local
    from cloud.local.broker import free_port

    home = tmp_path / "home"
    local.ca_init(home, free_port())
    broker = local.broker_start(home)
    try:
        bundle = local.provision_device(home, "fl-online", wifi_ssid="lab", wifi_password="secret123")["bundle"]
        assert watch_a_virtual_board(bundle, 30) == "online"
    finally:
        broker.stop()


def test_real_board_deploy():
    port = os.environ.get("MOTORGUARD_PORT")
    if not port:
        pytest.skip("needs an ESP32 running MicroPython: set MOTORGUARD_PORT=/dev/ttyUSB0 (and BUNDLE=dir)")
    assert deploy.deploy(port, os.environ.get("BUNDLE")) in ("online", "offline_mode")


# ------------------------------------------------------------------ tool failures


@pytest.mark.parametrize("output, code", [
    ("A fatal error occurred: This chip is ESP32-S3, not ESP32. Wrong --chip argument?", exit_codes.WRONG_CHIP),
    ("Could not open /dev/ttyUSB0, the port is busy or doesn't exist.", exit_codes.PORT_UNUSABLE),
    ("[Errno 13] Permission denied: '/dev/ttyUSB0'", exit_codes.PORT_DENIED),
    ("A fatal error occurred: Failed to connect to ESP32: No serial data received.", exit_codes.PORT_UNUSABLE),
    ("mpremote: failed to access /dev/ttyUSB0 (it may be in use by another program)", exit_codes.PORT_UNUSABLE),
    ("A fatal error occurred: Invalid head of packet (0x45)", exit_codes.TOOL_FAILED),
])
def test_tool_failures_are_named(output, code):
    script = "import sys; print(%r); sys.exit(2)" % output
    with pytest.raises(FlashError) as e:
        tools.run_tool([sys.executable, "-c", script], "esptool write-flash")
    assert e.value.code == code
    if code == exit_codes.WRONG_CHIP:
        assert "ESP32-S3, not an ESP32" in e.value.message


def test_the_phrases_we_match_are_still_in_esptool_and_mpremote():
    import esptool.loader
    import mpremote.commands
    import mpremote.transport_serial

    loader = inspect.getsource(esptool.loader)
    for phrase in ("This chip is {chip_type}, not {self.CHIP_NAME}", "the port is busy or doesn't exist",
                   "Failed to connect to {self.CHIP_NAME}", "No serial data received", "Wrong boot mode"):
        assert phrase in loader, phrase
    assert "failed to access" in inspect.getsource(mpremote.transport_serial)
    assert "no device found" in inspect.getsource(mpremote.commands)
