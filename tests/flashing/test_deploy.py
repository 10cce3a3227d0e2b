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
from flashing import compiler, deploy, files, tools
from flashing.errors import FlashError
from vesp32 import harness as H

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


# ------------------------------------------------------------------ deploy onto a board running MotorGuard
# The virtual board with a USB-serial port (a pseudo-terminal speaking MicroPython's REPL protocol), its
# flash holding an earlier install that runs and has armed the watchdog: real mpremote and the real
# deploy talk to it as to /dev/ttyUSB0, and its watchdog behaves as the chip's (survives a soft reset).

SERVO = 18


def earlier_install(flash, config):
    """An install from before maintenance mode existed: the firmware as source files and a main.py
    that just runs it (so the copy has every file to send, and stale sources to remove)."""
    import shutil

    shutil.copytree(ROOT / "firmware" / "motorguard", flash / "motorguard")
    (flash / "main.py").write_text("from motorguard import app, start\napp.run(start.main())\n")
    (flash / "config.json").write_text(json.dumps(config))
    return flash


@pytest.fixture
def running_board(tmp_path):
    from vesp32.bench import start_running
    from vesp32.harness import VirtualESP32

    made = []

    def make(baud=None):
        config = {"thing": "dep-1", "offline": True}
        flash = earlier_install(tmp_path / "flash", config)
        vm = VirtualESP32(flash, firmware_dir=flash, compile=False, proxy=False, heap="200K", serial=True,
                          serial_baud=baud)
        made.append(vm)
        vm.start()
        vm.wait_for_state("STOPPED", 15)
        vm.wait_until(lambda v: v.wdt_timeout_ms == 2000, 5, "the watchdog armed")
        start_running(vm)  # the motor runs when the deploy begins
        return vm, tmp_path / "config.json"

    (tmp_path / "config.json").write_text(json.dumps({"thing": "dep-1", "offline": True}))
    yield make
    for vm in made:
        vm.stop()


def test_a_plain_mpremote_copy_is_cut_by_the_watchdog(running_board, tmp_path):
    """What make deploy did before maintenance mode: mpremote interrupts the firmware and soft-resets
    the board to copy, but the watchdog survives the soft reset and resets the board 2 s later,
    in the middle of the copy (115200 baud, as a board's UART)."""
    vm, _ = running_board(baud=115200)
    compiled = tmp_path / "new"
    compiler.compile_tree(compiled)
    board = files.board_files(compiled)
    t0 = time.time_ns()
    with pytest.raises(FlashError):
        tools.run_tool(deploy.copy_command(vm.serial.path, board), "mpremote (copy and verify)", timeout=8)
    watchdog = [(t, why) for t, cause, why in vm.resets if cause == H.WDT_RESET]
    assert watchdog, vm.resets
    assert any(why == "soft reboot" for _, _, why in vm.resets)  # mpremote's; the watchdog went on
    assert (watchdog[0][0] - t0) / 1e9 < 4  # 2 s after the last feed, not after the copy
    shas = {n: tools.sha256_file(p) for n, p in board.items()}
    copied = [n for n in board if (vm.device_dir / n).is_file() and tools.sha256_file(vm.device_dir / n) == shas[n]]
    assert len(copied) < len(board)  # new and old files mixed on the flash


def test_deploy_onto_a_running_board_goes_through_maintenance(running_board, tmp_path):
    vm, config = running_board()
    compiled = tmp_path / "new"
    compiler.compile_tree(compiled)
    echo = []
    t_begin = time.time_ns()
    assert deploy.deploy(vm.serial.path, config=config, timeout_s=20, echo=echo.append, compiled=compiled) == "offline_mode"
    # Every file on the board's flash is the new one; the earlier sources that would shadow the
    # .mpy files are gone, and so is the maintenance file.
    for name, src in files.board_files(compiled, config=config).items():
        assert tools.sha256_file(vm.device_dir / name) == tools.sha256_file(src), name
    assert not list((vm.device_dir / "motorguard").glob("*.py"))
    assert not (vm.device_dir / deploy.MAINTENANCE_FILE).exists()
    # Maintenance, a soft reboot for mpremote's copy, then the new firmware: no watchdog reset.
    assert [why for t, _, why in vm.resets if t > t_begin] == ["hard_reset", "soft reboot", "hard_reset"]
    assert any(line.startswith("MG MAINTENANCE") for line in echo)
    assert vm.wait_for_line("MG BOOT", 5, since=vm.mark() - 3).text.endswith("cause=hard_reset")
    # The motor ran when the deploy began and never ran again: off from the Ctrl-C to the new boot.
    stop = next(t for t, ns in vm.pwm_log if t > t_begin and ns == 0)
    assert (stop - t_begin) / 1e9 < 1
    assert all(ns == 0 for t, ns in vm.pwm_log if t > stop)
    assert vm.state == "STOPPED"


def test_an_interrupted_deploy_keeps_the_board_in_maintenance(running_board, tmp_path):
    vm, _ = running_board()
    compiled = tmp_path / "new"
    compiler.compile_tree(compiled)
    deploy.enter_maintenance(vm.serial.path, files.board_files(compiled), echo=lambda *_: None)
    # Power lost mid-copy: the board comes back in maintenance, not on mixed files, and stays
    # there: no watchdog armed, so no reset, and the servo line held low (no pulses).
    vm.reboot()
    vm.wait_for_line("MG MAINTENANCE", 10, since=vm.mark() - 5)
    boots = vm.boot_count
    time.sleep(3)
    assert vm.boot_count == boots and vm.wdt_timeout_ms == 0
    assert vm.pwm_duty == 0 and vm.outputs.get(SERVO) == 0


def test_main_py_and_deploy_agree_on_maintenance():
    assert 'os.stat("%s")' % deploy.MAINTENANCE_FILE in (ROOT / "firmware" / "main.py").read_text()
    assert all((ROOT / "firmware" / n.replace(".mpy", ".py")).is_file() for n in deploy.MAINTENANCE_CODE)
    from vesp32.settings import config_module

    fallback = "servo = %d" % config_module().DEFAULTS["pins"]["servo"]
    assert fallback in (ROOT / "firmware" / "maintenance.py").read_text()  # the default map's servo pin


def test_provisionings_push_onto_a_running_board_goes_through_maintenance(running_board, tmp_path):
    """`provision device --port` and `provision rotate --port` copy a bundle onto a board that may run
    MotorGuard: through the board tools' maintenance mode (provisioning/bundle.py push), so the
    watchdog that survives a soft reset cannot cut the copy, and only the bundle's files change."""
    from contract import BOARD_FILES
    from provisioning import bundle

    vm, config = running_board()
    new = tmp_path / "bundle"
    new.mkdir()
    (new / "config.json").write_text(json.dumps({"thing": "dep-1", "offline": True, "telemetry": {"sample_period_ms": 2000}}))
    for name in BOARD_FILES[1:]:
        (new / name).write_bytes(b"der bytes of " + name.encode())  # offline mode never loads them
    before = {p.relative_to(vm.device_dir).as_posix(): tools.sha256_file(p)
              for p in vm.device_dir.rglob("*") if p.is_file() and p.parts[-2] == "motorguard"}
    t_begin = time.time_ns()
    out = bundle.push(new, vm.serial.path, timeout_s=20)
    assert out["online"] is False  # offline mode, as its config says; the copy itself succeeded
    for name in BOARD_FILES:
        assert tools.sha256_file(vm.device_dir / name) == tools.sha256_file(new / name) == out[name], name
    after = {n: tools.sha256_file(vm.device_dir / n) for n in before if (vm.device_dir / n).is_file()}
    assert after == before  # the firmware itself was not replaced
    # Once in maintenance mode nothing resets the board (an interrupt that comes too late for the
    # watchdog's window of the running firmware may cost one reset before it: the tools try again).
    entered = next(line.t_ns for line in vm.lines if line.t_ns > t_begin and line.text.startswith("MG MAINTENANCE"))
    assert not [t for t, cause, _ in vm.resets if t > entered and cause == H.WDT_RESET]
    # The motor ran until the board tools stopped it (their process compiles the firmware first, so
    # about a second) and never again: maintenance, then the offline-mode boot, all with PWM 0.
    stop = next(t for t, ns in vm.pwm_log if t > t_begin and ns == 0)
    assert (stop - t_begin) / 1e9 < 5
    assert all(ns == 0 for t, ns in vm.pwm_log if t > stop)
