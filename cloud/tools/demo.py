"""make demo: the whole MotorGuard system on one machine.

    python -m cloud.tools.demo [--duration SECONDS] [--home DIR]

Starts the local IoT Core (Mosquitto with mutual TLS, AWS services in moto, the rules engine
running the real Lambdas, the REST API), provisions three virtual ESP32s with the local backend,
runs the shipped firmware on them, serves the web dashboard on 127.0.0.1 (signed in as the demo user
it creates and prints), and shows a live view. motor-001 accepts a remote start (the dashboard
offers Start for it). motor-002 overloads and FAULTs after a
short while (an alert goes out; it is reset at the machine later); motor-003 loses its network for a
minute while running and catches up once its motor is stopped. Ctrl-C shuts everything down;
--duration runs unattended and ends with a summary. A demo that cannot set itself up (no Mosquitto,
no MicroPython, a broker that does not start) says why and exits with a code of
contract/exit_codes.py (--help lists them).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import contract
from cloud import resources
from cloud.tools import demo_fleet
from cloud.local.broker import BrokerError, free_port
from cloud.local.core import LocalCore
from cloud.local.dashboard import DashboardServer
from contract import exit_codes
from provisioning import local as local_backend
from provisioning.errors import ProvisionError

DEVICES = [("motor-001", "steady"), ("motor-002", "overload"), ("motor-003", "flaky-network")]
REMOTE_START = {"motor-001"}  # provisioned with --remote-start: the dashboard offers Start for it
DEMO_USER = "demo"
# The shipped 30 samples a message, sampled at 5 Hz instead of 1 Hz so that a short demo
# shows a full-size message every 6 s (and a replay of several after motor-003's outage).
SAMPLE_PERIOD_MS = 200
CODES = (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.BROKER_MISSING, exit_codes.SETUP_FAILED)


class Watch:
    """The cloud side as the demo shows it: alerts from SNS (through an SQS subscription), the DLQ depth."""

    def __init__(self, core):
        import boto3

        self.sqs = boto3.client("sqs")
        self.queue = self.sqs.create_queue(QueueName="demo-alert-watch")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        boto3.client("sns").subscribe(TopicArn=core.moto.arns["alerts_topic_arn"], Protocol="sqs", Endpoint=arn)
        self.dlq = core.moto.arns["dead_letter_queue_url"]
        self.alerts = []  # (time, subject)

    def poll(self):
        r = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)
        for m in r.get("Messages", []):
            self.alerts.append((time.strftime("%H:%M:%S"), json.loads(m["Body"]).get("Subject", "?")))
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])

    def rejected(self) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.dlq, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def stored_counts() -> dict:
    import boto3

    ddb = boto3.client("dynamodb")
    out = {}
    for logical in ("telemetry", "events"):
        name = resources.TABLES[logical][0]
        n, kw = 0, {"Select": "COUNT"}
        while True:
            r = ddb.scan(TableName=name, **kw)
            n += r["Count"]
            if "LastEvaluatedKey" not in r:
                break
            kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]
        out[logical] = n
    return out


def view(core, devices, watch, started, rate):
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    t = Table(title="MotorGuard demo: %ds   API %s" % (time.monotonic() - started, core.api.url), expand=True)
    for col in ("device", "scenario", "state", "PWM", "LEDs", "MQTT", "network", "next step"):
        t.add_column(col)
    for d in devices:
        vm = d.vm
        leds = " ".join("%s" % n for n, v in sorted(vm.leds.items()) if v) or "-"
        pending = [a for at, a in demo_fleet.SCENARIOS[d.scenario] if (at, a) not in d.done]
        style = {"FAULT": "bold red", "RUNNING": "green"}.get(vm.state, "")
        t.add_row(d.thing, d.scenario, "[%s]%s[/]" % (style, vm.state) if style else str(vm.state),
                  "%.2f ms" % (vm.pwm_duty / 1e6), leds, "online" if d.online() else "offline", d.network_mode(),
                  pending[0] if pending else "-")
    st = core.engine.stats()
    fired = ", ".join("%s %d" % (k.replace("motorguard_", ""), v) for k, v in sorted(st["fired"].items())) or "-"
    lines = ["messages in: %d (%.1f/s)   rules fired: %s   actions ok/failed: %d/%d   rejected (DLQ): %d" % (
        st["received"], rate, fired, st["actions_ok"], st["actions_failed"], watch.rejected())]
    lines += ["alert %s  %s" % a for a in watch.alerts[-5:]] or ["no alerts yet"]
    return Group(t, Panel("\n".join(lines), title="cloud"))


def run(duration=None, home=None, out=sys.stdout) -> dict:
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out)
    tmp = None
    if home is None:
        tmp = tempfile.mkdtemp(prefix="motorguard-demo-")
        home = Path(tmp)
    core = LocalCore(home, broker_port=free_port())
    dashboard = None
    devices = []
    runner = None
    stop = threading.Event()
    old = signal.signal(signal.SIGINT, lambda *a: stop.set())
    summary = {}
    try:
        console.print("starting the local IoT Core (gateway with mTLS and the device policy, Mosquitto, moto, rules engine, API) in %s" % home)
        core.start()
        watch = Watch(core)
        password = "Demo-%s-1" % secrets.token_hex(6)  # a fresh one each run (the pool's policy: 12+, mixed case, digit)
        core.users.add_user(DEMO_USER, password)
        dashboard = DashboardServer(core.api.url, core.users.page_config()).start()
        for thing, scenario in DEVICES:
            r = local_backend.provision_device(home, thing, wifi_ssid="demo-lab", wifi_password="demo-pass",
                                               remote_start=thing in REMOTE_START)
            demo_fleet.register_thing(thing, thing in REMOTE_START)
            bundle = Path(r["bundle"])
            cfg = json.loads((bundle / contract.CONFIG_FILE).read_text())
            cfg["telemetry"] = {"sample_period_ms": SAMPLE_PERIOD_MS}
            (bundle / contract.CONFIG_FILE).write_text(json.dumps(cfg))
            d = demo_fleet.DemoDevice(thing, scenario, bundle)
            d.start("%s:%d" % (core.broker.host, core.broker.port))
            devices.append(d)
            console.print("provisioned and booted %s (%s)" % (thing, scenario))
        console.print("API: %s   (try: curl %s/devices)" % (core.api.url, core.api.url))
        console.print("dashboard: %s (user %s, password %s)" % (dashboard.url, DEMO_USER, password), soft_wrap=True)
        runner = demo_fleet.FleetRunner(devices)
        runner.start()
        started = time.monotonic()
        last_n, last_t, rate = 0, started, 0.0
        with Live(view(core, devices, watch, started, rate), console=console, refresh_per_second=2,
                  transient=False) as live:
            while not stop.is_set():
                if duration and time.monotonic() - started >= duration:
                    break
                stop.wait(1.0)
                watch.poll()
                n, now = core.engine.stats()["received"], time.monotonic()
                rate = (n - last_n) / max(1e-6, now - last_t)
                last_n, last_t = n, now
                live.update(view(core, devices, watch, started, rate))
        elapsed = time.monotonic() - started
        watch.poll()
        st = core.engine.stats()
        stored = stored_counts()
        summary = {"seconds": round(elapsed, 1), "devices": len(devices), "messages_sent": st["received"],
                   "telemetry_batches_stored": stored["telemetry"], "events_stored": stored["events"],
                   "rejected": watch.rejected(), "alerts": len(watch.alerts), "rule_errors": st["error_actions"],
                   "api": core.api.url, "dashboard": dashboard.url}
        console.print("summary: " + " ".join("%s=%s" % kv for kv in summary.items()))
    except (BrokerError, ProvisionError, FileNotFoundError) as e:  # the broker, or no micropython to run on
        console.print("demo: %s" % e)
        code = getattr(e, "code", None)
        summary = {"error": str(e), "exit_code": code if code == exit_codes.BROKER_MISSING else exit_codes.SETUP_FAILED}
    finally:
        signal.signal(signal.SIGINT, old)
        console.print("shutting down")
        if runner:
            runner.stop()
        else:
            for d in devices:
                d.stop()
        if dashboard:
            dashboard.stop()
        core.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloud.tools.demo", description=__doc__, epilog=exit_codes.epilog(CODES),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, help="run this many seconds, then print a summary and stop")
    ap.add_argument("--home", help="provisioning home to use (default: a fresh temporary one)")
    a = ap.parse_args(argv)
    summary = run(a.duration, a.home)
    return summary.get("exit_code", exit_codes.OK)


if __name__ == "__main__":
    sys.exit(main())
