"""Locust's distributed mode as the Fargate stack runs it (one master, two worker processes, the same
entry point) against the local broker: the master gathers one summary whose figures are the fleet's."""

from __future__ import annotations

import json
import os

import pytest

from sim import cli, identities

pytestmark = pytest.mark.broker


def test_master_and_two_workers_gather_one_correct_summary(broker, tmp_path):
    n = 8
    ids = identities.ensure(tmp_path / "ids", broker.ca_cert, broker.ca_key, n)
    out = tmp_path / "summary.json"
    port = 20000 + os.getpid() % 20000
    env = dict(os.environ, SIM_BROKER_HOST=broker.host, SIM_BROKER_PORT=str(broker.port), SIM_CA=str(broker.ca_cert),
               SIM_IDS=ids["dir"], SIM_SUMMARY=str(out), SIM_WORKERS="2", SIM_DURATION_S="6",
               SIM_SAMPLE_PERIOD_MS="100", SIM_SAMPLES_PER_MESSAGE="5")
    codes = cli.run_locust(cli.locust_commands(n, 8, 2, False, port, None), env, timeout_s=90)
    assert codes == [0, 0, 0]
    s = json.loads(out.read_text())
    c = s["counters"]
    assert c["workers"] == 2
    assert c["devices"] == n and c["connected_at_stop"] == n and c["connect_failures"] == 0
    assert c["telemetry_made"] > 2 * n and c["telemetry_acked"] == c["telemetry_made"] - c["unacked_at_end"]
    assert c["unacked_at_end"] == 0
    assert s["connect"]["n"] == n  # Locust's own statistics, summed by the master
    assert s["puback"]["telemetry"]["n"] == c["telemetry_acked"]
