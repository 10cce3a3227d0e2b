"""make bench-fleet's judgement and output, on made-up runs (the real runs take minutes: their
figures are in docs/simulator.md): one line per size with every figure, every target checked, exit
22 after every line when one is missed, and a chart drawn from the run's own numbers."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from contract import exit_codes
from sim import bench, chart


def _run(devices, connected=None, lost=0, p99=60, sim_cpu=0.06):
    connected = devices if connected is None else connected
    tl = []
    for i in range(40):  # every 2 s: the ramp over the first 10 s, then a telemetry message per device per 30 s
        up = min(devices, devices * i // 5)
        tl.append({"t": 1000.0 + 2 * i, "connected": up, "handshakes": up, "telemetry_acked": int(devices * 2 * i / 30),
                   "events_acked": 2 * up, "acks_acked": 0, "connect_failures": 0})
    tl[-1]["connected"] = connected
    usage = [{"t": 1000.0 + i, "simulator_cores": 0.05, "broker_cores": 0.03, "simulator_mb": 100, "broker_mb": 50}
             for i in range(80)]
    summary = {"target_devices": devices, "lost": lost, "handshakes_per_s": 52.5, "messages_per_s": 40.0,
               "counters": {"connected_at_stop": connected, "telemetry_acked": 100, "connect_failures": 0},
               "puback_all": {"n": 100, "p50_ms": 1, "p99_ms": p99},
               "storage": {"n": 10, "p50_ms": 1000, "p99_ms": 1200}, "connect": {"n": 1, "p50_ms": 140, "p99_ms": 230},
               "resources": {"simulator_cpu_cores_per_1000": sim_cpu, "simulator_rss_mb_per_1000": 170,
                             "broker_cpu_cores_per_1000": 0.03, "broker_rss_mb_per_1000": 130},
               "stored": {"telemetry": 100}}
    return {"devices": devices, "summary": summary, "timeline": tl, "usage": usage}


def test_a_run_that_meets_every_target():
    row = bench.figures(_run(1000)["summary"], _run(1000)["timeline"])
    assert bench.missed(row) == []
    text = bench.line(row)
    assert text.startswith("devices=1000 connected=1000 connected_missing=0 lost=0 handshakes_per_s=52.5")
    for name in ("messages_per_s=", "puback_p50_ms=", "puback_p99_ms=", "storage_p50_ms=", "storage_p99_ms=",
                 "sim_cpu_cores_per_1000=", "broker_rss_mb_per_1000="):
        assert name in text
    assert row["steady_share"] >= 0.9  # devices/30 s once connected


@pytest.mark.parametrize("kw, name", [(dict(connected=990), "connected_missing"), (dict(lost=3), "lost"),
                                      (dict(p99=2500), "puback_p99_ms"), (dict(sim_cpu=0.2), "sim_cpu_cores_per_1000")])
def test_each_miss_is_named(kw, name):
    run = _run(1000, **kw)
    misses = bench.missed(bench.figures(run["summary"], run["timeline"]))
    assert len(misses) >= 1 and any((" %s=" % name) in m for m in misses), misses


def test_every_line_is_printed_before_the_exit_22(monkeypatch, tmp_path, capsys):
    runs = {1000: _run(1000, lost=2), 10000: _run(10000)}
    monkeypatch.setattr(bench, "run_one", lambda n, *a: runs[n])
    code = bench.main(["--out", str(tmp_path), "--chart", str(tmp_path / "c.svg")])
    out, err = capsys.readouterr()
    assert code == exit_codes.TARGET_MISSED
    lines = out.splitlines()
    assert lines[0].startswith("devices=1000 ") and lines[1].startswith("devices=10000 ")
    assert lines[2].startswith("targets_met=false")
    assert "devices=1000 lost=2" in err and "devices=10000" not in err
    svg = ET.fromstring((tmp_path / "c.svg").read_text())
    polylines = [e for e in svg.iter() if e.tag.endswith("polyline")]
    assert len(polylines) == 2 * 4, "per size: connected, messages/s, and CPU of simulator and broker"


def test_bad_sizes_are_refused(capsys):
    assert bench.main(["--sizes", "ten"]) == exit_codes.BAD_INPUT
    assert "--sizes" in capsys.readouterr().err


def test_the_chart_rates_come_from_the_counters():
    tl = [{"t": 0, "telemetry_acked": 0, "events_acked": 0, "acks_acked": 0},
          {"t": 2, "telemetry_acked": 10, "events_acked": 4, "acks_acked": 2}]
    assert chart.rates(tl) == [(2, 8.0)]
