"""Flashing tools without a board: every error path through the real CLI, the hash check against a
download served over HTTP, and a factory image built and read back with littlefs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flashing import release, tools

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None):
    e = dict(os.environ)
    e.pop("PORT", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "flashing", *args], capture_output=True, text=True, cwd=ROOT, env=e)


def test_help_lists_commands_and_exit_codes():
    r = cli("--help")
    assert r.returncode == 0
    for word in ("flash", "deploy", "image", "console", "exit codes", "0x1000"):
        assert word in r.stdout


def test_no_port():
    r = cli("flash")
    assert r.returncode == tools.BAD_INPUT and "no serial port" in r.stderr and "PORT=" in r.stderr


def test_absent_port():
    r = cli("flash", "--port", "/dev/ttyUSB-not-there")
    assert r.returncode == tools.PORT_PROBLEM and "does not exist" in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens any file: the permission check cannot fail as root")
def test_port_without_permission(tmp_path):
    p = tmp_path / "ttyFAKE"
    p.write_text("")
    p.chmod(0)
    r = cli("flash", "--port", str(p))
    assert r.returncode == tools.PORT_PROBLEM and "dialout" in r.stderr


def test_port_that_is_not_a_board_fails_cleanly(tmp_path):
    p = tmp_path / "ttyNotABoard"
    p.write_text("")
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\xe9" + b"\x00" * 1000)
    r = cli("flash", "--port", str(p), "--firmware", str(fw))
    assert r.returncode in (tools.PORT_PROBLEM, tools.TOOL_FAILED) and "error:" in r.stderr
    assert "Traceback" not in r.stderr


def test_unpinned_release_is_refused_without_firmware():
    if release.SHA256:
        pytest.skip("a hash is pinned: the download path is exercised by the HTTP tests")
    with pytest.raises(tools.FlashError) as e:
        tools.firmware()
    assert e.value.code == tools.HASH_MISMATCH and "FIRMWARE=" in e.value.hint


@pytest.fixture
def served(tmp_path, monkeypatch):
    d = tmp_path / "www"
    d.mkdir()
    (d / release.FILENAME).write_bytes(b"pretend micropython" * 100)

    class H(SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(d), **k)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setattr(tools, "BUILD", tmp_path / "build")
    yield "http://127.0.0.1:%d/%s" % (httpd.server_address[1], release.FILENAME), d / release.FILENAME
    httpd.shutdown()


def test_download_with_matching_hash_is_kept(served):
    url, src = served
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    got = tools.firmware(url=url, sha256=good)
    assert got.read_bytes() == src.read_bytes()


def test_download_with_wrong_hash_is_refused_and_deleted(served):
    url, _ = served
    with pytest.raises(tools.FlashError) as e:
        tools.firmware(url=url, sha256="0" * 64)
    assert e.value.code == tools.HASH_MISMATCH and "deleted" in e.value.message
    assert not list((tools.BUILD / "firmware").glob("*.bin"))


def test_download_impossible_names_the_offline_route(tmp_path, monkeypatch):
    monkeypatch.setattr(tools, "BUILD", tmp_path / "build")
    with pytest.raises(tools.FlashError) as e:
        tools.firmware(url="http://127.0.0.1:9/nothing.bin", sha256="0" * 64)
    assert e.value.code == tools.DOWNLOAD and "FIRMWARE=" in e.value.hint


def test_layout_numbers_agree():
    assert release.APP_OFFSET == 0x1000
    assert release.VFS_OFFSET + release.VFS_SIZE == release.FLASH_SIZE == 4 * 1024 * 1024
    assert release.BLOCK_COUNT == 512 and release.BLOCK_SIZE * release.BLOCK_COUNT == release.VFS_SIZE


def test_factory_image_reads_back(tmp_path, monkeypatch):
    from littlefs import LittleFS

    monkeypatch.setattr(tools, "BUILD", tmp_path / "build")
    app = tmp_path / "stand-in-app.bin"
    app.write_bytes(bytes([0xE9]) + os.urandom(300_000))  # stands in for the MicroPython .bin
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for n in tools.BUNDLE_FILES:
        (bundle / n).write_bytes(os.urandom(200) if n != "config.json" else b'{"thing": "m1"}')
    compiled = tools.compile_firmware(tmp_path / "mpy")
    out = tools.build_image(tmp_path / "flash-4MB.bin", app, bundle, compiled)
    img = out.read_bytes()
    assert len(img) == release.FLASH_SIZE
    assert img[release.APP_OFFSET:release.APP_OFFSET + len(app.read_bytes())] == app.read_bytes()
    fs = LittleFS(block_size=release.BLOCK_SIZE, block_count=release.BLOCK_COUNT, prog_size=release.PROG_SIZE,
                  read_size=release.READ_SIZE, mount=False)
    fs.context.buffer = bytearray(img[release.VFS_OFFSET:])
    fs.mount()
    expected = tools.board_files(compiled, bundle)
    assert "main.py" in expected and "motorguard/app.mpy" in expected
    for name, src in expected.items():
        with fs.open(name, "rb") as f:
            assert f.read() == src.read_bytes(), name


def test_deploy_hash_check_names_the_differing_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    out = "SHA a %s\nSHA b %s\n" % (hashlib.sha256(b"one").hexdigest(), "f" * 64)
    assert tools.verify_hashes(out, {"a": a, "b": b}) == ["b"]


def test_bundle_without_the_key_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(tools.FlashError, match="device.key.der"):
        tools.board_files(tmp_path, tmp_path)


def test_real_board_deploy():
    port = os.environ.get("MOTORGUARD_PORT")
    if not port:
        pytest.skip("needs an ESP32 with MicroPython: set MOTORGUARD_PORT=/dev/ttyUSB0 and BUNDLE")
    assert tools.deploy(port, os.environ.get("BUNDLE"))


@pytest.mark.parametrize("output, code", [
    ("A fatal error occurred: This chip is ESP32-S3, not ESP32. Wrong --chip argument?", tools.WRONG_CHIP),
    ("could not open port '/dev/ttyUSB0': [Errno 16] Device or resource busy", tools.PORT_PROBLEM),
    ("[Errno 13] Permission denied: '/dev/ttyUSB0'", tools.PORT_PROBLEM),
    ("A fatal error occurred: Failed to connect to ESP32: No serial data received.", tools.TOOL_FAILED),
])
def test_esptool_failures_are_named(output, code):
    script = "import sys; print(%r); sys.exit(2)" % output
    with pytest.raises(tools.FlashError) as e:
        tools.run_tool([sys.executable, "-c", script], "write-flash")
    assert e.value.code == code
