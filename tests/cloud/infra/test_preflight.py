"""cloud/infra/preflight.py: what stops `scripts/cdk.sh deploy` before cdk deploy runs. Lambda's
account settings come from a stubbed client (botocore's Stubber: moto 5 has no GetAccountSettings),
CloudFormation and DynamoDB from moto; the assemblies are small ones written here, and one the real
stack synthesizes."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.stub import Stubber

from cloud.infra import preflight
from contract import exit_codes

RESERVED = {"motorguard-ingest": 20, "motorguard-alert": 5, "motorguard-api": 5, "motorguard-aggregate": 1}
TABLES = ["motorguard-telemetry", "motorguard-devices"]


def write_assembly(path, reservations=RESERVED, tables=TABLES, name="MotorGuard", region="eu-west-1"):
    """A cloud assembly as cdk synth writes it, holding only what preflight reads."""
    res = {"Fn%d" % i: {"Type": "AWS::Lambda::Function",
                        "Properties": {"FunctionName": fn, "ReservedConcurrentExecutions": n}}
           for i, (fn, n) in enumerate(reservations.items())}
    res["Unreserved"] = {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "motorguard-free"}}
    res.update({"Table%d" % i: {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": t}}
                for i, t in enumerate(tables)})
    path.mkdir(parents=True, exist_ok=True)
    (path / (name + ".template.json")).write_text(json.dumps({"Resources": res}))
    (path / "manifest.json").write_text(json.dumps({"version": "48.0.0", "artifacts": {
        name + ".assets": {"type": "cdk:asset-manifest", "properties": {"file": name + ".assets.json"}},
        name: {"type": "aws:cloudformation:stack", "environment": "aws://123456789012/" + region,
               "properties": {"templateFile": name + ".template.json"}}}}))
    return path


class Account:
    """A Lambda client whose account settings and function reservations are what the test says,
    CloudFormation and DynamoDB from moto, and the regions preflight asked for."""

    def __init__(self, quota=1000, unreserved=None, reserved_now=None):
        self.lam = boto3.client("lambda", region_name="eu-west-1")
        self.stub = Stubber(self.lam)
        self.quota, self.unreserved, self.reserved_now = quota, unreserved, reserved_now or {}
        self.regions = []

    def expect(self, reservations=RESERVED):
        unreserved = self.quota - sum(self.reserved_now.values()) if self.unreserved is None else self.unreserved
        self.stub.add_response("get_account_settings", {"AccountLimit": {
            "ConcurrentExecutions": self.quota, "UnreservedConcurrentExecutions": unreserved}})
        for fn in reservations:
            if fn in self.reserved_now:
                self.stub.add_response("get_function_concurrency", {"ReservedConcurrentExecutions": self.reserved_now[fn]},
                                       {"FunctionName": fn})
            else:
                self.stub.add_client_error("get_function_concurrency", "ResourceNotFoundException",
                                           "Function not found: " + fn, 404, expected_params={"FunctionName": fn})
        return self

    def clients(self, region):
        self.regions.append(region)
        return region, self.lam, boto3.client("cloudformation", region_name=region), \
            boto3.client("dynamodb", region_name=region)


@pytest.fixture
def moto_account(monkeypatch):
    from moto import mock_aws

    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


def run(assembly, account):
    out = io.StringIO()
    with account.stub:
        code = preflight.preflight(assembly, clients=account.clients, out=out)
        account.stub.assert_no_pending_responses()
    return code, out.getvalue()


def test_a_new_accounts_quota_of_10_stops_the_deploy_and_says_what_to_do(tmp_path, moto_account, capsys):
    code, out = run(write_assembly(tmp_path), Account(quota=10).expect())
    assert code == exit_codes.CHECK_FAILED and out == ""
    err = capsys.readouterr().err
    assert "reserves 31 concurrent Lambda executions (motorguard-aggregate 1, motorguard-alert 5" in err
    assert "quota in eu-west-1 is 10 with 10 unreserved" in err and "at least 100 unreserved" in err
    # 131 is the least quota that leaves 100 once 31 are reserved.
    assert "Concurrent executions: at least 131" in err
    assert "scripts/cdk.sh deploy -c reserved_concurrency=off" in err


def test_the_default_quota_passes_and_says_what_is_left(tmp_path, moto_account):
    account = Account(quota=1000).expect()
    code, out = run(write_assembly(tmp_path), account)
    assert code == exit_codes.OK, out
    assert "quota 1000, 1000 unreserved; the stack reserves 31 more, leaving 969 (AWS keeps 100)" in out
    assert "tables: 2 names free" in out
    assert account.regions == ["eu-west-1"], "the assembly's region is the one checked"


@pytest.mark.parametrize("quota, passes", [(131, True), (130, False)])
def test_the_line_is_exactly_100_left_unreserved(tmp_path, moto_account, quota, passes):
    code, _ = run(write_assembly(tmp_path), Account(quota=quota).expect())
    assert (code == exit_codes.OK) is passes


def test_an_update_counts_only_what_the_stack_adds_to_its_current_reservations(tmp_path, moto_account):
    """Deployed already (the stack exists, its tables are its own): the 31 are out of the pool (1000 - 31
    - 860 of other functions = 109 left), so reserving them again costs nothing, and raising ingest from
    20 to 25 costs 5 (104 left); to 30, 10 (99 left: refused)."""
    boto3.client("cloudformation", region_name="eu-west-1").create_stack(
        StackName="MotorGuard", TemplateBody=json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}))
    now = dict(RESERVED)
    wanted = dict(RESERVED, **{"motorguard-ingest": 25})
    code, out = run(write_assembly(tmp_path, wanted), Account(quota=1000, unreserved=109, reserved_now=now).expect(wanted))
    assert code == exit_codes.OK, out
    assert "the stack reserves 5 more, leaving 104" in out and "tables: stack MotorGuard (CREATE_COMPLETE) owns them" in out
    wanted = dict(RESERVED, **{"motorguard-ingest": 30})
    code, _ = run(write_assembly(tmp_path, wanted), Account(quota=1000, unreserved=109, reserved_now=now).expect(wanted))
    assert code == exit_codes.CHECK_FAILED


def test_without_reservations_the_quota_is_not_even_asked(tmp_path, moto_account):
    account = Account(quota=10)  # no stubbed answer: a call would fail the test
    code, out = run(write_assembly(tmp_path, reservations={}), account)
    assert code == exit_codes.OK and "the stack reserves none" in out


def test_tables_left_by_an_earlier_stack_stop_the_deploy(tmp_path, moto_account, capsys):
    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    ddb.create_table(TableName="motorguard-devices", KeySchema=[{"AttributeName": "device", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "device", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    code, _ = run(write_assembly(tmp_path), Account().expect())
    assert code == exit_codes.CONFLICT
    err = capsys.readouterr().err
    assert "1 table(s) the stack creates already exist in eu-west-1 outside stack MotorGuard: motorguard-devices" in err
    assert "delete-table" in err and "cdk import" in err


def test_a_stack_that_rolled_back_its_first_create_owns_no_table(tmp_path, moto_account):
    from unittest import mock

    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    ddb.create_table(TableName="motorguard-telemetry", KeySchema=[{"AttributeName": "device", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "device", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    with mock.patch.object(preflight, "stack_status", return_value="ROLLBACK_COMPLETE"):
        code, _ = run(write_assembly(tmp_path), Account().expect())
    assert code == exit_codes.CONFLICT


def test_a_refused_call_names_the_permissions_and_exits_access_denied(tmp_path, moto_account, capsys):
    account = Account()
    account.stub.add_client_error("get_account_settings", "AccessDeniedException", "User is not authorized", 403)
    code, _ = run(write_assembly(tmp_path), account)
    assert code == exit_codes.ACCESS_DENIED
    err = capsys.readouterr().err
    assert "AccessDeniedException" in err and "lambda:GetAccountSettings" in err


def test_no_assembly_is_bad_input_and_says_to_synthesize(tmp_path, capsys):
    assert preflight.preflight(tmp_path / "nowhere", clients=None) == exit_codes.BAD_INPUT
    assert "scripts/cdk.sh synth" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text("{not json")
    assert preflight.preflight(tmp_path, clients=None) == exit_codes.BAD_INPUT


def test_no_credentials_is_said_before_any_call(tmp_path, monkeypatch, capsys, no_aws_credentials):
    assert preflight.preflight(write_assembly(tmp_path / "a")) == exit_codes.NO_CREDENTIALS
    assert "aws configure" in capsys.readouterr().err


def test_help_lists_its_exit_codes(capsys):
    with pytest.raises(SystemExit) as e:
        preflight.main(["--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.rstrip("\n").endswith("\n" + exit_codes.epilog(preflight.CODES))


def test_the_real_stack_s_assembly_reads_as_its_reservations_and_tables(tmp_path):
    """What preflight reads from the assembly the stack really synthesizes, with and without reservations."""
    cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is a dev dependency (make setup installs it)")
    from cloud import resources
    from cloud.infra.stack import RESERVED_CONCURRENCY, MotorGuardStack

    code = tmp_path / "asset"
    code.mkdir()
    (code / "placeholder.txt").write_text("the checks do not read the code")
    app = cdk.App(outdir=str(tmp_path / "cdk.out"))
    MotorGuardStack(app, "MotorGuard", code_dir=str(code), env=cdk.Environment(account="123456789012",
                                                                                region="eu-west-1"))
    app.synth()
    (plan,) = preflight.read_assembly(tmp_path / "cdk.out")
    assert (plan.name, plan.region) == ("MotorGuard", "eu-west-1")
    assert plan.reservations == {resources.function_name(fn): n for fn, n in RESERVED_CONCURRENCY.items()}
    assert sorted(plan.tables) == sorted(name for name, *_ in resources.TABLES.values())
