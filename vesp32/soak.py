"""python -m vesp32.soak (make soak-outage): a long broker outage under the shipped firmware, with the
shipped settings (1 Hz, 30 samples a message, the default flash backlog), on virtual ESP32s with
the motor stopped, through the real broker. One machine-readable line per device:

    device=soak-1 samples_expected=3721 stored=3721 lost=0 seq_gaps=0 dropped_reported=0 drain_s=41.2 boots=1

then `soak_ok=true|false`. Exit 22 (TARGET_MISSED) on any loss or gap, 23 if it could not set up.
A sample counts as stored when the service identity received it (each (boot, seq) once; that every
message the firmware sends is schema-valid is the tests' job, tests/firmware/mqtt). Expected: one
a second from the first sample to the broker's return.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from cloud.local.broker import BrokerError, LocalBroker, free_port
from contract import console, exit_codes
from vesp32.harness import VirtualESP32

ROOT = Path(__file__).resolve().parents[1]
CODES = (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.TARGET_MISSED, exit_codes.SETUP_FAILED)


class Observer:
    """The service identity on devices/#: telemetry kept per device as {(boot, seq): message}."""

    def __init__(self, broker: LocalBroker):
        self.lock = threading.Lock()
        self.telemetry: dict[str, dict] = {}
        self.events: list[dict] = []
        self.invalid = 0
        self.subscriptions = 0
        self.client = broker.service_client("soak-%d" % time.monotonic_ns(), topics=[("devices/#", 1)],
                                            on_message=self._message, keepalive=10,
                                            setup=lambda c: c.reconnect_delay_set(0.1, 0.5))
        self.client.on_subscribe = self._subscribed  # counted from here: the SUBACK of each reconnect

    def _subscribed(self, *a):
        with self.lock:
            self.subscriptions += 1

    def _message(self, client, userdata, msg):
        kind = msg.topic.rsplit("/", 1)[-1]
        if kind not in ("telemetry", "events"):
            return
        try:
            body = json.loads(msg.payload)
            bad = not isinstance(body, dict) or "device" not in body
        except ValueError:
            bad = True
        with self.lock:
            if bad:
                self.invalid += 1
            elif kind == "telemetry":
                self.telemetry.setdefault(body["device"], {})[(body["boot"], body["seq"])] = (time.monotonic(), body)
            else:
                self.events.append(body)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def judge(obs: Observer, thing: str, back_ms: int, t_back: float) -> dict:
    with obs.lock:
        got = dict(obs.telemetry.get(thing, {}))
        dropped_events = [e for e in obs.events if e["device"] == thing and e["event"] == "BACKLOG_DROPPED"]
    times = sorted(s["time"] for _, m in got.values() for s in m["samples"])
    per_boot: dict[str, list[int]] = {}
    for boot, seq in got:
        per_boot.setdefault(boot, []).append(seq)
    gaps = sum(max(seqs) + 1 - len(seqs) for seqs in per_boot.values())
    expected = (min(back_ms, times[-1]) - times[0]) // 1000 + 1 if times else 0
    stored = len([t for t in times if t <= back_ms])
    last_arrival = max((t for t, _ in got.values()), default=t_back)
    return {"device": thing, "samples_expected": expected, "stored": stored, "lost": max(0, expected - stored),
            "seq_gaps": gaps, "dropped_reported": max((m["dropped"] for _, m in got.values()), default=0),
            "backlog_dropped_events": len(dropped_events), "drain_s": round(max(0.0, last_arrival - t_back), 1),
            "boots": len(per_boot), "reached_return": bool(times) and times[-1] >= back_ms - 3000}


def run(args) -> int:
    work = Path(tempfile.mkdtemp(prefix="mg-soak-"))
    broker = LocalBroker.with_new_pki(work / "broker", free_port())
    broker.start()
    obs = Observer(broker)
    boards = []
    try:
        for i in range(args.devices):
            thing = "soak-%d" % (i + 1)
            cfg = {"thing": thing, "wifi": {"ssid": "soak", "password": "soak"},
                   "mqtt": {"host": "localhost", "port": 8883}}
            vm = VirtualESP32(broker.device_dir(thing, work / thing, cfg), firmware_dir=ROOT / "firmware",
                              broker="%s:%d" % (broker.host, broker.port))
            vm.start()
            boards.append(vm)
        for vm in boards:
            vm.wait_for_line(console.ONLINE, 30)
        time.sleep(args.before_s)
        print("soak: broker down for %d s" % args.outage_s, file=sys.stderr, flush=True)
        broker.stop()
        time.sleep(args.outage_s)
        for vm in boards:
            vm.network("drop")  # until the observer listens again: what it missed would be the test's loss
        subs = obs.subscriptions
        broker.start()
        deadline = time.monotonic() + 30
        while obs.subscriptions == subs and time.monotonic() < deadline:
            time.sleep(0.1)
        t_back, back_ms = time.monotonic(), int(time.time() * 1000)
        for vm in boards:
            vm.network("pass")
        wait_until = t_back + args.drain_timeout_s
        rows = []
        while time.monotonic() < wait_until:
            rows = [judge(obs, vm.config["thing"], back_ms, t_back) for vm in boards]
            if all(r["reached_return"] and not r["seq_gaps"] and not r["lost"] for r in rows):
                break
            time.sleep(2.0)
        rows = [judge(obs, vm.config["thing"], back_ms, t_back) for vm in boards]
    finally:
        for vm in boards:
            vm.stop()
        obs.close()
        broker.stop()
    ok = obs.invalid == 0
    for r in rows:
        ok = ok and r["lost"] == 0 and r["seq_gaps"] == 0 and r["reached_return"]
        if args.json:
            print(json.dumps(r))
        else:
            print(" ".join("%s=%s" % (k, str(v).lower() if isinstance(v, bool) else v) for k, v in r.items()))
    print("soak_ok=%s outage_s=%d devices=%d invalid_messages=%d" % (str(ok).lower(), args.outage_s, args.devices,
                                                                    obs.invalid))
    return exit_codes.OK if ok else exit_codes.TARGET_MISSED


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vesp32.soak", description=__doc__.split("\n")[0],
                                epilog=exit_codes.epilog(CODES), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=1, help="virtual boards (default 1)")
    p.add_argument("--outage-s", type=int, default=3600, help="seconds the broker is away (default 3600)")
    p.add_argument("--before-s", type=int, default=40, help="seconds online before the outage (default 40)")
    p.add_argument("--drain-timeout-s", type=int, default=900, help="how long the drain may take (default 900)")
    p.add_argument("--json", action="store_true", help="one JSON object per device")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.devices < 1 or args.outage_s < 0:
        print("error: --devices must be >= 1 and --outage-s >= 0", file=sys.stderr)
        return exit_codes.BAD_INPUT
    try:
        return run(args)
    except (BrokerError, OSError, RuntimeError, AssertionError) as e:
        print("error: the soak could not run: %s" % e, file=sys.stderr)
        return exit_codes.SETUP_FAILED


if __name__ == "__main__":
    sys.exit(main())
