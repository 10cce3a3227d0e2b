"""make bench-dashboard: the dashboard measured in Debian's Chromium (headless) against the local
demo stack (broker, rules engine, Lambdas, moto, the API and its Cognito authorizer, the dashboard
server) with a virtual ESP32 running the shipped firmware. Prints machine-readable lines:

    dashboard_bytes gzip=<bytes> raw=<bytes> files=<n> budget=102400
    dashboard_first_chart_ms p50=.. p99=.. n=..            navigation to a device page -> first chart drawn
    dashboard_fleet_load_ms devices=1000 p50=.. p99=.. n=..   navigation -> all 1,000 rows listed
    dashboard_fleet_render_ms devices=1000 p50=.. p99=.. n=..  one render of the 1,000 rows (sort or filter)
    dashboard_click_to_stop_ms p50=.. p99=.. n=..          a click on Stop -> PWM 0 on the running board

    python -m tests.dashboard.bench [--clicks 20] [--loads 20]

The 1,000 fleet devices are rows written straight into the devices and telemetry tables (one
telemetry batch each), not 1,000 running boards; the one board that runs is motor-001.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_stack import DashboardStack, find_chromium, sign_in, wait_for  # noqa: E402

BUDGET = 100 * 1024


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def line(name, values, **extra):
    fields = " ".join("%s=%s" % kv for kv in extra.items())
    print("%s %sp50=%.0f p99=%.0f n=%d" % (name, fields + " " if fields else "", statistics.median(values),
                                          pct(values, 99), len(values)), flush=True)


def bytes_line(page, web_dir: Path):
    """gzip -9 size of the script and style sheets the browser actually loaded."""
    urls = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    names = sorted({u.rsplit("/", 1)[-1] for u in urls if u.endswith((".js", ".css"))})
    raw = [(web_dir / n).read_bytes() for n in names]
    gz = sum(len(gzip.compress(b, 9)) for b in raw)
    print("dashboard_bytes gzip=%d raw=%d files=%d budget=%d" % (gz, sum(map(len, raw)), len(raw), BUDGET), flush=True)
    return gz


def seed_fleet(n: int):
    import boto3

    from cloud import resources
    from cloud.domain import history

    now = int(time.time() * 1000)
    devices = boto3.resource("dynamodb").Table(resources.TABLES["devices"][0])
    telemetry = boto3.resource("dynamodb").Table(resources.TABLES["telemetry"][0])
    states = ["RUNNING", "STOPPED", "RUNNING", "FAULT"]
    with devices.batch_writer() as dw, telemetry.batch_writer() as tw:
        for i in range(n):
            thing, state = "fleet-%04d" % i, states[i % len(states)]
            dw.put_item(Item={"device": thing, "state": state, "last_event": state, "last_event_ms": now - 60_000,
                              "boot": "00000001", "fw": "0.1.%d" % (i % 3), "reason": "overtemp" if state == "FAULT" else ""})
            samples = [{"time": now - 30_000 + k * 1000, "temperature_c": 20 + i % 30, "current_a": 0.1 * (i % 20),
                        "position": 90.0, "speed": 60, "state": state} for k in range(30)]
            msg = {"v": 1, "device": thing, "boot": "00000001", "fw": "0.1.0", "uptime_s": 1, "heap_free": 1,
                   "rssi": -50, "seq": 0, "dropped": 0, "samples": samples}
            tw.put_item(Item=history.telemetry_item(msg, 1)[0])


def first_chart(page, url, loads):
    out = []
    for _ in range(loads):
        page.goto("about:blank")
        page.goto(url + "#/device/motor-001")
        page.wait_for_function("() => performance.getEntriesByName('mg:first-chart').length > 0", timeout=15000)
        out.append(page.evaluate("(() => { const e = performance.getEntriesByName('mg:first-chart')[0];"
                                 " return e.startTime + e.duration; })()"))
    return out


def fleet(page, url, n, loads, renders):
    load_ms, render_ms = [], []
    for _ in range(loads):
        page.goto("about:blank")
        t0 = time.monotonic()
        page.goto(url)
        page.wait_for_function("() => document.querySelectorAll('table.fleet tbody tr').length >= %d" % n, timeout=60000)
        load_ms.append((time.monotonic() - t0) * 1000)
    for i in range(renders):
        before = page.evaluate("performance.getEntriesByName('mg:fleet-render').length")
        if i % 2:
            page.fill("#search", "fleet-0%d" % (i % 10))
        else:
            page.select_option("#sort", ["name", "temperature", "current", "seen", "state"][i % 5])
        page.wait_for_function("() => performance.getEntriesByName('mg:fleet-render').length > %d" % before)
        render_ms.append(page.evaluate("performance.getEntriesByName('mg:fleet-render').at(-1).duration"))
    page.fill("#search", "")
    return load_ms, render_ms


def click_to_stop(page, url, vm, clicks):
    page.goto(url + "#/device/motor-001")
    page.wait_for_selector("#stop")
    out = []
    for i in range(clicks):
        if vm.state != "RUNNING":
            vm.press("start")
            vm.wait_for_state("RUNNING", 5)
        vm.wait_until(lambda v: v.pwm_duty > 0, 3, "PWM on")
        t0 = time.time_ns()
        page.click("#stop")
        out.append(vm.watch_pwm_off_after(t0, timeout=10) / 1e6)
        # The ack on the page before the next click: one command at a time, as a person clicks.
        page.wait_for_function("() => document.querySelector('#command-feedback').textContent.includes('acknowledged')",
                               timeout=15000)
        vm.wait_for_state("STOPPED", 5)
    return out


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(prog="python -m tests.dashboard.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--loads", type=int, default=20)
    ap.add_argument("--fleet", type=int, default=1000)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="motorguard-bench-dashboard-") as home, DashboardStack(home) as stack:
        vm = stack.add_device("motor-001")
        vm.press("start")
        vm.wait_for_state("RUNNING", 5)
        wait_for(lambda: len(stack_samples(stack)) >= 30, 30, "a stored telemetry batch")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=find_chromium(), headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            sign_in(page, stack)
            gz = bytes_line(page, Path(stack.dashboard_dir))
            line("dashboard_first_chart_ms", first_chart(page, stack.dashboard.url, a.loads))
            line("dashboard_click_to_stop_ms", click_to_stop(page, stack.dashboard.url, vm, a.clicks))
            seed_fleet(a.fleet)
            load_ms, render_ms = fleet(page, stack.dashboard.url, a.fleet + 1, 3, 20)
            line("dashboard_fleet_load_ms", load_ms, devices=a.fleet)
            line("dashboard_fleet_render_ms", render_ms, devices=a.fleet)
            browser.close()
    return 0 if gz <= BUDGET else 1


def stack_samples(stack):
    import requests

    r = requests.get(stack.core.api.url + "/devices/motor-001/telemetry", timeout=10)
    return r.json().get("samples", []) if r.status_code == 200 else []


if __name__ == "__main__":
    sys.exit(main())
