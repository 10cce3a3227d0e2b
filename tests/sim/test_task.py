"""The container's entry point (python -m sim.task, sim/Dockerfile's ENTRYPOINT) run as the Fargate
stack runs it, one master and two workers, here as three local processes against the local broker:
the master gathers one summary of the whole fleet, logs it as one line and writes it to the results
bucket (moto's S3). And a task told nonsense says what is wrong before it starts anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
import requests

from cloud.local import moto_env
from contract import exit_codes
from sim import identities, task

pytestmark = pytest.mark.broker
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def s3(monkeypatch):
    server = moto_env.MotoServer().start()
    requests.post(server.url + "/moto-api/reset")  # moto's state is per process, not per server
    for k, v in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1"),
                 ("AWS_ENDPOINT_URL", server.url)):
        monkeypatch.setenv(k, v)
    boto3.client("s3").create_bucket(Bucket="sim-results")
    try:
        yield server
    finally:
        server.stop()


def test_master_and_two_worker_tasks_gather_one_summary_into_the_bucket(broker, s3, tmp_path):
    n = 6
    ids = identities.ensure(tmp_path / "ids", broker.ca_cert, broker.ca_key, n)
    port = 21000 + os.getpid() % 20000
    base = dict(os.environ, SIM_BROKER_HOST=broker.host, SIM_BROKER_PORT=str(broker.port), SIM_CA=str(broker.ca_cert),
                SIM_IDS=ids["dir"], SIM_WORKERS="2", SIM_MASTER_PORT=str(port), SIM_SAMPLE_PERIOD_MS="100",
                SIM_SAMPLES_PER_MESSAGE="5", PYTHONPATH=ROOT)
    master_env = dict(base, SIM_ROLE="master", SIM_DEVICES=str(n), SIM_RATE="6", SIM_DURATION_S="6",
                      SIM_RESULTS_BUCKET="sim-results", SIM_RUN_LABEL="t3", SIM_SUMMARY=str(tmp_path / "s.json"))
    worker_env = dict(base, SIM_ROLE="worker", SIM_MASTER_HOST="127.0.0.1")
    cmd = [sys.executable, "-m", "sim.task"]
    master = subprocess.Popen(cmd, env=master_env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    workers = [subprocess.Popen(cmd, env=worker_env, stdout=subprocess.DEVNULL, cwd=ROOT) for _ in range(2)]
    try:
        out, _ = master.communicate(timeout=90)
        codes = [master.returncode] + [w.wait(30) for w in workers]
    finally:
        for p in [master] + workers:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0, 0], out
    (line,) = [x for x in out.splitlines() if x.startswith("sim-summary ")]
    logged = json.loads(line.split(" ", 1)[1])
    stored = json.loads(boto3.client("s3").get_object(Bucket="sim-results", Key="runs/t3/summary.json")["Body"].read())
    assert stored == logged
    c = stored["counters"]
    assert c["workers"] == 2 and c["devices"] == n and c["connected_at_stop"] == n and c["connect_failures"] == 0
    assert c["telemetry_made"] > n and c["telemetry_acked"] == c["telemetry_made"] and c["unacked_at_end"] == 0
    assert stored["puback_all"]["n"] == c["telemetry_acked"] + c["events_acked"] + c["acks_acked"]
    assert "sim-results s3://sim-results/runs/t3/summary.json" in out


@pytest.mark.parametrize("env, words", [
    ({}, "SIM_WORKERS"),
    ({"SIM_WORKERS": "2", "SIM_ROLE": "boss"}, "master or worker"),
    ({"SIM_WORKERS": "2", "SIM_ROLE": "worker"}, "SIM_MASTER_HOST"),
    ({"SIM_WORKERS": "2", "SIM_ROLE": "master", "SIM_DEVICES": "many"}, "SIM_DEVICES"),
    ({"SIM_WORKERS": "0", "SIM_ROLE": "master"}, "above 0"),
])
def test_a_misconfigured_task_says_what_is_wrong(env, words):
    with pytest.raises(task.Misconfigured, match=words):
        task.command(env)


def test_the_task_s_help_ends_with_its_exit_codes():
    r = subprocess.run([sys.executable, "-m", "sim.task", "--help"], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == exit_codes.OK
    assert r.stdout.rstrip("\n").endswith(exit_codes.epilog(task.CODES))
