"""CDK app: `cdk synth|deploy|destroy --app "python -m cloud.infra.app"` (scripts/cdk.sh does it)."""

import os

import aws_cdk as cdk

from cloud.infra.package import stage
from cloud.infra.stack import MotorGuardStack


def main():
    app = cdk.App()
    env = cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION"))
    MotorGuardStack(app, "MotorGuard", code_dir=str(stage()), env=env)
    app.synth()


if __name__ == "__main__":
    main()
