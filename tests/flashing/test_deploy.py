"""The deploy steps a board would see, down to deploy following the console of the real firmware
booting on a virtual ESP32."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time

import pytest

from contract import exit_codes
from flashing import deploy, files
from flashing.errors import FlashError

from flashing_cli import MICROPYTHON, ROOT


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
