"""CDK app of the simulator on Fargate: `cdk deploy --app "python -m sim.infra.app" -c devices=N
-c workers=W [-c rate=R] [-c duration=S] [-c run_id=ID] [-c rate_quota=Q]` (make simulate-aws does it).
The image is built from sim/Dockerfile with the repository as its context, our own code only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ecs as ecs

from contract import exit_codes
from sim.infra.stack import MAX_CONNECTS_PER_S, RunSettings, SimulatorStack

ROOT = Path(__file__).resolve().parents[2]
STACK_NAME = "MotorGuardSim"
# The image's context is the repository, but only these go in (the Dockerfile copies them): nothing
# from .venv, build/ or node_modules is hashed or sent to the builder.
CONTEXT_ONLY = ["contract", "schemas", "provisioning", "sim"]


def image() -> ecs.ContainerImage:
    return ecs.ContainerImage.from_asset(str(ROOT), file="sim/Dockerfile", ignore_mode=cdk.IgnoreMode.DOCKER,
                                         exclude=["*"] + ["!" + d for d in CONTEXT_ONLY] + ["**/__pycache__"])


def settings(app: cdk.App) -> RunSettings:
    def ctx(name, kind, default=None):
        raw = app.node.try_get_context(name)
        if raw is None:
            if default is None:
                raise ValueError("-c %s=... is needed" % name)
            return default
        try:
            return kind(raw)
        except ValueError:
            raise ValueError("-c %s=%r is not a number" % (name, raw)) from None

    import time

    return RunSettings(devices=ctx("devices", int), workers=ctx("workers", int), rate=ctx("rate", float, 50.0),
                       duration_s=ctx("duration", float, 600.0),
                       run_id=str(app.node.try_get_context("run_id") or "r%x" % int(time.time())),
                       rate_quota=ctx("rate_quota", float, float(MAX_CONNECTS_PER_S)))


def main() -> int:
    app = cdk.App()
    try:
        run = settings(app)
    except ValueError as e:
        return exit_codes.fail(str(e), "e.g. make simulate-aws WORKERS=2 DEVICES=1000", exit_codes.BAD_INPUT)
    env = cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION"))
    SimulatorStack(app, STACK_NAME, run=run, image=image(), env=env)
    app.synth()
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
