"""python -m sim.bench (make bench-fleet): the fleet simulator at 1,000 and 10,000 devices against the
local IoT Core, one machine-readable line per fleet size, held to TARGETS.

    devices=1000 connected=1000 lost=0 handshakes_per_s=.. messages_per_s=.. messages_per_s_steady=..
    puback_p50_ms=.. puback_p99_ms=.. storage_p50_ms=.. storage_p99_ms=.. sim_cpu_cores_per_1000=..
    sim_rss_mb_per_1000=.. broker_cpu_cores_per_1000=.. broker_rss_mb_per_1000=.. ...
    targets_met=true|false <every target>

Every size runs (each with a fresh local IoT Core); a miss is named on stderr and the exit is 22
(TARGET_MISSED) after every line was printed. Each run's summary, counters over time and CPU samples
are kept in --out, and the chart (sim/chart.py) is drawn from them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from contract import exit_codes
from sim import chart, cli

CODES = (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.TARGET_MISSED, exit_codes.SETUP_FAILED)
CADENCE_S = 30.0  # a telemetry message per device every 30 samples of 1 s: the firmware's default
SETTLE_S = 120.0  # how long the whole fleet runs connected after the ramp: four telemetry periods

# name -> (op, value, why). The same targets for every size: per-1,000 figures must not grow with the fleet.
TARGETS = {
    "connected_missing": ("<=", 0, "every device connected at the end"),
    "lost": ("<=", 0, "every telemetry message acknowledged and stored"),
    "handshakes_per_s": (">=", 30, "10,000 devices connected within about 6 minutes"),
    "steady_share": (">=", 0.9, "messages/s once connected is at least 90 % of devices/30 s: the cadence holds"),
    "puback_p99_ms": ("<=", 2000, "well inside the firmware's 5 s PUBACK timeout: no retransmission"),
    "storage_p99_ms": ("<=", 5000, "a telemetry message is in DynamoDB within 5 s"),
    "sim_cpu_cores_per_1000": ("<=", 0.1, "10,000 devices fit in one core"),
    "broker_cpu_cores_per_1000": ("<=", 0.1, "10,000 devices fit in one core"),
    "sim_rss_mb_per_1000": ("<=", 300, "10,000 devices in 3 GB"),
    "broker_rss_mb_per_1000": ("<=", 500, "10,000 devices in 5 GB"),
}


def steady_rate(timeline: list, devices: int) -> float | None:
    """Messages acknowledged per second from the moment the whole fleet was connected to the end."""
    full = [i for i, p in enumerate(timeline) if p["connected"] >= devices]
    if not full or full[0] >= len(timeline) - 2:
        return None
    a, b = timeline[full[0]], timeline[-1]
    done = sum(b[k] - a[k] for k in ("telemetry_acked", "events_acked", "acks_acked"))
    return round(done / max(1e-3, b["t"] - a["t"]), 1)


def figures(s: dict, timeline: list) -> dict:
    """One run's line, from the summary python -m sim run makes."""
    c, res = s["counters"], s.get("resources", {})
    devices = s["target_devices"]
    steady = steady_rate(timeline, devices)
    return {
        "devices": devices,
        "connected": c.get("connected_at_stop", 0),
        "connected_missing": devices - c.get("connected_at_stop", 0),
        "lost": s.get("lost"),
        "handshakes_per_s": s.get("handshakes_per_s"),
        "connect_failures": c.get("connect_failures", 0),
        "messages_per_s": s.get("messages_per_s"),
        "messages_per_s_steady": steady,
        "steady_share": round(steady / (devices / CADENCE_S), 3) if steady is not None else None,
        "puback_p50_ms": s.get("puback_all", {}).get("p50_ms"),
        "puback_p99_ms": s.get("puback_all", {}).get("p99_ms"),
        "storage_p50_ms": s["storage"]["p50_ms"],
        "storage_p99_ms": s["storage"]["p99_ms"],
        "storage_n": s["storage"]["n"],
        "connect_p50_ms": s["connect"]["p50_ms"],
        "connect_p99_ms": s["connect"]["p99_ms"],
        "sim_cpu_cores_per_1000": res.get("simulator_cpu_cores_per_1000"),
        "sim_rss_mb_per_1000": res.get("simulator_rss_mb_per_1000"),
        "broker_cpu_cores_per_1000": res.get("broker_cpu_cores_per_1000"),
        "broker_rss_mb_per_1000": res.get("broker_rss_mb_per_1000"),
        "telemetry_acked": c.get("telemetry_acked", 0),
        "stored_telemetry": s.get("stored", {}).get("telemetry"),
        "retransmissions": c.get("retransmissions", 0),
        "open_files_limit": s.get("open_files_limit"),
    }


def missed(row: dict) -> list:
    out = []
    for name, (op, want, why) in TARGETS.items():
        got = row.get(name)
        ok = got is not None and (got <= want if op == "<=" else got >= want)
        if not ok:
            out.append("devices=%d %s=%s, target %s %s (%s)" % (row["devices"], name, got, op, want, why))
    return out


def line(row: dict) -> str:
    return " ".join("%s=%s" % (k, "na" if v is None else v) for k, v in row.items())


def run_one(devices: int, rate: float, duration: float | None, workers: int, out: Path) -> dict:
    timeline = out / ("timeline-%d.jsonl" % devices)
    timeline.unlink(missing_ok=True)
    duration = duration or round(devices / rate + SETTLE_S)
    args = cli.parser().parse_args(["run", "--devices", str(devices), "--rate", str(rate), "--duration",
                                    str(duration), "--workers", str(workers), "--timeline", str(timeline)])
    args.locust_to_stderr = True  # our lines alone on stdout
    t0 = time.monotonic()
    s = cli.run_local(args)
    s["wall_s"] = round(time.monotonic() - t0, 1)
    tl = [json.loads(x) for x in timeline.read_text().splitlines() if x.strip()] if timeline.exists() else []
    kept = {"devices": devices, "rate": rate, "duration": duration, "summary": s, "timeline": tl,
            "usage": s.pop("usage_timeline", [])}
    (out / ("run-%d.json" % devices)).write_text(json.dumps(kept))
    return kept


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__,
                                epilog=exit_codes.epilog(CODES), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000", help="fleet sizes, comma-separated (default %(default)s)")
    p.add_argument("--rate", type=cli.positive(float), default=50.0, help="connects/s asked (default 50)")
    p.add_argument("--duration", type=cli.positive(float),
                   help="seconds per run (default: the ramp at --rate plus %d s)" % SETTLE_S)
    p.add_argument("--workers", type=int, default=0, help="Locust worker processes (default 0: one process)")
    p.add_argument("--out", default="build/bench-fleet", help="where runs are kept (default %(default)s)")
    p.add_argument("--chart", default="build/bench-fleet/fleet.svg", help="the chart (default %(default)s)")
    p.add_argument("--chart-only", action="store_true", help="redraw the chart from the runs kept in --out")
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
        if not sizes or min(sizes) < 1 or a.workers < 0:
            raise ValueError
    except ValueError:
        print("error: --sizes takes fleet sizes above 0 such as 1000,10000 (and --workers 0 or more), not %r" %
              a.sizes, file=sys.stderr)
        return exit_codes.BAD_INPUT
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runs, misses = [], []
    for n in sizes:
        if a.chart_only:
            path = out / ("run-%d.json" % n)
            if not path.exists():
                print("error: no kept run for %d devices in %s: run the benchmark first" % (n, out), file=sys.stderr)
                return exit_codes.BAD_INPUT
            runs.append(json.loads(path.read_text()))
            continue
        try:
            run = run_one(n, a.rate, a.duration, a.workers, out)
        except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as e:
            print("devices=%d setup_failed=%s" % (n, type(e).__name__), flush=True)
            print("error: the %d-device run could not run: %s" % (n, e), file=sys.stderr)
            return exit_codes.SETUP_FAILED
        row = figures(run["summary"], run["timeline"])
        print(line(row), flush=True)
        misses += missed(row)
        runs.append(run)
    Path(a.chart).parent.mkdir(parents=True, exist_ok=True)
    Path(a.chart).write_text(chart.svg(runs))
    if a.chart_only:
        print("chart=%s" % a.chart)
        return exit_codes.OK
    print("targets_met=%s %s chart=%s" % (str(not misses).lower(), " ".join(
        "%s%s%s" % (name, op, want) for name, (op, want, _why) in TARGETS.items()), a.chart), flush=True)
    for m in misses:
        print("bench-fleet: target missed: " + m, file=sys.stderr)
    return exit_codes.TARGET_MISSED if misses else exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
