"""The rooms of the code keep their one-way doors: `lint-imports` (import-linter) holds every import
to the contracts in pyproject.toml [tool.importlinter], which docs/architecture.md ("Rooms and
allowed imports") states in words."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_keeps_the_rooms_contracts():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), "lint-imports is not installed in this environment: make setup (import-linter)"
    r = subprocess.run([str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, "lint-imports found imports across the rooms' doors:\n" + r.stdout + r.stderr
