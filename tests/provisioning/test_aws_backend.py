"""The aws backend against moto's IoT registry over real HTTP: what it creates, that it does it once,
and that a failure at any step leaves nothing behind."""

from __future__ import annotations

import json
import stat

import boto3
import pytest

from provisioning import aws, errors, policy
from provisioning.errors import ProvisionError
from provisioning.registry import Registry

ROOT_CA = b"-----BEGIN CERTIFICATE-----\n" + b"MIIB" + b"-----END CERTIFICATE-----\n"


@pytest.fixture
def root_ca(signing_ca):
    return signing_ca[0].read_bytes()


def account_state(session):
    iot = session.client("iot")
    return {
        "things": [t["thingName"] for t in iot.list_things()["things"]],
        "certificates": [c["certificateId"] for c in iot.list_certificates()["certificates"]],
        "policies": [p["policyName"] for p in iot.list_policies()["policies"]],
    }


def test_provisions_thing_certificate_policy_and_bundle(aws_session, home, tmp_path, root_ca):
    r = aws.provision_device(home, "motor-001", wifi_ssid="lab", wifi_password="secret123", root_ca_pem=root_ca,
                             attributes={"site": "hall-3"}, session=aws_session)
    assert r["changed"] is True
    iot = aws_session.client("iot")
    thing = iot.describe_thing(thingName="motor-001")
    assert thing["thingTypeName"] == aws.THING_TYPE
    assert thing["attributes"]["site"] == "hall-3"
    assert thing["attributes"]["remote_start"] == "false"  # what the API offers the dashboard's Start from
    cert = iot.describe_certificate(certificateId=r["certificate"])["certificateDescription"]
    assert cert["status"] == "ACTIVE"
    assert iot.list_thing_principals(thingName="motor-001")["principals"] == [cert["certificateArn"]]
    attached = iot.list_attached_policies(target=cert["certificateArn"])["policies"]
    assert [p["policyName"] for p in attached] == [policy.POLICY_NAME]
    doc = json.loads(iot.get_policy(policyName=policy.POLICY_NAME)["policyDocument"])
    assert doc == policy.document()

    out = home / "devices" / "motor-001"
    cfg = json.loads((out / "config.json").read_text())
    endpoint = r["endpoint"]  # moto makes up a new one per call; AWS's is stable
    assert endpoint.endswith("-ats.iot.us-east-1.amazonaws.com")
    assert cfg == {"thing": "motor-001", "mqtt": {"host": endpoint, "port": 8883},
                   "wifi": {"ssid": "lab", "password": "secret123"}}
    for key_file in ("device.key.der", "device.key.pem"):
        assert stat.S_IMODE((out / key_file).stat().st_mode) == 0o600
    assert (out / "root-ca.pem").read_bytes() == root_ca
    assert Registry(home).get("motor-001")["certificate_id"] == r["certificate"]


def test_second_run_changes_nothing(aws_session, home, root_ca):
    first = aws.provision_device(home, "motor-002", root_ca_pem=root_ca, session=aws_session)
    before = account_state(aws_session)
    again = aws.provision_device(home, "motor-002", root_ca_pem=root_ca, session=aws_session)
    assert again["changed"] is False and again["certificate"] == first["certificate"]
    assert account_state(aws_session) == before


def test_name_taken_by_another_certificate(aws_session, home, root_ca, tmp_path):
    aws.provision_device(home, "motor-003", root_ca_pem=root_ca, session=aws_session)
    other_home = tmp_path / "other-host"  # another operator's host, same account
    with pytest.raises(ProvisionError) as e:
        aws.provision_device(other_home, "motor-003", root_ca_pem=root_ca, session=aws_session)
    assert e.value.code == errors.CONFLICT
    assert "another certificate" in e.value.message


def test_moto_certificate_for_another_key_is_refused(aws_env, home, root_ca):
    # Unpatched moto returns a certificate for a key that is not ours: the backend must refuse it
    # and remove everything it created (the thing, the certificate).
    session = boto3.Session()
    with pytest.raises(ProvisionError) as e:
        aws.provision_device(home, "motor-004", root_ca_pem=root_ca, session=session)
    assert e.value.code == errors.SERVICE_ERROR
    assert "does not carry this device's public key" in e.value.message
    state = account_state(session)
    assert state["things"] == [] and state["certificates"] == []
    assert not (home / "devices" / "motor-004").exists()


STEPS = ["CreateThing", "CreateCertificateFromCsr", "CreatePolicy", "AttachPolicy", "AttachThingPrincipal",
         "DescribeEndpoint"]


@pytest.mark.parametrize("operation", STEPS)
def test_failure_at_each_step_rolls_back(aws_session, home, root_ca, operation):
    from botocore.exceptions import ClientError

    def fail(**kw):
        raise ClientError({"Error": {"Code": "InternalFailureException", "Message": "injected"}}, operation)

    aws_session.events.register("before-call.iot.%s" % operation, fail)
    with pytest.raises(ProvisionError) as e:
        aws.provision_device(home, "motor-rb", root_ca_pem=root_ca, session=aws_session)
    assert e.value.code == errors.SERVICE_ERROR and "rolled back" in e.value.message
    state = account_state(aws_session)
    assert state["things"] == [] and state["certificates"] == [] and state["policies"] == []
    assert not (home / "devices" / "motor-rb").exists()
    assert Registry(home).get("motor-rb") is None


def test_failure_writing_the_bundle_rolls_back_the_account(aws_session, home, root_ca, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the bundle's parent should be")
    with pytest.raises(ProvisionError):
        aws.provision_device(home, "motor-wb", out=blocker / "bundle", root_ca_pem=root_ca, session=aws_session)
    state = account_state(aws_session)
    assert state["things"] == [] and state["certificates"] == [] and state["policies"] == []


def test_access_denied_is_one_line_with_a_hint(aws_session, home, root_ca):
    from botocore.exceptions import ClientError

    def deny(**kw):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "CreateThing")

    aws_session.events.register("before-call.iot.CreateThing", deny)
    with pytest.raises(ProvisionError) as e:
        aws.provision_device(home, "motor-ad", root_ca_pem=root_ca, session=aws_session)
    assert e.value.code == errors.ACCESS_DENIED and "iot:CreateThing" in e.value.hint


def test_policy_statements_resource_by_resource():
    doc = policy.document("us-east-1", "123456789012")
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    arn = "arn:aws:iot:us-east-1:123456789012:"
    t = "${iot:Connection.Thing.ThingName}"
    assert by_sid["ConnectAsItself"]["Action"] == "iot:Connect"
    assert by_sid["ConnectAsItself"]["Resource"] == arn + "client/" + t
    assert by_sid["ConnectAsItself"]["Condition"] == {
        "Bool": {"iot:Connection.Thing.IsAttached": "true"},
        "ForAllValues:StringEquals": {"iot:ConnectAttributes": ["LastWill"]}}  # a Will; no persistent session
    assert sorted(by_sid["PublishOwnTopics"]["Resource"]) == sorted(
        [arn + "topic/devices/%s/%s" % (t, k) for k in ("telemetry", "events", "status", "ack")])
    assert by_sid["RetainOwnStatus"]["Action"] == "iot:RetainPublish"
    assert by_sid["RetainOwnStatus"]["Resource"] == [arn + "topic/devices/%s/status" % t]
    assert not any("$aws/rules/" in r for s in doc["Statement"] for r in
                   (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])), "no Basic Ingest"
    assert by_sid["SubscribeOwnCommands"] == {"Sid": "SubscribeOwnCommands", "Effect": "Allow",
                                              "Action": "iot:Subscribe",
                                              "Resource": arn + "topicfilter/devices/%s/cmd" % t}
    assert by_sid["ReceiveOwnCommands"]["Resource"] == arn + "topic/devices/%s/cmd" % t
    actions = [s["Action"] for s in doc["Statement"]]
    assert all(a.startswith("iot:") and "*" not in a for a in actions)
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])


def test_policy_topics_match_the_firmware():
    """The topics the board uses (the firmware's copy of the fleet contract) are the ones the policy
    grants it, and those are the contract's device topics."""
    import sys
    from pathlib import Path

    import contract

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))
    from motorguard import contract as board

    arn = "arn:aws:iot:*:*:"
    by_sid = {s["Sid"]: s for s in policy.document()["Statement"]}
    t = policy.THING
    published = {board.topic(t, k) for k in (board.TELEMETRY, board.EVENTS, board.STATUS, board.ACK)}
    granted = {r[len(arn + "topic/"):] for r in by_sid["PublishOwnTopics"]["Resource"]}
    assert published == {contract.topic(t, k) for k in contract.DEVICE_PUBLISHES}
    assert granted == published
    retained = {r[len(arn + "topic/"):] for r in by_sid["RetainOwnStatus"]["Resource"]}
    assert retained == {board.topic(t, board.STATUS)}  # the board's retained "online" and its retained Will
    assert by_sid["SubscribeOwnCommands"]["Resource"] == arn + "topicfilter/" + board.topic(t, board.CMD)
    assert by_sid["ReceiveOwnCommands"]["Resource"] == arn + "topic/" + board.topic(t, board.CMD)


def test_revoke_marks_revoked_and_detaches(aws_session, home, root_ca):
    r = aws.provision_device(home, "motor-rv", root_ca_pem=root_ca, session=aws_session)
    aws.revoke(home, "motor-rv", session=aws_session)
    iot = aws_session.client("iot")
    desc = iot.describe_certificate(certificateId=r["certificate"])["certificateDescription"]
    assert desc["status"] == "REVOKED"
    assert iot.list_thing_principals(thingName="motor-rv")["principals"] == []
    assert iot.list_attached_policies(target=desc["certificateArn"])["policies"] == []


def test_rotate_attaches_new_then_revokes_old(aws_session, home, root_ca):
    first = aws.provision_device(home, "motor-rt", root_ca_pem=root_ca, session=aws_session)
    pending = aws.rotate_begin(home, "motor-rt", session=aws_session)
    iot = aws_session.client("iot")
    assert len(iot.list_thing_principals(thingName="motor-rt")["principals"]) == 2  # both valid meanwhile
    aws.rotate_commit(home, "motor-rt", pending, session=aws_session)
    old = iot.describe_certificate(certificateId=first["certificate"])["certificateDescription"]
    new = iot.describe_certificate(certificateId=pending["certificate_id"])["certificateDescription"]
    assert old["status"] == "REVOKED" and new["status"] == "ACTIVE"
    assert iot.list_thing_principals(thingName="motor-rt")["principals"] == [new["certificateArn"]]
    assert Registry(home).get("motor-rt")["certificate_id"] == pending["certificate_id"]


def test_cli_aws_without_credentials(home, cli, monkeypatch, tmp_path, no_aws_credentials):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    r = cli("device", "motor-nc", "--backend", "aws", "--root-ca", __file__)
    assert r.exit_code == errors.NO_CREDENTIALS, r.output
    assert "no AWS credentials" in r.output and "hint:" in r.output and "Traceback" not in r.output


def test_cli_aws_against_moto_refuses_and_cleans_up(aws_env, home, cli, signing_ca):
    r = cli("device", "motor-cl", "--backend", "aws", "--root-ca", str(signing_ca[0]))
    assert r.exit_code == errors.SERVICE_ERROR, r.output
    assert "rolled back" in r.output
    state = account_state(boto3.Session())
    assert state["things"] == [] and state["certificates"] == []


def _inject(session, operation, code="InternalFailureException"):
    from botocore.exceptions import ClientError

    def fail(**kw):
        raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)

    session.events.register("before-call.iot.%s" % operation, fail)
    return fail


@pytest.mark.parametrize("operation", ["DescribeThing", "DescribeThingType", "CreateThingType", "GetPolicy"])
def test_failure_before_anything_is_created_leaves_nothing(aws_session, home, root_ca, operation):
    _inject(aws_session, operation)
    with pytest.raises(ProvisionError) as e:
        aws.provision_device(home, "motor-early", root_ca_pem=root_ca, session=aws_session)
    assert e.value.code == errors.SERVICE_ERROR
    state = account_state(aws_session)
    assert state["things"] == [] and state["certificates"] == [] and state["policies"] == []
    assert Registry(home).get("motor-early") is None


def test_rollback_keeps_a_policy_it_did_not_create(aws_session, home, root_ca):
    aws.provision_device(home, "motor-first", root_ca_pem=root_ca, session=aws_session)
    _inject(aws_session, "AttachThingPrincipal")
    with pytest.raises(ProvisionError) as e:
        aws.provision_device(home, "motor-second", root_ca_pem=root_ca, session=aws_session)
    assert "policy %s" % policy.POLICY_NAME not in e.value.message  # not in the rolled-back list
    iot = aws_session.client("iot")
    state = account_state(aws_session)
    assert state["things"] == ["motor-first"] and len(state["certificates"]) == 1
    assert state["policies"] == [policy.POLICY_NAME]
    first_arn = iot.list_thing_principals(thingName="motor-first")["principals"][0]
    assert [p["policyName"] for p in iot.list_attached_policies(target=first_arn)["policies"]] == [policy.POLICY_NAME]


def test_rollback_that_cannot_undo_says_so(aws_session, home, root_ca):
    _inject(aws_session, "DescribeEndpoint")
    _inject(aws_session, "DeleteThing")
    with pytest.raises(ProvisionError) as e:
        aws.provision_device(home, "motor-stuck", root_ca_pem=root_ca, session=aws_session)
    assert "COULD NOT REMOVE: thing motor-stuck" in e.value.message
    assert account_state(aws_session)["certificates"] == []  # the rest was still undone


def test_force_replaces_our_certificate_and_revokes_the_old(aws_session, home, root_ca):
    first = aws.provision_device(home, "motor-fr", root_ca_pem=root_ca, session=aws_session)
    second = aws.provision_device(home, "motor-fr", root_ca_pem=root_ca, force=True, session=aws_session)
    assert second["changed"] and second["certificate"] != first["certificate"]
    assert second["revoked"] == first["certificate"]
    iot = aws_session.client("iot")
    old = iot.describe_certificate(certificateId=first["certificate"])["certificateDescription"]
    new = iot.describe_certificate(certificateId=second["certificate"])["certificateDescription"]
    assert old["status"] == "REVOKED" and new["status"] == "ACTIVE"
    assert iot.list_thing_principals(thingName="motor-fr")["principals"] == [new["certificateArn"]]


def test_a_local_device_is_not_silently_taken_over(aws_session, home, root_ca):
    Registry(home).put("motor-lo", {"backend": "local", "serial": 1, "bundle": str(home / "x"), "status": "ACTIVE"})
    with pytest.raises(ProvisionError) as e:
        aws.provision_device(home, "motor-lo", root_ca_pem=root_ca, session=aws_session)
    assert e.value.code == errors.CONFLICT
    assert account_state(aws_session)["things"] == []


def test_staged_rotation_is_the_one_committed_or_removed(aws_session, home, root_ca, monkeypatch):
    from provisioning import rotation

    first = aws.provision_device(home, "motor-sr", root_ca_pem=root_ca, session=aws_session)
    # The rotation module takes the account from the environment, as the CLI does: route its
    # clients through the test session so moto's signer stays patched.
    monkeypatch.setattr(aws, "_client", lambda session, service: aws_session.client(service))
    pending, reused = rotation.stage(home, "motor-sr")
    again, reused_again = rotation.stage(home, "motor-sr")
    assert not reused and reused_again and again["certificate_id"] == pending["certificate_id"]
    iot = aws_session.client("iot")
    assert len(iot.list_thing_principals(thingName="motor-sr")["principals"]) == 2
    rotation.abort(home, "motor-sr")
    assert pending["certificate_id"] not in account_state(aws_session)["certificates"]
    assert iot.list_thing_principals(thingName="motor-sr")["principals"] == [
        iot.describe_certificate(certificateId=first["certificate"])["certificateDescription"]["certificateArn"]]

    pending, _ = rotation.stage(home, "motor-sr")
    staged_cert = (home / "devices" / "motor-sr.next" / "device.crt.der").read_bytes()
    r = rotation.commit(home, "motor-sr")
    assert r["certificate"] == pending["certificate_id"] and r["revoked"] == first["certificate"]
    assert (home / "devices" / "motor-sr" / "device.crt.der").read_bytes() == staged_cert
    assert not (home / "devices" / "motor-sr.next").exists()
    old = iot.describe_certificate(certificateId=first["certificate"])["certificateDescription"]
    assert old["status"] == "REVOKED"


def test_revoke_twice_changes_nothing_the_second_time(aws_session, home, root_ca):
    aws.provision_device(home, "motor-r2", root_ca_pem=root_ca, session=aws_session)
    assert aws.revoke(home, "motor-r2", session=aws_session)["changed"] is True
    again = aws.revoke(home, "motor-r2", session=aws_session)
    assert again["changed"] is False and again["message"] == "already revoked"


def test_remote_start_is_recorded_on_the_thing_for_the_dashboard(aws_session, home, root_ca):
    aws.provision_device(home, "motor-rs", root_ca_pem=root_ca, remote_start=True, session=aws_session)
    iot = aws_session.client("iot")
    assert iot.describe_thing(thingName="motor-rs")["attributes"]["remote_start"] == "true"
    aws.provision_device(home, "motor-rs", root_ca_pem=root_ca, remote_start=False, force=True, session=aws_session)
    assert iot.describe_thing(thingName="motor-rs")["attributes"]["remote_start"] == "false"
