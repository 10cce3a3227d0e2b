"""The AWS backend of python -m sim run, against moto's IoT (a server: Locust's processes reach it
too). Each device makes its own identity in the account as Locust starts it, and the run's things and
certificates are gone afterwards, also when the run failed: here no device can connect (the endpoint
refuses), and in the second test the simulator itself dies. The ramp is held to the CONNECT quota."""

from __future__ import annotations

import json

import boto3
import pytest
import requests

from cloud.local import moto_env
from contract import exit_codes
from provisioning import policy
from sim import aws, cli


@pytest.fixture
def iot(monkeypatch):
    server = moto_env.MotoServer().start()
    requests.post(server.url + "/moto-api/reset")  # moto's state is per process, not per server
    for k, v in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_DEFAULT_REGION", "us-east-1"),
                 ("AWS_ENDPOINT_URL", server.url)):
        monkeypatch.setenv(k, v)
    c = boto3.client("iot")
    c.create_policy(policyName=policy.POLICY_NAME, policyDocument=policy.document_json())
    c.create_thing(thingName="motor-001")  # the user's own: must survive every clean-up
    try:
        yield c
    finally:
        server.stop()


def _left(iot):
    things = [t["thingName"] for t in iot.list_things()["things"]]
    return things, iot.list_certificates()["certificates"]


def test_a_run_where_no_device_connects_still_cleans_up_every_identity_it_made(iot, capsys):
    refused = "127.0.0.1:%d" % moto_env.free_port()  # nothing listens there
    code = cli.main(["run", "--backend", "aws", "--devices", "3", "--rate", "3", "--duration", "4", "--run-id", "t5",
                     "--endpoint", refused, "--json"])
    out, err = capsys.readouterr()
    assert code == exit_codes.OK, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["backend"] == "aws" and s["run_id"] == "t5" and s["endpoint"] == "127.0.0.1"
    assert s["cleanup"] == {"things": 3, "certificates": 3}, "each device made its own identity, and it is gone"
    assert s["counters"]["connect_failures"] >= 3 and s["counters"]["devices"] == 0
    assert _left(iot) == (["motor-001"], [])
    assert "cleanup run=t5 things=3 certificates=3" in err


def test_a_simulator_that_dies_mid_run_leaves_nothing_behind(iot, monkeypatch, capsys):
    def dies(cmds, env, *a, **kw):
        aws.make_identities(iot, env["SIM_AWS_RUN_ID"], 0, 2)  # what its devices had made by then
        raise RuntimeError("the simulator's processes did not finish in 5 s")

    monkeypatch.setattr(cli, "run_locust", dies)
    code = cli.main(["run", "--backend", "aws", "--devices", "2", "--run-id", "t6", "--endpoint", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == exit_codes.SERVICE_ERROR and "did not finish" in err
    assert "cleanup run=t6 things=2 certificates=2" in err
    assert _left(iot) == (["motor-001"], [])


def test_the_ramp_is_held_to_the_accounts_connect_quota(iot, capsys):
    assert cli.main(["run", "--backend", "aws", "--devices", "2", "--rate", "150"]) == exit_codes.BAD_INPUT
    assert "above AWS IoT Core's 100 CONNECTs/s" in capsys.readouterr().err
    with pytest.raises(ValueError, match="quota"):
        aws.check_rate(600, 500)
    aws.check_rate(500, 500)  # an account whose quota was raised


def test_a_missing_device_policy_is_named_before_anything_is_made(iot, capsys):
    iot.delete_policy(policyName=policy.POLICY_NAME)
    assert cli.main(["run", "--backend", "aws", "--devices", "2", "--endpoint", "127.0.0.1:1"]) == exit_codes.BAD_INPUT
    assert "provision policy update" in capsys.readouterr().err
    assert _left(iot) == (["motor-001"], [])


def test_fargate_deploys_the_checked_run_and_refuses_a_bad_one(capsys):
    assert cli.main(["aws", "fargate", "--devices", "6000", "--workers", "2", "--run-id", "f1", "--dry-run"]) == \
        exit_codes.BAD_INPUT
    assert "at least 3 workers" in capsys.readouterr().err
    assert cli.main(["aws", "fargate", "--devices", "5000", "--workers", "2", "--run-id", "f1", "--dry-run"]) == \
        exit_codes.OK
    out = capsys.readouterr().out
    assert "deploy MotorGuardSim" in out and "-c devices=5000 -c workers=2" in out and "run_id=f1" in out
    assert cli.main(["aws", "fargate", "--devices", "100", "--workers", "1", "--rate", "200", "--dry-run"]) == \
        exit_codes.BAD_INPUT, "a ramp above the connect quota is refused before anything is deployed"
