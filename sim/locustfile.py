"""The Locust side: each simulated device is a Locust User holding its own MQTT session over mutual TLS
as its own thing (sim/session.py, sim/device.py). Locust spawns them at the connect ramp (-r), gathers
their figures (the request event: handshake and PUBACK times, the device-to-storage probe) into its
statistics, web UI and CSV, and in distributed mode sums them on the master.

Configured by the environment, so master, workers and a Fargate task read the same (python -m sim
sets it): SIM_BROKER_HOST, SIM_BROKER_PORT, SIM_CA (the broker's CA, PEM), SIM_IDS (the identities'
directory, sim/identities.py), SIM_PREFIX, SIM_WORKERS, SIM_DURATION_S, SIM_SUMMARY (where the master
writes the run's summary, JSON), SIM_STORAGE_ENDPOINT + SIM_STORAGE_SAMPLE (the storage probe), and
the device settings of sim/device.py Settings. SIM_TIMELINE: where the master (or the one process)
appends a line of the fleet's counters every TIMELINE_S (the benchmark's chart). SIM_AWS_RUN_ID: the
AWS backend, each device makes its own identity in the account as it starts (sim/aws.py), so a
worker's shard of identities is made by that worker and no private key leaves its process.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time

import gevent
from locust import User, constant, events, task
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from sim import identities, summary
from sim.device import Counters, Device, Settings
from sim.session import Session

COUNTERS = Counters()  # this process's devices
_next = itertools.count()
_worker_snapshots: dict = {}  # on the master: worker id -> its devices' counters
SETTLE_S = 4.0  # a worker reports every 3 s: the master waits this long after the stop for the last figures


def _env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError("%s is not set: start the simulator with python -m sim (or make simulate)" % name)
    return value


class MotorGuardDevice(User):
    """One device. Its one task is its whole life: it returns only when Locust stops the user."""

    wait_time = constant(0)

    def on_start(self):
        runner = self.environment.runner
        workers = int(os.environ.get("SIM_WORKERS", "1"))
        index = next(_next) * workers + (runner.worker_index if isinstance(runner, WorkerRunner) else 0)
        thing = identities.thing_name(index, os.environ.get("SIM_PREFIX", identities.PREFIX))
        ca = _env("SIM_CA")
        if os.environ.get("SIM_AWS_RUN_ID"):
            from sim import aws

            thing, ids = aws.device_identity(os.environ["SIM_AWS_RUN_ID"], index)
        else:
            ids = _env("SIM_IDS")
        self.device = Device(thing, Settings(), COUNTERS)
        self.session = Session(self.device, _env("SIM_BROKER_HOST", "127.0.0.1"), int(_env("SIM_BROKER_PORT")),
                               lambda: identities.context(ids, thing, ca), report=self._report)
        global _probing
        if (os.environ.get("SIM_STORAGE_ENDPOINT") and _probing < int(os.environ.get("SIM_STORAGE_MAX", "100"))
                and random.random() < float(os.environ.get("SIM_STORAGE_SAMPLE", "0"))):
            _probing += 1  # capped: at 10,000 devices 5 % polling every 0.1 s swamped moto (docs/simulator.md)
            self.session.on_stored_probe = self._probe

    @task
    def live(self):
        self.session.run()

    def on_stop(self):
        self.session.finish()

    def _report(self, kind, name, seconds, error):
        self.environment.events.request.fire(request_type=kind, name=name, response_time=seconds * 1000.0,
                                             response_length=0, exception=error, context={})

    def _probe(self, device, message):
        gevent.spawn(_storage_probe, self._report, device, message)


_ddb = None
_probing = 0  # devices of this process that probe storage


def _storage_probe(report, device, message, timeout_s=60.0):
    """Device-to-storage time of one telemetry message: polls its DynamoDB item until it is there."""
    global _ddb
    import boto3

    from sim.summary import telemetry_key

    if _ddb is None:
        _ddb = boto3.client("dynamodb", endpoint_url=os.environ["SIM_STORAGE_ENDPOINT"])
    key = telemetry_key(device.thing, message.extra["first_ms"], device.boot, message.seq)
    pause = 0.1
    while time.monotonic() - message.first_sent < timeout_s:
        try:
            if "Item" in _ddb.get_item(TableName=summary.TELEMETRY_TABLE, Key=key, ProjectionExpression="device"):
                report("storage", "device-to-storage telemetry", time.monotonic() - message.first_sent, None)
                return
        except Exception:  # noqa: BLE001 - a probe must never take a device down; retried
            pass
        gevent.sleep(pause)
        pause = min(0.5, pause * 1.5)  # a backlog is not made worse by the probes piling onto it (±0.5 s)
    report("storage", "device-to-storage telemetry", timeout_s, TimeoutError("not stored within %d s" % timeout_s))


# ------------------------------------------------------------------ figures across processes


@events.report_to_master.add_listener
def _send_counters(client_id, data):
    data["sim_counters"] = COUNTERS.snapshot()


@events.worker_report.add_listener
def _gather_counters(client_id, data):
    if "sim_counters" in data:
        _worker_snapshots[client_id] = data["sim_counters"]


def fleet_counters(runner) -> dict:
    if isinstance(runner, MasterRunner):
        total = dict.fromkeys(Counters.FIELDS, 0)
        for snap in _worker_snapshots.values():
            for k, v in snap.items():
                if k == "first_connect":
                    total[k] = min(total.get(k) or v, v)
                elif k == "last_connect":
                    total[k] = max(total.get(k) or v, v)
                else:
                    total[k] = total.get(k, 0) + v
        total["workers"] = len(_worker_snapshots)
        return total
    return dict(COUNTERS.snapshot(), workers=1)


def _write_summary(environment):
    path = os.environ.get("SIM_SUMMARY")
    if path and not isinstance(environment.runner, WorkerRunner):
        counters = fleet_counters(environment.runner)
        counters["connected_at_stop"] = getattr(environment, "sim_connected_at_stop", counters["connected"])
        s = summary.from_locust(environment, counters)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(s, f)
        os.replace(tmp, path)


TIMELINE_S = 2.0


@events.init.add_listener
def _on_init(environment, **_kw):
    duration = float(os.environ.get("SIM_DURATION_S", "0") or 0)
    if isinstance(environment.runner, (MasterRunner, LocalRunner)) and duration > 0:
        gevent.spawn(_timed_run, environment, duration)
    if isinstance(environment.runner, (MasterRunner, LocalRunner)) and os.environ.get("SIM_TIMELINE"):
        gevent.spawn(_timeline, environment.runner, os.environ["SIM_TIMELINE"])


def _timeline(runner, path):
    """One JSON line every TIMELINE_S: the time and the fleet's counters (the master's are the
    workers' last reports, so up to 3 s old)."""
    keep = ("connected", "handshakes", "telemetry_acked", "events_acked", "acks_acked", "connect_failures")
    with open(path, "a") as f:
        while True:
            c = fleet_counters(runner)
            f.write(json.dumps(dict({k: c.get(k, 0) for k in keep}, t=round(time.time(), 2))) + "\n")
            f.flush()
            gevent.sleep(TIMELINE_S)


def _timed_run(environment, duration):
    """Ends the run after SIM_DURATION_S (counted from the first spawn, as -t does), lets the devices
    finish (on_stop drains what they hold) and the workers report, writes the summary and quits."""
    runner = environment.runner
    while runner.state not in ("spawning", "running"):
        gevent.sleep(0.2)
    started = time.monotonic()
    while time.monotonic() - started < duration:
        gevent.sleep(0.2)
    environment.sim_connected_at_stop = fleet_counters(runner)["connected"]
    runner.stop()
    if isinstance(runner, MasterRunner):
        gevent.sleep(SETTLE_S)
    _write_summary(environment)
    runner.quit()


@events.quitting.add_listener
def _on_quit(environment, **_kw):
    path = os.environ.get("SIM_SUMMARY")
    if path and not os.path.exists(path):
        _write_summary(environment)
