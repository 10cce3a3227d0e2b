"""Several gateway processes on one port behave as one gateway (cloud/local/gateway_workers.py): the
kernel spreads connections over them, and still every takeover is a DUPLICATE_CLIENTID, the policy and
its reload reach every process, each lifecycle event is published once, and stopping the broker ends
them all. Which process took a connection is read from the gateway's packet record."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

import contract
from cloud.local.broker import LocalBroker, free_port
from tests.cloud.local.test_gateway import Device, lifecycle, name, policy_without
from tests.cloud.waiting import waited
from tests.conftest import ServiceObserver

pytestmark = pytest.mark.broker

WORKERS = 3
CONNECTS = 15  # all on one worker by chance: (1/3)^14 per test


@pytest.fixture(scope="module")
def fleet_broker(tmp_path_factory):
    b = LocalBroker.with_new_pki(tmp_path_factory.mktemp("broker-workers"), free_port())
    b.gateway_workers = WORKERS
    b.record = b.state_dir / "record.jsonl"
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def creds(fleet_broker):
    made = {}

    def issue(thing):
        if thing not in made:
            made[thing] = {k: str(v) for k, v in fleet_broker.issue_device(thing).items()}
        return made[thing]

    return issue


@pytest.fixture
def watcher(fleet_broker):
    obs = ServiceObserver(fleet_broker, contract.LIFECYCLE_PREFIX + "#")
    yield obs
    obs.close()


def workers_of(broker, thing) -> list:
    """The worker of each CONNECT of thing, in order."""
    rows = [json.loads(line) for line in broker.record.read_text().splitlines()]
    return [r["worker"] for r in rows if r.get("client") == thing and r["type"] == "CONNECT"]


def children(pid) -> list[int]:
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(p) for p in f.read().split()]


def test_the_processes_share_the_port(fleet_broker):
    kids = children(fleet_broker.gateway_pid())
    assert len(kids) == WORKERS - 1
    log = fleet_broker.gateway_log_path.read_text()
    for i in range(WORKERS):
        assert "gateway worker %d of %d listening" % (i, WORKERS) in log


def test_every_takeover_is_a_duplicate_clientid_whichever_process_held_the_session(fleet_broker, creds, watcher):
    thing = name("gw-workers-dup")
    sessions = []
    try:
        for n in range(CONNECTS):
            d = Device(fleet_broker, creds(thing), thing)
            d.client.reconnect_delay_set(60, 120)
            sessions.append(d)
            if n:
                assert sessions[-2].disconnected.wait(5), "connect %d did not end the one before" % n
                assert waited(lambda: len(lifecycle(watcher, thing)) == n), "no disconnected event for connect %d" % n
        reasons = [e["disconnectReason"] for e in lifecycle(watcher, thing)]
        assert reasons == ["DUPLICATE_CLIENTID"] * (CONNECTS - 1)
        assert waited(lambda: len(lifecycle(watcher, thing, "connected")) >= CONNECTS)
        time.sleep(0.3)
        assert len(lifecycle(watcher, thing, "connected")) == CONNECTS  # each event published once
        placed = workers_of(fleet_broker, thing)
        crossed = sum(1 for a, b in zip(placed, placed[1:]) if a != b)
        assert crossed > 0, "every connect landed on one worker: the cross-process takeover was not tried"
    finally:
        for d in sessions:
            d.close()


def test_every_process_enforces_the_policy_and_reloads_it(fleet_broker, creds, watcher):
    """With iot:RetainPublish taken out and reloaded, a retained publish closes the connection in each
    process (the reload is waited for in every worker's log line)."""
    things = [name("gw-workers-pol%d" % i) for i in range(CONNECTS)]
    with policy_without(fleet_broker, "iot:RetainPublish"):
        for thing in things:
            d = Device(fleet_broker, creds(thing), thing, will=False)
            d.client.reconnect_delay_set(60, 120)
            d.publish(contract.topic(thing, contract.STATUS), b'{"online": true}', retain=True)
            assert d.disconnected.wait(5), "a worker accepted a retained publish the policy denies"
            d.close()
    for thing in things:
        assert waited(lambda: [e["disconnectReason"] for e in lifecycle(watcher, thing)] == ["AUTH_ERROR"])
    assert len({w for t in things for w in workers_of(fleet_broker, t)}) > 1
    other = name("gw-workers-other")
    d = Device(fleet_broker, creds(other), other, will=False)  # back to the full policy: publishes pass
    try:
        d.publish(contract.topic(other, contract.STATUS), b'{"online": true}', retain=True).wait_for_publish(5)
        assert not d.disconnected.wait(0.3)
    finally:
        d.close()


def test_stopping_the_broker_ends_every_process(tmp_path):
    b = LocalBroker.with_new_pki(tmp_path / "broker", free_port())
    b.gateway_workers = 2
    b.start()
    kids = children(b.gateway_pid())
    assert len(kids) == 1
    b.stop()
    for pid in kids:
        assert waited(lambda: not os.path.exists("/proc/%d" % pid) or _zombie(pid)), "worker %d outlived stop" % pid
    with pytest.raises(OSError):
        socket.create_connection((b.host, b.port), timeout=1).close()


def test_a_killed_first_worker_takes_the_others_with_it(tmp_path):
    b = LocalBroker.with_new_pki(tmp_path / "broker", free_port())
    b.gateway_workers = 2
    b.start()
    try:
        kids = children(b.gateway_pid())
        b._gateway.kill()
        b._gateway.wait(5)
        for pid in kids:
            assert waited(lambda: not os.path.exists("/proc/%d" % pid) or _zombie(pid)), "an orphan worker kept the port"
    finally:
        b.stop()


def _zombie(pid) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


