"""The 32-bit heap measurement's steps still run the shipped firmware (unix side, no npm): each
step is a real import or construction of the firmware, and each takes heap."""

from __future__ import annotations

import pytest

from flashing import compiler
from vesp32.heap32.__main__ import run_unix


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("heap32") / "fw"
    built, failures = compiler.compile_tree(out)
    assert not failures
    return out


def test_every_step_runs_and_takes_heap(compiled):
    steps = run_unix(compiled)
    assert [name for name, _ in steps] == ["code_to_app_main", "config", "app_rings_objects", "network_code"]
    totals = [total for _, total in steps]
    assert all(b > a for a, b in zip([0] + totals, totals)), steps
    # The rings alone (600 samples of 14 bytes, 32 events) are over 8 KB: a step that skipped the
    # App would show less.
    assert dict(steps)["app_rings_objects"] - dict(steps)["config"] > 8000
