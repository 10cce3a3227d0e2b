"""python -m sim.task: the container's entry point (sim/Dockerfile), one Locust process per task.

The Fargate stack (sim/infra/stack.py) runs one master task and N worker tasks of the same image;
tests/sim/test_task.py runs the same entry point as three local processes. Everything comes from the
environment, so the task definition is the whole configuration:

    SIM_ROLE            master | worker
    SIM_DEVICES         the whole fleet (master)            SIM_RATE      connects/s (master)
    SIM_WORKERS         worker tasks (master and workers)    SIM_DURATION_S
    SIM_MASTER_HOST     where workers find the master (the stack: its Cloud Map name)
    SIM_MASTER_PORT     the master's port for workers (default 5557)
    SIM_AWS_RUN_ID      AWS backend: each device makes its own identity in the account, in the worker
                        that simulates it (sim/aws.py); the master deletes the run's things at the end
    SIM_BROKER_HOST/PORT, SIM_CA   the broker (AWS: the account's ATS endpoint and Amazon Root CA 1 by
                        default); SIM_IDS for identities kept on disk (the local run of this entry point)
    SIM_RESULTS_BUCKET  the master writes the summary to s3://bucket/runs/<run>/summary.json
    SIM_IDLE_AFTER=1    stay up after the run (an ECS service would otherwise start the task again)

The master always prints the summary as one line, `sim-summary {json}`, which CloudWatch Logs keeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from contract import exit_codes
from sim import cli

CODES = (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.SERVICE_ERROR)
DEFAULT_PORT = 5557  # Locust's own default for workers


class Misconfigured(ValueError):
    pass


def _need(env, name) -> str:
    value = env.get(name, "")
    if not value:
        raise Misconfigured("%s is not set: the task definition (sim/infra/stack.py) must give it" % name)
    return value


def _number(env, name, kind, default=None):
    raw = env.get(name, "")
    if raw == "" and default is not None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise Misconfigured("%s=%r is not a number" % (name, raw)) from None
    if value <= 0:
        raise Misconfigured("%s must be above 0, not %s" % (name, raw))
    return value


def aws_defaults(env: dict) -> dict:
    """With SIM_AWS_RUN_ID and no broker given: the account's endpoint and Amazon's root CA."""
    out = dict(env)
    if out.get("SIM_AWS_RUN_ID"):
        from sim import aws

        aws.run_prefix(out["SIM_AWS_RUN_ID"])  # a bad run id fails here, before anything is made
        if not out.get("SIM_BROKER_HOST"):
            import boto3

            out["SIM_BROKER_HOST"] = aws.data_endpoint(boto3.client("iot"))
        out.setdefault("SIM_BROKER_PORT", "8883")
        out.setdefault("SIM_CA", aws.amazon_root_ca())
    return out


def command(env: dict) -> list:
    """This task's Locust command line, from its role."""
    role = env.get("SIM_ROLE", "")
    workers = _number(env, "SIM_WORKERS", int)
    port = _number(env, "SIM_MASTER_PORT", int, DEFAULT_PORT) - 1  # locust_commands adds 1 for workers
    if role == "master":
        devices, rate = _number(env, "SIM_DEVICES", int), _number(env, "SIM_RATE", float)
        _number(env, "SIM_DURATION_S", float)
        return cli.locust_commands(devices, rate, workers, False, port, None, bind="0.0.0.0")[0]
    if role == "worker":
        return cli.locust_commands(1, 1, workers, False, port, None, master_host=_need(env, "SIM_MASTER_HOST"))[1]
    raise Misconfigured("SIM_ROLE must be master or worker, not %r" % role)


def publish_results(env: dict, summary: dict) -> str | None:
    """The master's results: one log line always, and the S3 object when a bucket is given."""
    print("sim-summary " + json.dumps(summary, sort_keys=True), flush=True)
    bucket = env.get("SIM_RESULTS_BUCKET")
    if not bucket:
        return None
    import boto3

    key = "runs/%s/summary.json" % (env.get("SIM_AWS_RUN_ID") or env.get("SIM_RUN_LABEL") or "local")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(summary).encode(),
                                  ContentType="application/json")
    return "s3://%s/%s" % (bucket, key)


def run(env: dict) -> int:
    env = aws_defaults(env)
    cmd = command(env)
    role = env["SIM_ROLE"]
    summary_path = env.setdefault("SIM_SUMMARY", "/tmp/sim-summary.json")
    code, summary = exit_codes.OK, None
    try:
        rc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL).returncode
        if role == "master":
            if not os.path.exists(summary_path):
                raise RuntimeError("the master wrote no summary (Locust exited %s)" % rc)
            with open(summary_path) as f:
                summary = json.load(f)
    except RuntimeError as e:
        print("error: %s" % e, file=sys.stderr)
        code = exit_codes.SERVICE_ERROR
    finally:
        if role == "master" and env.get("SIM_AWS_RUN_ID"):
            # also after a failed run: the run's things are found by their attribute, not by this process
            import boto3

            from sim import aws

            removed = aws.cleanup(boto3.client("iot"), env["SIM_AWS_RUN_ID"])
            print("sim-cleanup things=%(things)d certificates=%(certificates)d" % removed, flush=True)
            if summary is not None:
                summary["cleanup"] = removed
    if summary is not None:
        where = publish_results(env, summary)
        if where:
            print("sim-results " + where, flush=True)
    if env.get("SIM_IDLE_AFTER") == "1":
        print("sim-task done (%s); idle until the stack is destroyed" % role, flush=True)
        while True:
            time.sleep(3600)
    return code


def main() -> int:
    if len(sys.argv) > 1:
        print(__doc__ + "\n" + exit_codes.epilog(CODES))
        return exit_codes.OK if sys.argv[1] in ("-h", "--help") else exit_codes.BAD_INPUT
    try:
        return run(dict(os.environ))
    except Misconfigured as e:
        print("error: %s" % e, file=sys.stderr)
        return exit_codes.BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
