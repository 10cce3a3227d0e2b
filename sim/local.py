"""The local side of a run: the local IoT Core to run against (started here, or a running make demo's
broker), what the cloud stored, and what each process cost (CPU and memory, read from /proc)."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from sim import summary

MAX_GATEWAY_WORKERS = 16
FILES_WANTED = 65536  # 10,000 devices: a socket each in the simulator, two each in the gateway, one in Mosquitto


def raise_open_files(wanted: int = FILES_WANTED) -> int:
    """Raises this process's open-file limit (its children, the broker and the gateway included,
    inherit it): the soft limit to the hard one, and the hard one too where we may (root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else max(hard, wanted)
    for limits in ((target, target), (min(target, hard) if hard != resource.RLIM_INFINITY else target, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def device_capacity(open_files: int) -> int:
    """How many devices one gateway process can hold under an open-file limit: two descriptors a device
    (its TLS socket and its unix socket to Mosquitto), less a few dozen of its own. The limit binds
    there first: the simulator needs one a device, Mosquitto one."""
    return max(0, (open_files - 64) // 2)


def gateway_workers_for(devices: int, open_files: int) -> int:
    """Gateway processes (cloud/local/gateway_workers.py) for a fleet: enough that each holds at most
    half of what its open files allow, so reconnects and probes have room; at least one, at most
    MAX_GATEWAY_WORKERS (past that the limit itself must be raised: the run then warns)."""
    per_process = max(1, device_capacity(open_files) // 2)
    return min(MAX_GATEWAY_WORKERS, max(1, -(-devices // per_process)))


def stop_core(core) -> None:
    """Stops the local IoT Core even when moto, busy after a large run, does not exit within the 10 s
    LocalCore.stop() gives it (which then skips the broker): moto is killed and the broker stopped."""
    import subprocess

    try:
        core.stop()
    except subprocess.SubprocessError:
        core.moto.proc.kill()
        core.moto.proc.wait(10)
        core.broker.stop()


def start_core(home, gateway_workers: int = 1):
    """The local IoT Core with moto in a process of its own (as make bench-cloud runs it)."""
    from cloud.tools.bench_fleet import start_core as start
    from provisioning import local as local_backend

    # Mosquitto keeps the rules engine's persistent session, queue included, in its state directory.
    # A run that ended before the engine drained it (measured: a 10,000-device run cut short) would
    # hand its messages to the next run, which would count them as its own: each run starts empty.
    (local_backend.broker_dir(Path(home)) / "mosquitto.db").unlink(missing_ok=True)
    return start(Path(home), workers=4, lambda_processes=1, gateway_workers=gateway_workers)


def attach(broker_dir):
    """A running broker (make demo's: <its home>/broker) to run against."""
    from cloud.local.broker import LocalBroker

    b = LocalBroker.from_state_dir(Path(broker_dir))
    if not b.running():
        raise RuntimeError("no broker runs from %s: start make demo first, or leave --broker-dir out" % broker_dir)
    return b


def count(table: str, prefix: str | None = None, key: str = "device") -> int:
    import boto3

    ddb = boto3.client("dynamodb")
    n, kw = 0, {"ProjectionExpression": "#k", "ExpressionAttributeNames": {"#k": key}}
    while True:
        r = ddb.scan(TableName=table, **kw)
        n += sum(1 for i in r["Items"] if prefix is None or i[key]["S"].startswith(prefix))
        if "LastEvaluatedKey" not in r:
            return n
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def alert_claims(prefix: str) -> tuple[int, int]:
    """(alert slots, distinct devices) in the state table for things named prefix*: one slot per device,
    event and reason, so a fault storm shows one per faulting device when de-duplication holds."""
    import boto3

    ddb = boto3.client("dynamodb")
    ids, kw = [], {}
    while True:
        r = ddb.scan(TableName="motorguard-state", **kw)
        ids += [i["id"]["S"] for i in r["Items"] if i["id"]["S"].startswith("alert#" + prefix)]
        if "LastEvaluatedKey" not in r:
            break
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]
    return len(ids), len({i.split("#")[1] for i in ids})


def wait_stored(expected_telemetry: int, prefix: str, timeout_s: float = 120.0) -> dict:
    """Waits until the telemetry table holds what the devices had acknowledged (or stops growing)."""
    deadline, last, still = time.monotonic() + timeout_s, -1, 0
    while True:
        tel = count(summary.TELEMETRY_TABLE, prefix)
        if tel >= expected_telemetry or time.monotonic() > deadline:
            break
        still = still + 1 if tel == last else 0
        if still >= 10:  # 20 s without a new item: what is missing is not coming
            break
        last = tel
        time.sleep(2.0)
    return {"telemetry": tel, "events": count(summary.EVENTS_TABLE, prefix)}


# ------------------------------------------------------------------ CPU and memory


def cpu_seconds(pid) -> float:
    try:
        fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid) -> float:
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, TypeError):
        pass
    return 0.0


def broker_pids(broker) -> list:
    """Mosquitto, the gateway and the gateway's other worker processes (cloud/local/gateway_workers.py)."""
    gw = broker.gateway_pid()
    pids = [broker.pid(), gw]
    try:
        pids += [int(p) for p in Path("/proc/%d/task/%d/children" % (gw, gw)).read_text().split()]
    except (OSError, TypeError, ValueError):
        pass
    return pids


class Usage:
    """CPU and peak memory of named groups of processes over a run (sampled every second by the caller)."""

    def __init__(self, groups: dict):
        self.groups = groups  # name -> [pid]
        self.cpu0 = {g: sum(cpu_seconds(p) for p in pids) for g, pids in groups.items()}
        self.peak = dict.fromkeys(groups, 0.0)
        self.t0 = time.monotonic()
        self.history = []  # (epoch s, {group: CPU seconds so far, group_mb: RSS}) for the chart

    def timeline(self) -> list:
        """CPU cores and RSS (MB) of each group between consecutive samples: [{"t", group: cores, ...}]."""
        out = []
        for (t0, a), (t1, b) in zip(self.history, self.history[1:]):
            row = {"t": round(t1, 2)}
            for g in self.groups:
                row[g + "_cores"] = round((b[g] - a[g]) / max(1e-3, t1 - t0), 3)
                row[g + "_mb"] = round(b[g + "_mb"], 1)
            out.append(row)
        return out

    def sample(self):
        for g, pids in self.groups.items():
            self.cpu0.setdefault(g, sum(cpu_seconds(p) for p in pids))
            self.peak.setdefault(g, 0.0)
            self.peak[g] = max(self.peak[g], sum(rss_mb(p) for p in pids))
        self.cpu1 = {g: sum(cpu_seconds(p) for p in pids) for g, pids in self.groups.items()}
        self.t1 = time.monotonic()
        point = dict(self.cpu1)
        point.update({g + "_mb": sum(rss_mb(p) for p in pids) for g, pids in self.groups.items()})
        self.history.append((time.time(), point))

    def per_thousand(self, devices: int) -> dict:
        k = max(devices, 1) / 1000.0
        secs = max(1e-3, self.t1 - self.t0)
        out = {}
        for g in self.groups:
            out["%s_cpu_cores_per_1000" % g] = round((self.cpu1[g] - self.cpu0[g]) / secs / k, 3)
            out["%s_rss_mb_per_1000" % g] = round(self.peak[g] / k, 1)
        return out
