"""The synthesized CloudFormation template through the field's linters: cfn-lint (AWS's rules for
templates) and checkov (security and compliance policies). Any finding fails the test; findings that
do not apply here are suppressed on their resource, with a reason (cloud/infra/stack.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is a dev dependency (make setup installs it)")

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    exe = BIN / name
    if not exe.exists():
        pytest.skip("%s is not installed in %s (docs/cloud.md, Infrastructure linters, says how)" % (name, BIN))
    return str(exe)


@pytest.fixture(scope="module")
def template_file(tmp_path_factory):
    from aws_cdk.assertions import Template

    from cloud.infra.package import stage
    from cloud.infra.stack import MotorGuardStack

    d = tmp_path_factory.mktemp("cfn")
    app = cdk.App()
    stack = MotorGuardStack(app, "Lint", code_dir=str(stage(d / "lambda")),
                            env=cdk.Environment(account="123456789012", region="us-east-1"))
    path = d / "template.json"
    path.write_text(json.dumps(Template.from_stack(stack).to_json(), indent=1))
    return path


def test_cfn_lint_finds_nothing(template_file):
    r = subprocess.run([tool("cfn-lint"), "--format", "json", str(template_file)], capture_output=True, text=True,
                       timeout=300)
    findings = json.loads(r.stdout or "[]")
    described = ["%s %s: %s" % (f["Rule"]["Id"], "/".join(map(str, f["Location"]["Path"])), f["Message"])
                 for f in findings]
    assert findings == [] and r.returncode == 0, "\n".join(described) or r.stderr


def test_checkov_finds_nothing(template_file):
    # --skip-download: no call to Prisma Cloud for guideline links (none is reachable from CI here).
    r = subprocess.run([tool("checkov"), "-f", str(template_file), "--framework", "cloudformation", "--quiet",
                        "--compact", "--skip-download", "-o", "json"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, BC_SKIP_MAPPING="TRUE"))
    report = json.loads(r.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = report["results"]["failed_checks"]
    described = ["%s %s: %s" % (c["check_id"], c["resource"], c["check_name"]) for c in failed]
    assert failed == [] and r.returncode == 0, "\n".join(described) or r.stderr
    summary = report["summary"]
    assert summary["parsing_errors"] == 0 and summary["passed"] > 50, summary  # it did check the template
    assert summary["resource_count"] > 40, summary
