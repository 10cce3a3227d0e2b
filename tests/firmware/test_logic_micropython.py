"""Run every dual-runtime logic test module under the real MicroPython interpreter.

The heap is a little larger than an ESP32's (160K, not 110K) because the test
scaffolding is compiled from source on the heap; the firmware's own footprint
under the ESP32-sized heap is measured by `make bench-firmware` (heap_peak_bytes).
"""

import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parents[1]
MICROPYTHON = pathlib.Path(sys.executable).with_name("micropython")
MODULES = sorted(p.stem for p in (HERE / "logic").glob("test_*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_module_under_micropython(module):
    proc = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=160K", str(HERE / "mp_run.py"), str(ROOT / "firmware"), module],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "FAIL" not in out, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("mp: ") and " 0 failed" in last and not last.startswith("mp: 0 passed"), out
