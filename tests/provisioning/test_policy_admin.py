"""`provision policy update` against moto's IoT registry over real HTTP: a fleet already in the field
gets the current document as the policy's new default version, within AWS's five versions; a dry run
and an unchanged document change nothing; `provision device` refuses to attach an outdated policy."""

from __future__ import annotations

import json

import boto3
import pytest

from provisioning import aws, errors, policy, policy_admin
from provisioning.errors import ProvisionError


def outdated_document() -> dict:
    """The policy as devices in the field had it before issue 20: no iot:RetainPublish, no connect
    attributes condition, and a Basic Ingest topic the board never used."""
    doc = policy.document()
    doc["Statement"] = [s for s in doc["Statement"] if s["Sid"] != "RetainOwnStatus"]
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    by_sid["ConnectAsItself"]["Condition"] = {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    by_sid["PublishOwnTopics"]["Resource"].append(
        "arn:aws:iot:*:*:topic/$aws/rules/motorguard_telemetry/devices/${iot:Connection.Thing.ThingName}/telemetry")
    return doc


def variant(n: int) -> str:
    """A distinct outdated document per version, as successive releases would have left them."""
    doc = outdated_document()
    doc["Statement"][0]["Sid"] = "ConnectAsItselfRelease%d" % n
    return json.dumps(doc)


def versions(iot) -> list:
    got = iot.list_policy_versions(policyName=policy.POLICY_NAME)["policyVersions"]
    return sorted(((v["versionId"], v["isDefaultVersion"]) for v in got), key=lambda v: int(v[0]))


def in_force(iot) -> dict:
    return json.loads(iot.get_policy(policyName=policy.POLICY_NAME)["policyDocument"])


def field_with(iot, n_versions: int, default: str) -> None:
    """The policy with versions 1..n_versions of outdated documents, `default` the one in force."""
    iot.create_policy(policyName=policy.POLICY_NAME, policyDocument=variant(1))
    for n in range(2, n_versions + 1):
        iot.create_policy_version(policyName=policy.POLICY_NAME, policyDocument=variant(n), setAsDefault=False)
    iot.set_default_policy_version(policyName=policy.POLICY_NAME, policyVersionId=default)


@pytest.fixture
def iot(aws_session):
    return aws_session.client("iot")


def test_a_missing_policy_is_created(aws_session, iot):
    plan, done = aws.update_policy(session=aws_session)
    assert plan.action == "create" and done["action"] == "create"
    assert versions(iot) == [("1", True)]
    assert in_force(iot) == policy.document()


def test_an_outdated_default_is_replaced_by_a_new_default_version(aws_session, iot):
    iot.create_policy(policyName=policy.POLICY_NAME, policyDocument=json.dumps(outdated_document()))
    plan, done = aws.update_policy(session=aws_session)
    assert plan.action == "update" and plan.default_version == "1" and plan.prune == []
    assert done["version"] == "2" and done["previous"] == "1" and done["deleted"] == []
    assert versions(iot) == [("1", False), ("2", True)]  # the old one stays, to go back to
    assert in_force(iot) == policy.document()
    assert any(line.startswith("+ RetainOwnStatus: ") and "iot:RetainPublish" in line for line in plan.changes)
    assert "~ ConnectAsItself.Condition" in plan.changes
    assert "~ PublishOwnTopics.Resource" in plan.changes


def test_at_five_versions_the_oldest_non_default_goes_first(aws_session, iot):
    field_with(iot, 5, default="1")  # the one in force is the oldest: it must survive the switch
    plan, done = aws.update_policy(session=aws_session)
    assert plan.prune == ["2"] and done["deleted"] == ["2"]
    assert versions(iot) == [("1", False), ("3", False), ("4", False), ("5", False), ("6", True)]
    assert in_force(iot) == policy.document()


def test_pruning_takes_only_what_makes_room(aws_session, iot):
    field_with(iot, 4, default="3")
    plan, done = aws.update_policy(session=aws_session)
    assert plan.prune == [] and done["deleted"] == []
    assert versions(iot) == [("1", False), ("2", False), ("3", False), ("4", False), ("5", True)]
    # Someone sets another document meanwhile (making room for it): at the limit again, and version 1
    # is the oldest that is not in force.
    iot.delete_policy_version(policyName=policy.POLICY_NAME, policyVersionId="2")
    iot.create_policy_version(policyName=policy.POLICY_NAME, policyDocument=variant(9), setAsDefault=True)
    plan, done = aws.update_policy(session=aws_session)
    assert done["deleted"] == ["1"]
    assert versions(iot) == [("3", False), ("4", False), ("5", False), ("6", False), ("7", True)]


def test_dry_run_changes_nothing_and_says_what_it_would_do(aws_session, iot, cli, monkeypatch):
    field_with(iot, 5, default="4")
    before = versions(iot), in_force(iot)
    monkeypatch.setattr(aws, "_client", lambda session, service: aws_session.client(service))
    r = cli("policy", "update", "--dry-run")
    assert r.exit_code == 0, r.output
    assert (versions(iot), in_force(iot)) == before
    assert "default version 4 differs" in r.stdout
    assert "+ RetainOwnStatus: " in r.stdout and "- ConnectAsItselfRelease4: " in r.stdout
    assert "would delete version(s) 1 " in r.stdout
    assert "would create a new version and make it the default" in r.stdout
    assert r.stdout.rstrip().endswith("dry run: nothing changed")
    data = json.loads(cli("policy", "update", "--dry-run", "--json").stdout)
    assert data["action"] == "update" and data["prune"] == ["1"] and data["changed"] is False
    assert (versions(iot), in_force(iot)) == before


def test_dry_run_of_a_missing_policy_creates_nothing(aws_session, iot):
    plan, done = aws.update_policy(dry_run=True, session=aws_session)
    assert plan.action == "create" and done is None
    assert iot.list_policies()["policies"] == []
    assert "would create it" in policy_admin.describe(plan)


def test_an_unchanged_document_does_nothing(aws_env, cli):
    iot = boto3.Session().client("iot")
    iot.create_policy(policyName=policy.POLICY_NAME, policyDocument=policy.document_json())
    r = cli("policy", "update", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["action"] == "none" and data["changed"] is False and data["changes"] == []
    assert versions(iot) == [("1", True)]
    assert "nothing to do" in cli("policy", "update").stdout


def test_the_cli_updates_a_field_policy(aws_env, cli):
    iot = boto3.Session().client("iot")
    iot.create_policy(policyName=policy.POLICY_NAME, policyDocument=json.dumps(outdated_document()))
    r = cli("policy", "update")
    assert r.exit_code == 0, r.output
    assert "created version 2 and made it the default (was 1)" in r.stdout
    assert versions(iot) == [("1", False), ("2", True)] and in_force(iot) == policy.document()


def test_device_refuses_to_attach_an_outdated_policy(aws_session, iot, home, signing_ca):
    root_ca = signing_ca[0].read_bytes()
    iot.create_policy(policyName=policy.POLICY_NAME, policyDocument=json.dumps(outdated_document()))
    with pytest.raises(ProvisionError) as e:
        aws.provision_device(home, "motor-old", root_ca_pem=root_ca, session=aws_session)
    assert e.value.code == errors.CONFLICT
    assert "out of date" in e.value.message and "default version 1" in e.value.message
    assert "provision policy update" in e.value.hint
    assert iot.list_things()["things"] == [] and iot.list_certificates()["certificates"] == []
    assert in_force(iot) == outdated_document()  # provisioning a device never changes the policy itself

    aws.update_policy(session=aws_session)
    r = aws.provision_device(home, "motor-old", root_ca_pem=root_ca, session=aws_session)
    arn = iot.describe_certificate(certificateId=r["certificate"])["certificateDescription"]["certificateArn"]
    assert [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]] == [policy.POLICY_NAME]


def test_rotation_refuses_an_outdated_policy_too(aws_session, iot, home, signing_ca):
    root_ca = signing_ca[0].read_bytes()
    aws.provision_device(home, "motor-rot", root_ca_pem=root_ca, session=aws_session)
    iot.create_policy_version(policyName=policy.POLICY_NAME, policyDocument=json.dumps(outdated_document()),
                              setAsDefault=True)
    with pytest.raises(ProvisionError) as e:
        aws.rotate_begin(home, "motor-rot", session=aws_session)
    assert e.value.code == errors.CONFLICT and "provision policy update" in e.value.hint
    assert len(iot.list_certificates()["certificates"]) == 1  # no second certificate was left behind


def test_cli_without_credentials(home, cli, monkeypatch, tmp_path, no_aws_credentials):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    r = cli("policy", "update", "--dry-run")
    assert r.exit_code == errors.NO_CREDENTIALS, r.output
    assert "no AWS credentials" in r.output and "Traceback" not in r.output


def _inject(session, operation, code):
    from botocore.exceptions import ClientError

    def fail(**kw):
        raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)

    session.events.register("before-call.iot.%s" % operation, fail)


def test_access_denied_names_what_the_update_needs(aws_session, iot, cli, monkeypatch):
    iot.create_policy(policyName=policy.POLICY_NAME, policyDocument=json.dumps(outdated_document()))
    _inject(aws_session, "CreatePolicyVersion", "AccessDeniedException")
    monkeypatch.setattr(aws, "_client", lambda session, service: aws_session.client(service))
    r = cli("policy", "update")
    assert r.exit_code == errors.ACCESS_DENIED, r.output
    assert "iot:CreatePolicyVersion" in r.stderr and "iot:DeletePolicyVersion" in r.stderr
    assert versions(iot) == [("1", True)]


def test_a_version_made_meanwhile_is_a_clear_conflict(aws_session, iot):
    field_with(iot, 5, default="5")
    _inject(aws_session, "CreatePolicyVersion", "VersionsLimitExceededException")
    with pytest.raises(ProvisionError) as e:
        aws.update_policy(session=aws_session)
    assert e.value.code == errors.CONFLICT
    assert "maximum of 5 versions" in e.value.message and "deleted before the failure: version(s) 1" in e.value.message
    assert "run provision policy update again" in e.value.hint
    assert ("5", True) in versions(iot)  # the default in force is untouched


def test_a_service_failure_says_how_to_look_before_trying_again(aws_session, iot):
    iot.create_policy(policyName=policy.POLICY_NAME, policyDocument=json.dumps(outdated_document()))
    _inject(aws_session, "ListPolicyVersions", "InternalFailureException")
    with pytest.raises(ProvisionError) as e:
        aws.update_policy(session=aws_session)
    assert e.value.code == errors.SERVICE_ERROR and "--dry-run" in e.value.hint
    assert versions(boto3.Session().client("iot")) == [("1", True)]  # a client without the injected fault


def test_statement_diff_lines():
    new = policy.document()
    assert policy_admin.statement_diff(new, new) == []
    old = outdated_document()
    lines = policy_admin.statement_diff(old, new)
    assert lines[0].startswith("~ ConnectAsItself.Condition")
    i = lines.index("~ ConnectAsItself.Condition")
    assert lines[i + 1] == '    - {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}'
    assert '"ForAllValues:StringEquals"' in lines[i + 2] and lines[i + 2].startswith("    + ")
    back = policy_admin.statement_diff(new, old)
    assert any(line.startswith("- RetainOwnStatus: ") for line in back)
