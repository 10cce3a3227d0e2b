"""Every console line the firmware's source can print is in contract/console.py, and every word
there is one the firmware prints: the one definition and the firmware's literals cannot drift."""

from __future__ import annotations

import ast
from pathlib import Path

from contract import console

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


def printed() -> set:
    """(WORD, second word or None) of every log()/say()/print("MG ...") call in the firmware whose
    first words are literals."""
    out = set()
    for path in FIRMWARE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args):
                continue
            consts = []
            for a in node.args:
                if isinstance(a, ast.BinOp) and isinstance(a.op, ast.Mod):  # "retry_in_ms=%d" % delay
                    a = a.left
                if not (isinstance(a, ast.Constant) and isinstance(a.value, str)):
                    break
                consts.append(a.value)
            if node.func.id in ("log", "say") and consts:
                second = consts[1].split("=")[0].split()[0] if len(consts) > 1 and consts[1] else None
                out.add((consts[0], second))
            elif node.func.id == "print" and consts and consts[0].startswith(console.PREFIX + " "):
                words = (consts[0] + " " + " ".join(consts[1:])).split()
                if len(words) > 1:  # base.py's own print("MG ", what, ...) is log's and say's
                    out.add((words[1], None))
    return out


def test_every_line_the_firmware_prints_is_defined():
    lines = printed()
    assert ("NET", "online") in lines and ("STATE", None) in lines  # the scan sees them
    for word, second in lines:
        assert word in console.WORDS, "the firmware prints MG %s, which contract/console.py lacks" % word
        if word == "NET":
            assert second in console.NET_STEPS, "MG NET %s is not in contract/console.py NET_STEPS" % second


def test_every_defined_word_is_printed():
    words = {w for w, _ in printed()}
    assert set(console.WORDS) <= words, sorted(set(console.WORDS) - words)
    assert set(console.NET_STEPS) <= {s for w, s in printed() if w == "NET"}


def test_the_constants_are_lines_of_the_protocol_and_parse_reads_them():
    for name in ("ONLINE", "OFFLINE", "OFFLINE_MODE", "NET_ERROR", "SAFE_MODE", "MAINTENANCE", "CRASH", "BOOT",
                 "HOOK_READY", "BACKLOG_STORED"):
        line = console.parse(getattr(console, name) + " x")
        assert line is not None and line.word in console.WORDS, name
    got = console.parse("MG BOOT version=0.1.0 thing=m-1 boot=0a0b0c0d cause=power_on")
    assert got.word == "BOOT" and got.fields == {"version": "0.1.0", "thing": "m-1", "boot": "0a0b0c0d",
                                                   "cause": "power_on"}
    assert console.state("MG STATE FAULT reason=overtemp") == "FAULT"
    assert console.parse("Traceback (most recent call last):") is None and console.parse("MG NOPE x") is None
    assert console.state("MG NET online") is None
