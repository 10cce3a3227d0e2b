"""boardlink, the one place a board's serial port is checked, opened and read line by line, and
mpremote found: the board tools (flashing) and provisioning report each failure with the same
message and exit code."""

from __future__ import annotations

import pytest

import boardlink
from contract import console, exit_codes
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


# ------------------------------------------------------------------ the console, line by line


def test_lines_come_whole_however_the_bytes_are_cut():
    stream = "MG BOOT version=1 thing=m-1\r\nMG STATE STOPPED event=BOOT\r\ntemp 21.5 \u00b0C\r\nMG NET onl".encode()
    for cut in range(1, len(stream)):  # every split point, a multibyte character's middle included
        reader = boardlink.LineReader()
        got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert got == ["MG BOOT version=1 thing=m-1", "MG STATE STOPPED event=BOOT", "temp 21.5 \u00b0C"]
        assert reader.rest() == "MG NET onl" and reader.rest() is None


def test_noise_on_the_line_is_replaced_not_raised_and_the_next_line_parses():
    reader = boardlink.LineReader()
    got = reader.feed(b"\xff\xfe\x00ets Jun  8 2016\r\n" + console.ONLINE.encode() + b"\r\n")
    assert got[0].endswith("ets Jun  8 2016") and "\ufffd" in got[0]
    assert console.parse(got[1]).word == "NET" and got[1] == console.ONLINE
    assert reader.rest() is None


class _Port:
    """A serial port's read side (the true edge: pyserial against a board): chunks, then silence."""

    def __init__(self, *chunks):
        self.chunks = list(chunks)

    def read(self, n):
        return self.chunks.pop(0)[:n] if self.chunks else b""


def test_read_lines_yields_until_the_timeout_and_read_until_returns_what_came():
    port = _Port(b"MG BOOT x\r\nMG NE", b"T online\r\n")
    assert list(boardlink.read_lines(port, 0.05)) == ["MG BOOT x", console.ONLINE]
    port = _Port(*[bytes([c]) for c in b"junk raw REPL; CTRL-B to exit\r\n>more"])
    assert boardlink.read_until(port, b"exit\r\n>", 1.0) == b"junk raw REPL; CTRL-B to exit\r\n>"
    assert boardlink.read_until(_Port(b"n", b"o"), b">", 0.05) == b"no"  # the prompt never came


def test_a_port_that_will_not_open_is_one_error_with_the_busy_hint(tmp_path):
    with pytest.raises(boardlink.BoardError) as e:
        boardlink.open_port(str(tmp_path / "ttyUSB9"))
    assert e.value.code == exit_codes.PORT_UNUSABLE and e.value.hint == boardlink.BUSY_HINT
    with pytest.raises(FlashError) as flashing:
        tools.open_port(str(tmp_path / "ttyUSB9"))
    assert flashing.value.code == exit_codes.PORT_UNUSABLE


def test_every_console_reader_goes_through_boardlink():
    """The host's console readers (deploy's raw session, the real and the virtual board) split
    lines only through boardlink.LineReader, and only boardlink opens a serial port."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for package in ("flashing", "provisioning", "vesp32", "hil_tests", "cloud", "sim"):
        for path in (root / package).rglob("*.py"):
            if "board" in path.parts[len(root.parts) + 1:-1] or "heap32" in path.parts:
                continue  # files that run on the (virtual) board, not the host
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                    assert "serial" not in names, "%s opens a serial port itself: use boardlink.open_port" % path
    for path in ("flashing/deploy.py", "hil_tests/boards.py", "vesp32/observations.py"):
        text = (root / path).read_text()
        assert ("LineReader" in text or "read_lines" in text) and 'split(b"\\n")' not in text, path


def test_opening_a_port_leaves_the_reset_lines_released():
    """On the usual USB-serial bridge DTR and RTS drive EN and GPIO0: a port opened with either held
    resets the board or keeps it in its ROM loader. A pseudo-terminal stands in for the bridge."""
    import os
    import pty

    master, slave = pty.openpty()
    try:
        s = boardlink.open_port(os.ttyname(slave))
        try:
            assert s.is_open and s.baudrate == boardlink.BAUD == 115200
            assert s.dtr is False and s.rts is False
            os.write(master, b"MG BOOT x\r\n" + console.ONLINE.encode() + b"\r\n")
            assert list(boardlink.read_lines(s, 0.3)) == ["MG BOOT x", console.ONLINE]
        finally:
            s.close()
    finally:
        os.close(master)
        os.close(slave)
