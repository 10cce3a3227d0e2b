"""CDK app: `cdk synth|deploy|destroy --app "python -m cloud.infra.app"` (scripts/cdk.sh does it).

Context (`-c key=value`): reserved_concurrency=off deploys the functions without their reserved
concurrency, for an account whose Lambda quota cannot spare it (docs/cloud.md, Deploying into a
fresh account).
"""

import os
import sys

import aws_cdk as cdk

from cloud.infra.package import stage
from cloud.infra.stack import RESERVED_CONCURRENCY_CONTEXT, MotorGuardStack, reserves_concurrency
from contract import exit_codes

STACK_NAME = "MotorGuard"


def main() -> int:
    app = cdk.App()
    env = cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION"))
    try:  # a context value the stack cannot take is said before the code asset is staged
        reserves_concurrency(app.node.try_get_context(RESERVED_CONCURRENCY_CONTEXT))
    except ValueError as e:
        return exit_codes.fail(str(e), "e.g. scripts/cdk.sh deploy -c reserved_concurrency=off", exit_codes.BAD_INPUT)
    MotorGuardStack(app, STACK_NAME, code_dir=str(stage()), env=env)
    app.synth()
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
