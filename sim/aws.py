"""The AWS backend: the simulated fleet's identities made in AWS IoT Core, and a clean-up that removes
every thing, certificate and policy attachment a run made, also after a failed run.

Each run has an id; its things are named sim-<run>-NNNNN and carry the attribute simrun=<run>, so the
clean-up finds them by listing, not from a file the failed run may never have written. Keys are made
by AWS (CreateKeysAndCertificate) where the identities are made: in the Fargate task for a cloud run
(docs/simulator.md), so no private key passes through a laptop.

Ramp: AWS IoT Core's documented message-broker quotas are a number of MQTT CONNECTs per second per
account (adjustable; 500 in the larger regions, lower in some others), one CONNECT per second per
client id (not adjustable) and 100 publishes per second per connection. A run's --rate is refused
above MAX_CONNECTS_PER_S, a default safe in every region, unless --rate-quota says what the account
has (docs/simulator.md). A device here reconnects at most once a second (backoff from 1 s) and
publishes far below 100/s.

Making identities: each device makes its own in the process that simulates it (device_identity), so
a Locust worker (a Fargate task) makes exactly its shard. The control-plane calls are throttled per
API and account; botocore's adaptive retry mode slows the makers down to what the account allows.
"""

from __future__ import annotations

import atexit
import shlex
import os
import shutil
import sys
import tempfile
import threading

from contract import exit_codes
from provisioning import policy

MAX_CONNECTS_PER_S = 100  # AWS IoT Core's default account-wide connect rate
ATTRIBUTE = "simrun"


def check_rate(rate: float, quota: float = MAX_CONNECTS_PER_S) -> None:
    """Refuses a ramp above the account's CONNECT quota (every connect over it would be throttled)."""
    if rate > quota:
        raise ValueError("--rate %g is above AWS IoT Core's %g CONNECTs/s for the account: lower --rate, or give "
                         "--rate-quota N once the account's quota (Service Quotas, AWS IoT Core) is N" % (rate, quota))


_local = {"client": None, "dir": None, "lock": threading.Lock()}


def _client():
    """This process's IoT control-plane client (adaptive retries: it slows down when throttled)."""
    import boto3
    from botocore.config import Config

    with _local["lock"]:
        if _local["client"] is None:
            _local["client"] = boto3.client("iot", config=Config(retries={"mode": "adaptive", "max_attempts": 10}))
        return _local["client"]


def _private_dir() -> str:
    """A directory only this process's user can read, removed when the process ends: the keys AWS
    made for this process's devices, on the way into an ssl context (which reads files)."""
    with _local["lock"]:
        if _local["dir"] is None:
            _local["dir"] = tempfile.mkdtemp(prefix="sim-keys-")
            os.chmod(_local["dir"], 0o700)
            atexit.register(shutil.rmtree, _local["dir"], True)
        return _local["dir"]


def device_identity(run_id: str, index: int, iot=None) -> tuple:
    """Makes device `index` of the run in AWS (thing, AWS-made key and certificate, policy attached)
    and keeps its key and certificate in this process's private directory. Returns (thing, dir)."""
    ((thing, cert, key),) = make_identities(iot or _client(), run_id, index, 1)
    where = _private_dir()
    path = os.path.join(where, thing + ".pem")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + cert)
    return thing, where


def data_endpoint(iot) -> str:
    """The account's MQTT endpoint (ATS, the certificate Amazon Root CA 1 signs)."""
    return iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]


def amazon_root_ca() -> str:
    """A CA bundle holding Amazon Root CA 1 (certifi's, which carries it), for the broker's certificate."""
    import certifi

    return certifi.where()


def new_run_id() -> str:
    import time

    return "r%x" % int(time.time())


def run_prefix(run_id: str) -> str:
    if not run_id or not run_id.replace("-", "").isalnum() or not run_id.isascii() or len(run_id) > 20:
        raise ValueError("a run id is 1-20 letters, digits or dashes, not %r" % run_id)
    return "sim-%s-" % run_id


def make_identities(iot, run_id: str, first: int, count: int) -> list:
    """Things first..first+count-1 of the run, each with its own AWS-made key and certificate and the
    device policy attached. Returns [(thing, cert_pem, key_pem)]: kept in memory by the caller."""
    prefix, out = run_prefix(run_id), []
    for i in range(first, first + count):
        thing = "%s%05d" % (prefix, i)
        iot.create_thing(thingName=thing, attributePayload={"attributes": {ATTRIBUTE: run_id}})
        c = iot.create_keys_and_certificate(setAsActive=True)
        try:
            iot.attach_policy(policyName=policy.POLICY_NAME, target=c["certificateArn"])
            iot.attach_thing_principal(thingName=thing, principal=c["certificateArn"])
        except Exception:
            # a certificate on no thing would escape the clean-up (it lists things): undo it now
            _delete_certificate(iot, c["certificateArn"])
            raise
        out.append((thing, c["certificatePem"], c["keyPair"]["PrivateKey"]))
    return out


def cleanup(iot, run_id: str | None = None) -> dict:
    """Deletes every thing of the run (every simulator run when run_id is None), its certificates
    (detached, deactivated, deleted) and their policy attachments. Safe to run again."""
    want = run_prefix(run_id) if run_id else "sim-"
    things = certs = 0
    kw = {"attributeName": ATTRIBUTE} if run_id is None else {"attributeName": ATTRIBUTE, "attributeValue": run_id}
    while True:
        page = iot.list_things(**kw)
        for t in page["things"]:
            name = t["thingName"]
            if not name.startswith(want):
                continue
            for arn in iot.list_thing_principals(thingName=name)["principals"]:
                iot.detach_thing_principal(thingName=name, principal=arn)
                _delete_certificate(iot, arn)
                certs += 1
            iot.delete_thing(thingName=name)
            things += 1
        if not page.get("nextToken"):
            break
        kw["nextToken"] = page["nextToken"]
    return {"things": things, "certificates": certs}


def _delete_certificate(iot, arn: str) -> None:
    cid = arn.rsplit("/", 1)[1]
    for p in iot.list_attached_policies(target=arn)["policies"]:
        iot.detach_policy(policyName=p["policyName"], target=arn)
    iot.update_certificate(certificateId=cid, newStatus="INACTIVE")
    iot.delete_certificate(certificateId=cid, forceDelete=True)


def add_commands(sub) -> None:
    a = sub.add_parser("aws", help="AWS: make a run's identities, clean a run up, or run the fleet on ECS Fargate")
    a.add_argument("action", choices=("identities", "cleanup", "fargate"))
    a.add_argument("--run-id", help="the run (cleanup without it: every simulator run)")
    a.add_argument("--devices", type=int, default=0)
    a.add_argument("--first", type=int, default=0, help="first device index (a worker's shard)")
    a.add_argument("--workers", type=int, default=2, help="fargate: worker tasks (default 2)")
    a.add_argument("--rate", type=float, default=50.0, help="fargate: connects/s of the whole fleet (default 50)")
    a.add_argument("--duration", type=float, default=600.0, help="fargate: seconds of the run (default 600)")
    a.add_argument("--rate-quota", type=float, default=float(MAX_CONNECTS_PER_S),
                   help="fargate: the account's CONNECTs/s quota, if raised (default %(default)s)")
    a.add_argument("--dry-run", action="store_true", help="fargate: print the deploy command, run nothing")


def fargate_command(a, python: str) -> list:
    """The CDK CLI's deploy of the simulator stack (sim/infra/app.py) for this run; the run's
    settings are checked here first, as the stack checks them at synth."""
    from sim.infra.stack import RunSettings

    run = RunSettings(a.devices, a.workers, a.rate, a.duration, a.run_id, a.rate_quota)
    return ["npx", "--yes", "aws-cdk@2", "deploy", "MotorGuardSim", "--app", "%s -m sim.infra.app" % python,
            "-c", "devices=%d" % run.devices, "-c", "workers=%d" % run.workers, "-c", "rate=%g" % run.rate,
            "-c", "duration=%g" % run.duration_s, "-c", "run_id=%s" % run.run_id, "-c", "rate_quota=%g" % a.rate_quota,
            "--require-approval", "never", "--outputs-file", "build/sim-fargate-%s.json" % run.run_id]


def fargate(a) -> int:
    import shutil as sh
    import subprocess

    a.run_id = a.run_id or new_run_id()
    try:
        cmd = fargate_command(a, sys.executable)
    except ValueError as e:
        return exit_codes.fail(str(e), "e.g. make simulate-aws WORKERS=2 DEVICES=1000", exit_codes.BAD_INPUT)
    print("run %s: %s" % (a.run_id, shlex.join(cmd)))
    if a.dry_run:
        return exit_codes.OK
    if not sh.which("npx"):
        return exit_codes.fail("npx (Node.js) is needed for the AWS CDK CLI", "install Node.js 18+", exit_codes.BAD_INPUT)
    import boto3

    if boto3.Session().get_credentials() is None:
        return exit_codes.fail("no AWS credentials", "aws configure, or set AWS_PROFILE", exit_codes.NO_CREDENTIALS)
    if subprocess.run(cmd).returncode != 0:
        return exit_codes.fail("cdk deploy failed (its output is above)", "fix what it says; nothing of the run's "
                               "devices exists until the tasks start", exit_codes.SERVICE_ERROR)
    print("the run has started on Fargate. Results: the stack's outputs (build/sim-fargate-%s.json) name the bucket;"
          " the summary is runs/%s/summary.json there and a `sim-summary` line in the master's log.\n"
          "End it: npx aws-cdk@2 destroy MotorGuardSim --app '%s -m sim.infra.app' -c devices=%d -c workers=%d "
          "-c run_id=%s (the master deletes the run's things; if it could not: python -m sim aws cleanup --run-id %s)"
          % (a.run_id, a.run_id, sys.executable, a.devices, a.workers, a.run_id, a.run_id))
    return exit_codes.OK


def main(a) -> int:
    import boto3

    if a.action == "fargate":
        return fargate(a)
    iot = boto3.client("iot")
    if a.action == "cleanup":
        r = cleanup(iot, a.run_id)
        print("deleted things=%d certificates=%d" % (r["things"], r["certificates"]))
        return exit_codes.OK
    if not a.run_id or a.devices < 1:
        print("error: identities needs --run-id and --devices N", file=sys.stderr)
        return exit_codes.BAD_INPUT
    made = make_identities(iot, a.run_id, a.first, a.devices)
    print("made things=%d run=%s" % (len(made), a.run_id))  # the keys stay in this process
    return exit_codes.OK
