"""The flashing command line without a board: every error path through the real CLI, each with its
exit code from the one table, and the tool failures it names."""

from __future__ import annotations

import inspect
import os
import sys

import pytest

from contract import exit_codes
from flashing import errors, flash, tools
from flashing.errors import FlashError

from flashing_cli import cli, stand_in_firmware


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
