import pathlib
import sys

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parents[1]
# The firmware's modules and the in-process fake `machine` for the logic tests.
for p in (HERE / "logic", ROOT / "firmware", HERE / "fakehw", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

collect_ignore = ["mp_run.py", "fakehw", "logic/support.py"]
