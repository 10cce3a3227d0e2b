import pathlib
import sys

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parents[1]
# The firmware's modules and the in-process fake `machine` for the logic tests.
for p in (HERE / "logic", ROOT / "firmware", HERE / "fakehw", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
# Last: the virtual board's ADC model (fakehw's machine imports it; its own machine.py must
# not shadow fakehw's, hence the end of the path).
if str(ROOT / "vesp32" / "board") not in sys.path:
    sys.path.append(str(ROOT / "vesp32" / "board"))

collect_ignore = ["mp_run.py", "fakehw", "logic/support.py"]
