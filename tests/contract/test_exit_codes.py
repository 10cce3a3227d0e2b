"""The one exit-code table (contract/exit_codes.py) against what claims to follow it: docs/cli.md's
table, the codes each tool's section there lists, and the `exit codes:` paragraph of every tool's
--help, all read from the real files and the real command lines."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from contract import exit_codes

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "cli.md").read_text()

# The command line as docs/cli.md heads its section -> (the module holding the CODES it exits with,
# the argv of its --help).
TOOLS = {
    "provision": ("provisioning.errors", ["-m", "provisioning.cli", "--help"]),
    "python -m flashing": ("flashing.errors", ["-m", "flashing", "--help"]),
    "python -m vesp32.cli": ("vesp32.cli", ["-m", "vesp32.cli", "--help"]),
    "python -m cloud.tools.demo": ("cloud.tools.demo", ["-m", "cloud.tools.demo", "--help"]),
    "python -m cloud.tools.bench": ("cloud.tools.bench", ["-m", "cloud.tools.bench", "--help"]),
    "python -m cloud.tools.fuzz": ("cloud.tools.fuzz", ["-m", "cloud.tools.fuzz", "--help"]),
    "python -m cloud.local.broker": ("cloud.local.broker", ["-m", "cloud.local.broker", "--help"]),
    "python -m vesp32.bench": ("vesp32.bench", ["-m", "vesp32.bench", "--help"]),
    "python -m vesp32.soak": ("vesp32.soak", ["-m", "vesp32.soak", "--help"]),
    "python -m vesp32.heap32": ("vesp32.heap32.__main__", ["-m", "vesp32.heap32", "--help"]),
    "python -m sim": ("sim.cli", ["-m", "sim", "--help"]),
    "python -m sim.bench": ("sim.bench", ["-m", "sim.bench", "--help"]),
    "python -m sim.task": ("sim.task", ["-m", "sim.task", "--help"]),
}


def doc_table() -> list[tuple[int, str, str]]:
    section = DOC.split("\n## The exit-code table\n", 1)[1]
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \| (.*) \|$", section, re.M)
    return [(int(code), name, meaning) for code, name, meaning in rows]


def doc_codes(tool: str) -> list[int]:
    """The `Exit codes:` line of the tool's own section in docs/cli.md."""
    sections = [s for s in re.split(r"^#+ ", DOC, flags=re.M) if s.startswith("`%s`\n" % tool)]
    assert len(sections) == 1, "docs/cli.md needs one section headed `%s`" % tool
    m = re.search(r"^Exit codes: `([\d ]+)`$", sections[0], re.M)
    assert m, "the section `%s` of docs/cli.md has no `Exit codes:` line" % tool
    return [int(c) for c in m.group(1).split()]


def test_the_doc_table_is_the_contract_s():
    names = {v: k for k, v in vars(exit_codes).items() if k.isupper() and isinstance(v, int)}
    assert doc_table() == [(code, names[code], exit_codes.MEANINGS[code]) for code in sorted(exit_codes.MEANINGS)]


def test_the_table_has_no_collisions():
    codes = [v for k, v in vars(exit_codes).items() if k.isupper() and isinstance(v, int)]
    assert len(codes) == len(set(codes)) == len(exit_codes.MEANINGS)


@pytest.mark.parametrize("tool", TOOLS)
def test_each_tool_s_codes_are_documented_and_in_its_help(tool):
    module, argv = TOOLS[tool]
    codes = sorted(importlib.import_module(module).CODES)
    assert set(codes) <= set(exit_codes.MEANINGS)
    assert doc_codes(tool) == codes
    r = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == exit_codes.OK, r.stderr
    assert r.stdout.rstrip("\n").endswith("\n" + exit_codes.epilog(codes))
