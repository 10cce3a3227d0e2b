"""scripts/cdk.sh as run: what it hands the CDK CLI, in which order, and that a failed preflight deploys
nothing. The CLI (npx) is a stand-in that records its arguments; so is the preflight module (its own
checks are tests/cloud/infra/test_preflight.py); the account comes from STS, a moto server here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.local import moto_env
from contract import exit_codes

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "cdk.sh"

FAKE_NPX = """#!/usr/bin/env bash
echo "npx $*" >> "$CALLS"
"""
# The project's python, except that `-m cloud.infra.preflight` only records its call and exits with
# PREFLIGHT_EXIT.
FAKE_PY = """#!/usr/bin/env bash
if [ "$1" = -m ] && [ "$2" = cloud.infra.preflight ]; then echo "preflight ${*:3}" >> "$CALLS"; exit "$PREFLIGHT_EXIT"; fi
exec %s "$@"
"""


@pytest.fixture(scope="module")
def sts_url():
    server = moto_env.MotoServer().start(provision=False)
    yield server.url
    server.stop()


def cdk_sh(tmp_path, sts_url, *args, preflight_exit=0, region="eu-west-1"):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "npx").write_text(FAKE_NPX)
    (bin_dir / "py").write_text(FAKE_PY % sys.executable)
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = {"PATH": "%s:/usr/bin:/bin" % bin_dir, "PY": str(bin_dir / "py"), "CALLS": str(calls),
           "PREFLIGHT_EXIT": str(preflight_exit), "AWS_ENDPOINT_URL": sts_url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    if region:
        env["AWS_REGION"] = region  # the CDK CLI's variable, which boto3 alone would not read
    r = subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return r, calls.read_text().splitlines()


def test_deploy_synthesizes_once_checks_that_assembly_then_deploys_it(tmp_path, sts_url):
    r, calls = cdk_sh(tmp_path, sts_url, "deploy", "-c", "reserved_concurrency=off")
    assert r.returncode == 0, r.stderr
    app = "%s -m cloud.infra.app" % (tmp_path / "bin" / "py")
    assert calls == [
        "npx --yes aws-cdk@2 synth --app %s --output build/cdk.out --quiet -c reserved_concurrency=off" % app,
        "preflight build/cdk.out",
        "npx --yes aws-cdk@2 bootstrap aws://123456789012/eu-west-1 --app build/cdk.out",
        "npx --yes aws-cdk@2 deploy --app build/cdk.out --require-approval never",
    ]


def test_a_failed_preflight_deploys_nothing_and_keeps_its_exit_code(tmp_path, sts_url):
    r, calls = cdk_sh(tmp_path, sts_url, "deploy", preflight_exit=exit_codes.CHECK_FAILED)
    assert r.returncode == exit_codes.CHECK_FAILED
    assert [c.split()[3] if c.startswith("npx") else c.split()[0] for c in calls] == ["synth", "preflight"]


def test_synth_needs_no_account_and_runs_no_preflight(tmp_path, sts_url):
    r, calls = cdk_sh(tmp_path, "http://127.0.0.1:9", "synth", "-c", "reserved_concurrency=off")
    assert r.returncode == 0, r.stderr
    assert len(calls) == 1 and " synth " in calls[0] and calls[0].endswith("-c reserved_concurrency=off")


def test_deploy_without_a_region_stops_before_the_cli_and_says_how_to_set_one(tmp_path, sts_url):
    r, calls = cdk_sh(tmp_path, sts_url, "deploy", region=None)
    assert r.returncode == exit_codes.NO_CREDENTIALS and calls == []
    assert "AWS_REGION or AWS_DEFAULT_REGION" in r.stderr
