"""The AWS backend's clean-up leaves nothing of a run behind (moto), also after a run that failed
half-way through making its identities."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from provisioning import policy
from sim import aws


@pytest.fixture
def iot(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with mock_aws():
        c = boto3.client("iot")
        c.create_policy(policyName=policy.POLICY_NAME, policyDocument=policy.document_json())
        yield c


def test_cleanup_removes_every_thing_certificate_and_attachment(iot):
    made = aws.make_identities(iot, "r1", 0, 4)
    assert len(made) == 4 and all("PRIVATE KEY" in k for _t, _c, k in made)
    iot.create_thing(thingName="motor-001")  # not the simulator's: must survive
    r = aws.cleanup(iot, "r1")
    assert r == {"things": 4, "certificates": 4}
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["motor-001"]
    assert iot.list_certificates()["certificates"] == []
    assert iot.list_targets_for_policy(policyName=policy.POLICY_NAME)["targets"] == []
    assert aws.cleanup(iot, "r1") == {"things": 0, "certificates": 0}  # again: nothing to do, no error


def test_cleanup_after_a_failed_run(iot, monkeypatch):
    calls = {"n": 0}
    real = iot.attach_thing_principal

    def flaky(**kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("throttled")  # the run dies between attaching the policy and the thing
        return real(**kw)

    monkeypatch.setattr(iot, "attach_thing_principal", flaky)
    with pytest.raises(RuntimeError):
        aws.make_identities(iot, "r2", 0, 5)
    monkeypatch.setattr(iot, "attach_thing_principal", real)
    aws.cleanup(iot, "r2")
    assert iot.list_things()["things"] == []
    # the certificate made just before the failure was attached to no thing: found by its policy
    left = iot.list_targets_for_policy(policyName=policy.POLICY_NAME)["targets"]
    assert left == [], "a certificate of the failed run is still attached to the device policy"


def test_a_bad_run_id_is_refused():
    with pytest.raises(ValueError, match="run id"):
        aws.run_prefix("../etc")
