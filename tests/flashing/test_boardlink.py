"""boardlink, the one place a board's serial port is checked and mpremote found: the board tools
(flashing) and provisioning report each failure with the same message and exit code."""

from __future__ import annotations

import pytest

import boardlink
from contract import exit_codes
from flashing import tools
from flashing.errors import FlashError
from provisioning import bundle
from provisioning.errors import ProvisionError


@pytest.mark.parametrize("port, code", [
    ("", exit_codes.NO_PORT),
    ("/dev/ttyUSB-not-there", exit_codes.PORT_ABSENT),
    ("/etc/hostname", exit_codes.PORT_UNUSABLE),  # a file, not a serial device
])
def test_a_port_that_cannot_work_is_refused_alike_by_every_tool(port, code):
    with pytest.raises(boardlink.BoardError) as board:
        boardlink.check_port(port, "deploy")
    with pytest.raises(FlashError) as flashing:
        tools.check_port(port, "deploy")
    assert board.value.code == flashing.value.code == code and board.value.hint
    if port:  # provisioning always has a port by then (argparse requires it)
        with pytest.raises(ProvisionError) as provisioning:
            bundle.check_port(port)
        assert provisioning.value.code == code and provisioning.value.message == board.value.message


def test_a_port_that_is_not_a_path_goes_to_the_tool():
    assert boardlink.check_port("rfc2217://lab:4000") == "rfc2217://lab:4000"


def test_mpremote_is_found_in_one_order_and_its_absence_is_one_error(tmp_path, monkeypatch):
    exe = tmp_path / "mpremote"
    exe.write_text("#!/bin/sh\n")
    monkeypatch.setenv("MOTORGUARD_MPREMOTE", str(exe))
    assert boardlink.mpremote("devs") == [str(exe), "devs"] == tools.mpremote("devs")
    assert bundle.mpremote_cmd() == [str(exe)]
    monkeypatch.setenv("MOTORGUARD_MPREMOTE", str(tmp_path / "gone"))
    monkeypatch.setattr(boardlink.shutil, "which", lambda name: None)
    monkeypatch.setattr(boardlink.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(FlashError) as flashing:
        tools.mpremote("devs")
    with pytest.raises(ProvisionError) as provisioning:
        bundle.mpremote_cmd()
    assert flashing.value.code == provisioning.value.code == exit_codes.MPREMOTE_MISSING


def test_the_verify_script_s_output_parses_into_hashes():
    out = "SHA config.json " + "a" * 64 + "\nnoise\nSHA main.py " + "b" * 64 + "\n"
    assert boardlink.parse_hashes(out) == {"config.json": "a" * 64, "main.py": "b" * 64}
    assert "hashlib.sha256()" in boardlink.VERIFY_SCRIPT % (["x"],)
