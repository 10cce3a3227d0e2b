"""What would make `cdk deploy` of the synthesized stack fail in this account, checked before it runs.

    python -m cloud.infra.preflight [ASSEMBLY]      (default build/cdk.out; scripts/cdk.sh deploy runs it)

It reads the cloud assembly `cdk synth` wrote (the stacks, their account and region, their templates)
and asks AWS two things:

- Lambda concurrency. The functions' reserved concurrency comes out of the account's quota, and AWS
  keeps at least MIN_UNRESERVED of it unreserved: a deploy that would go below fails on the first
  function and rolls the whole stack back. A new account's quota may be 10, which cannot spare any.
- Table names. A table of the template's name that no stack of this name owns (kept by an earlier
  stack's Retain policy, or made by hand) makes the create fail on the taken name, every time.

Each problem is one `error:` line and one `hint:` line (what to do), and a non-zero exit (CODES).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from contract import exit_codes

DEFAULT_ASSEMBLY = Path("build/cdk.out")
MIN_UNRESERVED = 100  # AWS's floor for an account's unreserved concurrency
CONTEXT_OFF = "-c reserved_concurrency=off"  # cloud/infra/stack.py RESERVED_CONCURRENCY_CONTEXT
# Stack states in which the stack owns no table: CloudFormation deletes a stack that rolled back its
# first create (ROLLBACK_COMPLETE) before it creates it again; a stack under review created nothing.
OWNS_NOTHING = ("ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS")
DENIED = ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
          "ExpiredToken", "ExpiredTokenException")
CODES = {exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.NO_CREDENTIALS, exit_codes.ACCESS_DENIED,
         exit_codes.CHECK_FAILED, exit_codes.CONFLICT, exit_codes.SERVICE_ERROR}


class Problem(Exception):
    def __init__(self, message: str, hint: str, code: int):
        super().__init__(message)
        self.hint, self.code = hint, code


@dataclass
class StackPlan:
    """What one stack of the assembly will create, as far as these checks need it."""
    name: str
    region: str | None  # None: the assembly is not bound to a region (the session's is used)
    reservations: dict[str, int] = field(default_factory=dict)  # function name -> reserved concurrency
    tables: list[str] = field(default_factory=list)  # fixed table names


def read_assembly(path: Path) -> list[StackPlan]:
    """The stacks of a cloud assembly directory (manifest.json and the templates it names)."""
    manifest = path / "manifest.json"
    if not manifest.is_file():
        raise Problem("no cloud assembly at %s (no manifest.json)" % path,
                      "synthesize first: scripts/cdk.sh synth (or pass the directory cdk synth wrote)",
                      exit_codes.BAD_INPUT)
    try:
        artifacts = json.loads(manifest.read_text())["artifacts"]
        plans = []
        for artifact_id, artifact in artifacts.items():
            if artifact.get("type") != "aws:cloudformation:stack":
                continue
            props = artifact["properties"]
            template = json.loads((path / props["templateFile"]).read_text())
            plans.append(plan_of(props.get("stackName", artifact_id), artifact.get("environment", ""), template))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Problem("the cloud assembly at %s cannot be read (%s: %s)" % (path, type(e).__name__, e),
                      "synthesize it again: scripts/cdk.sh synth", exit_codes.BAD_INPUT) from None
    if not plans:
        raise Problem("the cloud assembly at %s holds no stack" % path, "synthesize it again: scripts/cdk.sh synth",
                      exit_codes.BAD_INPUT)
    return plans


def plan_of(name: str, environment: str, template: dict) -> StackPlan:
    """environment is the assembly's aws://<account>/<region> (unknown-region when not bound to one)."""
    region = environment.rsplit("/", 1)[-1] if environment.startswith("aws://") else ""
    plan = StackPlan(name, None if region in ("", "unknown-region") else region)
    for res in template.get("Resources", {}).values():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::Lambda::Function" and isinstance(props.get("ReservedConcurrentExecutions"), int):
            plan.reservations[str(props.get("FunctionName", "(unnamed)"))] = props["ReservedConcurrentExecutions"]
        if res.get("Type") == "AWS::DynamoDB::Table" and isinstance(props.get("TableName"), str):
            plan.tables.append(props["TableName"])
    return plan


def current_reservation(lam, function: str) -> int:
    """What a function of that name reserves now: 0 when it does not exist yet or reserves nothing."""
    try:
        return lam.get_function_concurrency(FunctionName=function).get("ReservedConcurrentExecutions") or 0
    except lam.exceptions.ResourceNotFoundException:
        return 0


def check_concurrency(lam, plan: StackPlan, region: str) -> str:
    """The account's concurrency against what the stack adds to its reservations; a line to print, or Problem."""
    wanted = sum(plan.reservations.values())
    if not wanted:
        return "Lambda concurrency: the stack reserves none"
    limit = lam.get_account_settings()["AccountLimit"]
    quota, unreserved = limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"]
    # A function that already reserves some (an update) takes only the difference from the pool.
    more = sum(max(0, n - current_reservation(lam, fn)) for fn, n in plan.reservations.items())
    left = unreserved - more
    if left >= MIN_UNRESERVED:
        return ("Lambda concurrency: quota %d, %d unreserved; the stack reserves %d more, leaving %d (AWS keeps %d)"
                % (quota, unreserved, more, left, MIN_UNRESERVED))
    each = ", ".join("%s %d" % (fn, n) for fn, n in sorted(plan.reservations.items()))
    raise Problem(
        "stack %s reserves %d concurrent Lambda executions (%s), but this account's concurrency quota in %s is %d "
        "with %d unreserved, and AWS keeps at least %d unreserved: the deploy would fail at the first function and "
        "roll back" % (plan.name, wanted, each, region, quota, unreserved, MIN_UNRESERVED),
        "ask for a higher quota (Service Quotas > AWS Lambda > Concurrent executions: at least %d), or deploy "
        "without the reservations: scripts/cdk.sh deploy %s" % (quota + MIN_UNRESERVED - left, CONTEXT_OFF),
        exit_codes.CHECK_FAILED)


def stack_status(cfn, name: str) -> str | None:
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except cfn.exceptions.ClientError as e:
        if e.response["Error"]["Code"] == "ValidationError" and "does not exist" in str(e):
            return None
        raise


def table_exists(ddb, name: str) -> bool:
    try:
        ddb.describe_table(TableName=name)
        return True
    except ddb.exceptions.ResourceNotFoundException:
        return False


def check_tables(cfn, ddb, plan: StackPlan, region: str) -> str:
    """Whether the template's table names are free, or the stack's own; a line to print, or Problem."""
    status = stack_status(cfn, plan.name)
    if status is not None and status not in OWNS_NOTHING:
        return "tables: stack %s (%s) owns them" % (plan.name, status)
    taken = [t for t in plan.tables if table_exists(ddb, t)]
    if not taken:
        return "tables: %d names free" % len(plan.tables)
    raise Problem(
        "%d table(s) the stack creates already exist in %s outside stack %s: %s (kept by an earlier stack's Retain "
        "policy, or made by hand); CloudFormation cannot create a table whose name is taken"
        % (len(taken), region, plan.name, ", ".join(taken)),
        "if their data is not needed, delete them (aws dynamodb delete-table --table-name NAME); otherwise back them "
        "up and delete them, or import them into the stack (cdk import) (docs/cloud.md, Deploying into a fresh "
        "account)", exit_codes.CONFLICT)


def default_clients(region: str | None):
    import boto3

    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        raise Problem("no AWS credentials", "run 'aws configure' or set AWS_PROFILE, then try again",
                      exit_codes.NO_CREDENTIALS)
    if not session.region_name:
        raise Problem("no AWS region", "set AWS_DEFAULT_REGION (e.g. us-east-1), or synthesize for a region",
                      exit_codes.BAD_INPUT)
    return session.region_name, session.client("lambda"), session.client("cloudformation"), session.client("dynamodb")


def preflight(assembly: Path, clients=default_clients, out=sys.stdout) -> int:
    """Runs every check on every stack of the assembly; the exit code (a Problem's, or OK)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        for plan in read_assembly(assembly):
            region, lam, cfn, ddb = clients(plan.region)
            for check in (lambda: check_concurrency(lam, plan, region), lambda: check_tables(cfn, ddb, plan, region)):
                print("preflight %s: %s" % (plan.name, check()), file=out)
    except Problem as p:
        return exit_codes.fail(str(p), p.hint, p.code)
    except NoCredentialsError:
        return exit_codes.fail("no AWS credentials", "run 'aws configure' or set AWS_PROFILE, then try again",
                               exit_codes.NO_CREDENTIALS)
    except ClientError as e:
        err = e.response.get("Error", {})
        if err.get("Code") in DENIED:
            return exit_codes.fail("AWS refused the check (%s: %s)" % (err.get("Code"), err.get("Message", "")),
                                   "the deploying identity needs lambda:GetAccountSettings, "
                                   "lambda:GetFunctionConcurrency, cloudformation:DescribeStacks and "
                                   "dynamodb:DescribeTable", exit_codes.ACCESS_DENIED)
        return exit_codes.fail("AWS failed the check (%s: %s)" % (err.get("Code"), err.get("Message", "")),
                               "try again; if it persists, check the AWS Health Dashboard", exit_codes.SERVICE_ERROR)
    except BotoCoreError as e:
        return exit_codes.fail("AWS could not be reached (%s)" % e, "check the network and the region, then try again",
                               exit_codes.SERVICE_ERROR)
    return exit_codes.OK


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cloud.infra.preflight", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Checks a synthesized MotorGuard stack against the AWS account it will be deployed to\n"
                    "(Lambda concurrency, table names), before cdk deploy.", epilog=exit_codes.epilog(CODES))
    parser.add_argument("assembly", nargs="?", type=Path, default=DEFAULT_ASSEMBLY,
                        help="the cloud assembly directory cdk synth wrote (default %(default)s)")
    return preflight(parser.parse_args(argv).assembly)


if __name__ == "__main__":
    sys.exit(main())
