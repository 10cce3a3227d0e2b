"""The board's hardware surface (contract/board.py) is what the firmware calls, and every stand-in
of the esp32 port provides all of it: a hardware call added to one and not the others fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from contract.board import SURFACE

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
# stand-in -> the modules it stands in for
STAND_INS = {
    "tests/firmware/fakehw": ("machine",),
    "vesp32/board": ("machine", "network", "ntptime"),
    "vesp32/heap32/stubs": ("machine", "network"),
}


def provided(path: Path) -> dict:
    """{top-level name: (its members, its constructor's keywords or None for any)} of a module, read
    from its source (the board's modules are MicroPython's, not importable here)."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef):
            members, keywords = set(), set()
            for m in node.body:
                if isinstance(m, ast.FunctionDef):
                    members.add(m.name)
                    if m.name in ("__init__", "__new__"):
                        if m.args.kwarg is not None:
                            keywords = None
                        elif keywords is not None:
                            keywords |= {a.arg for a in m.args.args + m.args.kwonlyargs}
                elif isinstance(m, ast.Assign):
                    members |= {t.id for t in m.targets if isinstance(t, ast.Name)}
            out[node.name] = (members, keywords)
        elif isinstance(node, ast.ImportFrom) and node.module and (path.parent / (node.module + ".py")).exists():
            # a name the module takes from a sibling (machine.PWM from _vpwm.py): read it there
            sibling = provided(path.parent / (node.module + ".py"))
            out.update({a.asname or a.name: sibling[a.name] for a in node.names if a.name in sibling})
        elif isinstance(node, ast.FunctionDef):
            out[node.name] = (set(), None)
        elif isinstance(node, ast.Assign):
            out.update({t.id: (set(), None) for t in node.targets if isinstance(t, ast.Name)})
    return out


@pytest.mark.parametrize("stand_in", sorted(STAND_INS))
def test_every_stand_in_provides_the_whole_surface(stand_in):
    for module in STAND_INS[stand_in]:
        have = provided(ROOT / stand_in / (module + ".py"))
        for name, (members, keywords) in SURFACE[module].items():
            assert name in have, "%s/%s.py has no %s" % (stand_in, module, name)
            got_members, got_keywords = have[name]
            missing = set(members) - got_members
            assert not missing, "%s/%s.py: %s lacks %s" % (stand_in, module, name, sorted(missing))
            if got_keywords is not None:
                assert set(keywords) <= got_keywords, "%s/%s.py: %s() takes no %s" % (
                    stand_in, module, name, sorted(set(keywords) - got_keywords))


def firmware_uses() -> set:
    """(module, name, member) for every machine.X[.Y], network.X and ntptime.X in the firmware, and
    (network, WLAN, member) for every call on its station object."""
    used = set()
    for path in FIRMWARE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            chain = []
            n = node
            while isinstance(n, ast.Attribute):
                chain.insert(0, n.attr)
                n = n.value
            if isinstance(n, ast.Name) and n.id in SURFACE and len(chain) <= 2:
                used.add((n.id, chain[0], chain[1] if len(chain) == 2 else None))
            elif isinstance(n, ast.Name) and n.id == "wlan" and len(chain) == 1:
                used.add(("network", "WLAN", chain[0]))
    return used


def test_the_firmware_calls_nothing_outside_the_surface():
    used = firmware_uses()
    assert ("machine", "PWM", None) in used and ("network", "WLAN", "isconnected") in used  # the scan sees them
    for module, name, member in used:
        assert name in SURFACE[module], "firmware uses %s.%s, not in contract/board.py" % (module, name)
        if member is not None:
            assert member in SURFACE[module][name][0], "firmware uses %s.%s.%s, not in contract/board.py" % (
                module, name, member)
