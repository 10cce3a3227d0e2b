"""What the virtual board runs: the firmware as ``make deploy`` flashes it.

The compiled tree comes from flashing.compiler, the one function ``make deploy`` and ``make image``
use too: main.py and boot.py stay source, every other module is a .mpy (bytecode loads on the unix
port as on the chip, and costs no compile-time heap), anything else the firmware ships comes along.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile

from flashing import compiler


def flash_image(firmware_dir: pathlib.Path, compile=True):
    """The directory the board should run, as (run_dir, tmp_dir).

    tmp_dir is the compiled copy to remove once the board is off, or None when the
    firmware runs from firmware_dir itself (compile=False, or nothing to compile).
    """
    firmware_dir = pathlib.Path(firmware_dir)
    modules = [p for p in firmware_dir.rglob("*.py")
               if "__pycache__" not in p.parts and p.relative_to(firmware_dir).as_posix() not in compiler.SOURCE_ONLY]
    if not compile or not modules:
        return firmware_dir, None
    tmp = tempfile.mkdtemp(prefix="vesp32-fw-")
    try:
        _, failures = compiler.compile_tree(tmp, firmware_dir)
        if failures:
            rel, err = failures[0]
            raise RuntimeError("mpy-cross failed on %s:\n%s" % (rel, err))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return pathlib.Path(tmp), tmp
