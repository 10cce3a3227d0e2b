"""The flashing command line without a board: every error path through the real CLI, each with its
exit code from the one table, and the tool failures it names."""

from __future__ import annotations

import inspect
import json
import os
import sys

import pytest

import boardlink
from contract import exit_codes
from flashing import errors, flash, image, tools
from flashing.errors import FlashError

from flashing_cli import ROOT, cli, stand_in_firmware


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
    """3 once meant "no port" here and "conflict" to provision. Shared: OK, BAD_INPUT, and the codes of
    a port that cannot work, which both take from boardlink's one check (the same failure, the same code)."""
    from provisioning import errors as provisioning_errors

    shared = set(errors.CODES) & set(provisioning_errors.CODES)
    assert shared == {exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.PORT_ABSENT, exit_codes.PORT_DENIED,
                      exit_codes.PORT_UNUSABLE}
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
    monkeypatch.setattr(boardlink.os, "access", lambda *_: False)
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


# ------------------------------------------------------------------ the board's flash size

# esptool flash-id output as boards print it: v4.x (Unknown: an ESP32 whose flash chip does not
# answer, as posted on esp32.com; 4MB), and v5's layout of the same lines.
FLASH_ID_V4_UNKNOWN = """esptool.py v4.8.1
Serial port COM5
Connecting...
Detecting chip type... ESP32
Chip is ESP32-D0WD (revision v1.1)
Features: WiFi, BT, Dual Core, 240MHz, VRef calibration in efuse, Coding Scheme None
Crystal is 40MHz
MAC: c8:2e:18:d2:df:e0
Stub is already running. No upload is necessary.
WARNING: Failed to communicate with the flash chip, read/write operations will fail. Try checking the chip connections or removing any other hardware connected to IOs.
Manufacturer: ff
Device: ffff
Detected flash size: Unknown
Flash voltage set by a strapping pin to 1.8V
Hard resetting via RTS pin...
"""
FLASH_ID_V4_4MB = """esptool.py v4.7.0
Serial port /dev/ttyUSB0
Connecting....
Detecting chip type... ESP32
Chip is ESP32-D0WD-V3 (revision v3.1)
Features: WiFi, BT, Dual Core, 240MHz, VRef calibration in efuse, Coding Scheme None
Crystal is 40MHz
MAC: 88:13:bf:36:8d:44
Uploading stub...
Running stub...
Stub running...
Manufacturer: 20
Device: 4016
Detected flash size: 4MB
Hard resetting via RTS pin...
"""
FLASH_ID_V5 = """esptool v5.1.0
Connected to ESP32 on /dev/ttyUSB0:
Chip type:          ESP32-D0WD-V3 (revision v3.1)
Features:           Wi-Fi, BT, Dual Core + LP Core, 240MHz, Vref calibration in eFuse, Coding Scheme None
Crystal frequency:  40MHz
MAC:                88:13:bf:36:8d:44

Stub flasher running.

Flash Memory Information:
=========================
Manufacturer: c8
Device: 40%s
Detected flash size: %s
Flash voltage set by a strapping pin: 3.3V

Hard resetting via RTS pin...
"""


@pytest.mark.parametrize("output, size", [
    (FLASH_ID_V4_4MB, "4MB"),
    (FLASH_ID_V5 % ("17", "8MB"), "8MB"),
    (FLASH_ID_V5 % ("18", "16MB"), "16MB"),
    (FLASH_ID_V4_UNKNOWN, None),
    ("A fatal error occurred: Failed to connect to ESP32: No serial data received.", None),
])
def test_the_flash_size_is_read_from_esptool_s_output(output, size):
    assert image.parse_flash_size(output) == size


def test_the_flash_size_line_is_still_what_esptool_prints():
    import esptool.cmds

    assert "Detected flash size: {flash_size or 'Unknown'}" in inspect.getsource(esptool.cmds.print_flash_id)


class FakeBoard:
    """esptool's side of one board: answers flash-id with a recorded output and records every
    esptool command given for this port; other tools (merge-bin) run for real."""

    def __init__(self, flash_id_output):
        self.output, self.commands = flash_id_output, []

    def __call__(self, args, what, timeout=None):
        if "--port" in args:
            self.commands.append(args[args.index("--port") + 2:])
            return self.output if "flash-id" in args else "Hash of data verified."
        return REAL_RUN_TOOL(args, what, timeout)


REAL_RUN_TOOL = tools.run_tool


@pytest.fixture
def board_port():
    master, slave = os.openpty()  # a real character device for check_port
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def run_image(monkeypatch, tmp_path, board, *args):
    """`python -m flashing image ...` in this process, esptool's board side faked."""
    from flashing import __main__ as cli_main

    monkeypatch.setattr(tools, "run_tool", board)
    monkeypatch.setattr(tools, "BUILD", tmp_path / "build")
    fw = stand_in_firmware(tmp_path / "fw.bin")
    return cli_main.main(["image", "--firmware", str(fw), "--config", str(ROOT / "wokwi" / "config.json"), *args])


def test_an_image_for_another_flash_size_is_refused_before_anything_is_written(monkeypatch, tmp_path, capsys,
                                                                               board_port):
    board = FakeBoard(FLASH_ID_V5 % ("17", "8MB"))
    code = run_image(monkeypatch, tmp_path, board, "--port", board_port, "--flash-size", "4MB")
    err = capsys.readouterr().err
    assert code == exit_codes.BAD_INPUT
    assert "the image is for 4MB of flash but the board on %s has 8MB" % board_port in err
    assert "1536 blocks" in err and "--flash-size 8MB" in err
    assert board.commands == [["flash-id"]]  # asked, then stopped: nothing built, nothing written
    assert not (tmp_path / "build").exists() or not list((tmp_path / "build").glob("flash-*.bin"))


def test_with_a_port_the_image_is_built_for_the_board_and_written(monkeypatch, tmp_path, capsys, board_port):
    board = FakeBoard(FLASH_ID_V5 % ("18", "16MB"))
    code = run_image(monkeypatch, tmp_path, board, "--port", board_port, "--json")
    assert code == exit_codes.OK, capsys.readouterr().err
    done = json.loads(capsys.readouterr().out)
    out = tmp_path / "build" / "flash-16MB.bin"
    assert done["flash_size"] == done["board_flash_size"] == "16MB" and done["image"] == str(out)
    assert out.stat().st_size == 16 * 1024 * 1024
    assert board.commands == [["flash-id"], ["write-flash", "0x0", str(out)]]


@pytest.mark.parametrize("output, code, words", [
    (FLASH_ID_V4_UNKNOWN, exit_codes.TOOL_FAILED, "could not tell the flash size"),
    (FLASH_ID_V4_4MB.replace("4MB", "2MB"), exit_codes.BAD_INPUT, "has 2MB of flash"),
])
def test_a_board_without_a_known_size_gets_no_image(monkeypatch, tmp_path, capsys, board_port, output, code, words):
    board = FakeBoard(output)
    assert run_image(monkeypatch, tmp_path, board, "--port", board_port) == code
    assert words in capsys.readouterr().err
    assert board.commands == [["flash-id"]]
