"""What the 10,000-device run taught sim/local.py: the gateway's open-file ceiling is said before a
run, a busy moto cannot leave the broker running nor lose the run's summary, and a run starts with
no queue left by the one before."""

from __future__ import annotations

import subprocess

from sim import local


def test_the_gateway_needs_two_descriptors_a_device():
    assert local.device_capacity(20000) == 9968  # measured here: 9,995 connected, then EMFILE
    assert local.device_capacity(65536) > 10000
    assert local.device_capacity(10) == 0


def test_a_fleet_past_one_gateway_process_gets_several():
    assert local.gateway_workers_for(1000, 20000) == 1
    assert local.gateway_workers_for(10000, 20000) == 3  # each process at most half full
    assert local.gateway_workers_for(10000, 65536) == 1
    assert local.gateway_workers_for(10000, 10) == local.MAX_GATEWAY_WORKERS


class _Proc:
    def __init__(self):
        self.killed = False

    def kill(self):
        self.killed = True

    def wait(self, timeout):
        return 0


class _Core:
    def __init__(self):
        self.moto = type("M", (), {"proc": _Proc()})()
        self.broker = type("B", (), {"stopped": False, "stop": lambda b: setattr(b, "stopped", True)})()

    def stop(self):
        raise subprocess.TimeoutExpired("moto_server", 10)


def test_a_moto_that_will_not_exit_is_killed_and_the_broker_still_stopped():
    core = _Core()
    local.stop_core(core)
    assert core.moto.proc.killed and core.broker.stopped


def test_a_run_starts_without_the_previous_runs_queue(tmp_path, monkeypatch):
    from provisioning import local as local_backend

    stale = local_backend.broker_dir(tmp_path) / "mosquitto.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"queued messages of a run cut short")
    started = []
    monkeypatch.setattr("cloud.tools.bench_fleet.start_core", lambda home, **kw: started.append(home) or "core")
    assert local.start_core(tmp_path) == "core"
    assert not stale.exists() and started == [tmp_path]


def test_the_broker_s_cost_counts_every_gateway_process(tmp_path):
    from cloud.local.broker import LocalBroker, free_port

    b = LocalBroker.with_new_pki(tmp_path / "broker", free_port())
    b.gateway_workers = 3
    b.start()
    try:
        pids = local.broker_pids(b)
        assert len(set(pids)) == 4 and b.pid() in pids and b.gateway_pid() in pids
        assert all(local.rss_mb(p) > 0 for p in pids)
    finally:
        b.stop()
