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
    assert [name for name, _ in steps] == ["code_to_start_main", "config", "app_rings_objects", "network_code",
                                           "boot_code_dropped"]
    totals = [total for _, total in steps]
    assert all(b > a for a, b in zip([0] + totals[:-1], totals[:-1])), steps
    # The rings alone (930 samples of 8 bytes, 32 events) are over 8 KB: a step that skipped the
    # App would show less.
    assert dict(steps)["app_rings_objects"] - dict(steps)["config"] > 8000
    # start.py is boot-only: dropping it frees its code (the App's construction above all).
    assert totals[-2] - totals[-1] > 1500, steps


def test_the_control_tick_allocates_nothing_on_a_32_bit_port(compiled):
    """The tick on MicroPython's 32-bit WebAssembly port (npm), whose small ints are 31-bit like the
    ESP32's: 600 ticks of the sweep and every kind of state change allocate nothing. The 64-bit host
    cannot show this: there a product past 2**30 is still a small int."""
    from vesp32.heap32.__main__ import tick_wasm

    t = tick_wasm(compiled)
    assert t["small_int_max"] == 2**31 - 1  # a 32-bit port: small ints end at 2**30
    assert t["old_formula_bytes"] > 0  # and so it does catch a big int: the pulse as it was computed
    assert t["state"] == "RUNNING" and t["final_state"] == "FAULT"  # the ticks ran the motor, then tripped
    assert t["pulse_high"] - t["pulse_low"] > 500_000  # it swept
    assert t["tick_steady_bytes"] == 0, t
    assert t["tick_changes_bytes"] == 0, t
