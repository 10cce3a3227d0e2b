"""The fleet and the local IoT Core that `make bench-cloud` (cloud/tools/bench.py) drives: message
factories, devices that publish with their own certificates, moto in a process of its own, and the
CPU accounting of each part. Split from the benchmarks themselves, which read their figures off it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import contract
from cloud import resources
from cloud.local import moto_env

SAMPLES_PER_MESSAGE = 30  # firmware/motorguard/config.py DEFAULTS["telemetry"]["samples_per_message"]


class SetupFailed(RuntimeError):
    """The benchmark could not set itself up (its devices did not connect, a publisher died)."""

def telemetry(device, seq, t0, n=SAMPLES_PER_MESSAGE):
    return {"v": contract.MESSAGE_VERSIONS["telemetry"], "device": device, "boot": "0badc0de", "fw": "0.1.0",
            "uptime_s": seq * n, "heap_free": 20000, "rssi": -60, "seq": seq, "dropped": 0,
            "samples": [{"time": t0 + i * 1000, "temperature_c": round(30 + (i % 7) * 0.3, 1), "current_a": 0.812,
                         "position": 90.0 + i, "speed": 60, "state": "RUNNING"} for i in range(n)]}


def fault(device, seq):
    return {"v": contract.MESSAGE_VERSIONS["event"], "device": device, "boot": "0badc0de", "fw": "0.1.0",
            "uptime_s": 10, "heap_free": 20000, "rssi": -60, "seq": seq, "dropped": 0, "time": int(time.time() * 1000),
            "event": "FAULT", "state": "FAULT", "reason": "overcurrent", "temperature_c": 30.1, "current_a": 3.2}


class MotoProcess:
    """moto's server in its own process, so it does not share a core (and the GIL) with the engine."""

    def __init__(self):
        self.port = moto_env.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        exe = Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def start(self):
        import urllib.request

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        self.arns = moto_env.create_resources(self.url)
        moto_env.use_endpoint(self.url)
        return self

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Device:
    def __init__(self, broker, thing):
        import paho.mqtt.client as mqtt

        creds = broker.issue_device(thing)
        self.thing = thing
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=thing, protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context(creds["cert_pem"], creds["key_pem"]))
        c.max_inflight_messages_set(20)  # what the broker allows a device; the rest waits in paho
        c.max_queued_messages_set(0)
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c

    def publish(self, topic, msg):
        return self.client.publish(topic, json.dumps(msg, separators=(",", ":")), qos=1)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def count_items(table_logical):
    import boto3

    ddb = boto3.client("dynamodb")
    n, kw = 0, {"Select": "COUNT"}
    while True:
        r = ddb.scan(TableName=resources.TABLES[table_logical][0], **kw)
        n += r["Count"]
        if "LastEvaluatedKey" not in r:
            return n
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def start_core(home, workers, functions=None, lambda_processes=2, gateway_workers=1):
    from cloud.local.core import LocalCore
    from cloud.local.broker import free_port

    return LocalCore(home, broker_port=free_port(), workers=workers, functions=functions,
                     moto_factory=MotoProcess, lambda_processes=lambda_processes,
                     gateway_workers=gateway_workers).start()


def telemetry_payloads(device, per, t0_ms):
    """The JSON of telemetry(device, seq, ...) for seq in range(per), rendered up front so that the
    publishing process spends its time publishing."""
    return [json.dumps(telemetry(device, seq, t0_ms + seq * SAMPLES_PER_MESSAGE * 1000),
                       separators=(",", ":")).encode() for seq in range(per)]


def publish_fleet(state_dir, port, things, per, t0_ms, ready, go, finish):
    """In a process of its own (the devices are not part of what is measured, and must not share an
    interpreter lock with the engine): connects the things, renders their messages, says ready, waits
    for go, publishes them all (QoS 1), and once the broker acknowledged every one waits for finish
    (so that its CPU time can still be read)."""
    from cloud.local.broker import LocalBroker

    broker = LocalBroker.from_state_dir(state_dir, port)
    fleet = [Device(broker, t) for t in things]
    payloads = {d.thing: telemetry_payloads(d.thing, per, t0_ms) for d in fleet}
    ready.set()
    go.wait()

    sent = {d.thing: [] for d in fleet}

    def run(d):
        topic = contract.topic(d.thing, contract.TELEMETRY)
        for body in payloads[d.thing]:
            sent[d.thing].append(d.client.publish(topic, body, qos=1))

    threads = [threading.Thread(target=run, args=(d,)) for d in fleet]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for d in fleet:
        for info in sent[d.thing]:
            info.wait_for_publish(60)  # the broker's PUBACK
        d.close()
    finish.wait(900)


def cpu_seconds(pid) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 where there is none)."""
    try:
        fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_part(core, publishers) -> dict:
    import multiprocessing

    pubs = {p.pid for p in publishers}
    parts = {"engine": [os.getpid()], "moto": [core.moto.proc.pid], "broker": [core.broker.pid()],
             "gateway": [core.broker.status().get("gateway_pid")],
             "publishers": list(pubs),
             "lambda": [c.pid for c in multiprocessing.active_children() if c.pid not in pubs]}
    return {name: sum(cpu_seconds(pid) for pid in pids if pid) for name, pids in parts.items()}
