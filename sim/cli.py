"""python -m sim: the fleet load simulator's command line (make simulate, make simulate-aws, make bench-fleet).

    python -m sim run --devices N [--duration S] [--rate R] [--workers W] [--ui] [--json]
                      [--faults-per-hour F] [--fault-storm-at S] [--broker-dir DIR --aws-endpoint URL]
    python -m sim ids --devices N            make (or find) the fleet's identities
    python -m sim aws run|cleanup ...        against AWS IoT Core (sim/aws.py)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contract import exit_codes
from sim import identities, summary

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_IDS = "build/fleet-ids"
DEFAULT_HOME = "build/sim-home"
CODES = (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.NO_CREDENTIALS, exit_codes.ACCESS_DENIED,
         exit_codes.SERVICE_ERROR)


class BadInput(ValueError):
    pass


def positive(kind):
    def check(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a number" % text) from None
        if v <= 0:
            raise argparse.ArgumentTypeError("must be above 0, not %s" % text)
        return v
    return check


def locust_commands(devices: int, rate: float, workers: int, ui: bool, port: int, csv: str | None,
                    bind: str = "127.0.0.1", master_host: str = "127.0.0.1") -> list:
    """The Locust processes of a run: one headless process, or a master and its workers. bind: where
    the master listens for workers (a Fargate task: 0.0.0.0); master_host: where workers find it."""
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING", "--stop-timeout", "0"]  # users are killed at once; on_stop drains each
    run = ["-u", str(devices), "-r", str(rate)]
    run += ["--web-host", "127.0.0.1", "--web-port", str(port)] if ui else ["--headless", "--only-summary"]
    if csv:
        run += ["--csv", csv]
    if workers <= 0:
        return [base + run]
    master = base + run + ["--master", "--master-bind-host", bind, "--master-bind-port", str(port + 1),
                           "--expect-workers", str(workers)]
    worker = base + ["--worker", "--master-host", master_host, "--master-port", str(port + 1)]
    return [master] + [worker] * workers


def run_locust(cmds: list, env: dict, usage=None, timeout_s: float | None = None, stdout=None) -> list:
    """Starts the processes (the master first) and waits for all of them; usage.sample() each second.
    stdout: where Locust's own tables go (default: ours; the benchmark sends them to stderr)."""
    procs = [subprocess.Popen(c, env=env, stdin=subprocess.DEVNULL, stdout=stdout) for c in cmds]
    if usage is not None:
        usage.groups["simulator"] = [p.pid for p in procs]
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        while any(p.poll() is None for p in procs):
            if usage is not None:
                usage.sample()
            if deadline and time.monotonic() > deadline:
                raise TimeoutError("the simulator's processes did not finish in %d s" % timeout_s)
            time.sleep(1.0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    return [p.returncode for p in procs]


def device_env(a, extra: dict) -> dict:
    env = dict(os.environ, SIM_WORKERS=str(max(1, a.workers)), SIM_DURATION_S="" if a.ui else str(a.duration),
               SIM_FAULTS_PER_HOUR=str(a.faults_per_hour), SIM_PREFIX=a.prefix)
    if a.fault_storm_at:
        env["SIM_FAULT_STORM_AT_MS"] = str(int((time.time() + a.fault_storm_at) * 1000))
    if a.sample_period_ms:
        env["SIM_SAMPLE_PERIOD_MS"] = str(a.sample_period_ms)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_local(a) -> dict:
    """A run against the local IoT Core (started here unless --broker-dir names a running one)."""
    from sim import local

    open_files = local.raise_open_files()
    workers = 1 if a.broker_dir else local.gateway_workers_for(a.devices, open_files)
    if a.devices > workers * local.device_capacity(open_files):
        # a running broker's gateway was started with its own process count (measured on a 2-core
        # container whose hard limit is 20,000: one gateway process stopped at 9,995 devices)
        print("warning: the open-file limit is %d, enough for about %d devices in each gateway process (two "
              "descriptors each); start the demo's broker with more gateway workers or raise `ulimit -Hn` to "
              "connect %d" % (open_files, local.device_capacity(open_files), a.devices), file=sys.stderr)
    core = None
    try:
        if a.broker_dir:
            broker = local.attach(a.broker_dir)
            endpoint = a.aws_endpoint
        else:
            core = local.start_core(a.home, workers)
            broker, endpoint = core.broker, core.moto.url
        per_worker = -(-a.devices // max(1, a.workers))
        t0 = time.monotonic()
        ids = identities.ensure(a.ids_dir, broker.ca_cert, broker.ca_key, per_worker * max(1, a.workers), a.prefix)
        ids["seconds"] = round(time.monotonic() - t0, 1)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "summary.json"
            extra = {"SIM_BROKER_HOST": broker.host, "SIM_BROKER_PORT": broker.port, "SIM_CA": broker.ca_cert,
                     "SIM_IDS": ids["dir"], "SIM_SUMMARY": out}
            if a.timeline:
                extra["SIM_TIMELINE"] = a.timeline
            if endpoint:
                extra.update(SIM_STORAGE_ENDPOINT=endpoint, SIM_STORAGE_SAMPLE=a.storage_sample)
            usage = local.Usage({"broker": local.broker_pids(broker)})
            codes = run_locust(locust_commands(a.devices, a.rate, a.workers, a.ui, a.port, a.csv), device_env(a, extra),
                               usage, None if a.ui else a.duration + a.devices / a.rate + 300,
                               stdout=sys.stderr if getattr(a, "locust_to_stderr", False) else None)
            if not out.exists():
                raise RuntimeError("the simulator wrote no summary (exit codes %s); see its output above" % codes)
            s = json.loads(out.read_text())
        s.update(target_devices=a.devices, identities=ids, resources=usage.per_thousand(a.devices),
                 open_files_limit=open_files)
        if a.timeline:
            s["usage_timeline"] = usage.timeline()
        if endpoint:
            if a.broker_dir:
                os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
                os.environ["AWS_ENDPOINT_URL"] = endpoint
            c = s["counters"]
            s["stored"] = local.wait_stored(c["telemetry_acked"], a.prefix)
            # acknowledged but not stored, plus made but never acknowledged
            s["lost"] = max(0, c["telemetry_acked"] - s["stored"]["telemetry"]) + c.get("unacked_at_end", 0)
            slots, devices = local.alert_claims(a.prefix)
            s["alerts"] = {"delivered": slots, "devices": devices}
        return s
    finally:
        if core is not None:
            local.stop_core(core)


def run_aws(a) -> dict:
    """A run against AWS IoT Core from this machine: each device makes its own identity in the account
    as Locust spawns it (sim/aws.py), the ramp is held within the account's CONNECT quota, and the run's
    things and certificates are deleted at the end, whether the run worked or not (unless --keep)."""
    import boto3

    from sim import aws

    aws.check_rate(a.rate, a.rate_quota)
    run_id = a.run_id or aws.new_run_id()
    aws.run_prefix(run_id)
    iot = boto3.client("iot")
    from provisioning import policy

    try:
        iot.get_policy(policyName=policy.POLICY_NAME)
    except iot.exceptions.ResourceNotFoundException:
        raise BadInput("the device policy %s is not in the account: run `provision policy update` first" %
                       policy.POLICY_NAME) from None
    if a.endpoint:
        host, _, port = a.endpoint.partition(":")
    else:
        host, port = aws.data_endpoint(iot), ""
    s, removed = None, None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "summary.json"
            extra = {"SIM_BROKER_HOST": host, "SIM_BROKER_PORT": port or "8883", "SIM_CA": aws.amazon_root_ca(),
                     "SIM_AWS_RUN_ID": run_id, "SIM_SUMMARY": out}
            usage = local_usage()
            codes = run_locust(locust_commands(a.devices, a.rate, a.workers, a.ui, a.port, a.csv), device_env(a, extra),
                               usage, None if a.ui else a.duration + a.devices / a.rate + 300)
            if not out.exists():
                raise RuntimeError("the simulator wrote no summary (exit codes %s); see its output above" % codes)
            s = json.loads(out.read_text())
            s.update(target_devices=a.devices, resources=usage.per_thousand(a.devices))
    finally:
        if not a.keep:  # also when the run failed: the things are found by the run's attribute
            removed = aws.cleanup(iot, run_id)
            print("cleanup run=%s things=%d certificates=%d" % (run_id, removed["things"], removed["certificates"]),
                  file=sys.stderr)
    s.update(backend="aws", run_id=run_id, endpoint=host, cleanup=removed)
    return s


def local_usage():
    from sim import local

    return local.Usage({})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim", description="MotorGuard's fleet load simulator (Locust)",
                                epilog=exit_codes.epilog(CODES),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="run a fleet against the local IoT Core (or AWS IoT Core: --backend aws)")
    r.add_argument("--backend", choices=("local", "aws"), default="local",
                   help="local: the local IoT Core (default); aws: AWS IoT Core of the current credentials")
    r.add_argument("--devices", type=positive(int), required=True, help="how many devices")
    r.add_argument("--duration", type=positive(float), default=60.0, help="seconds from the first connect (default 60)")
    r.add_argument("--rate", type=positive(float), default=50.0, help="connects per second, the ramp (default 50)")
    r.add_argument("--workers", type=int, default=0, help="Locust worker processes (0: one process; default 0)")
    r.add_argument("--ui", action="store_true", help="Locust's web UI on 127.0.0.1:--port instead of a headless run")
    r.add_argument("--port", type=int, default=8089, help="web UI port (and the master's, +1) (default 8089)")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    r.add_argument("--faults-per-hour", type=float, default=0.0, help="FAULTs per device-hour (default 0)")
    r.add_argument("--fault-storm-at", type=positive(float), help="every device trips a FAULT this many s after start")
    r.add_argument("--sample-period-ms", type=positive(int), help="sample period (default: the firmware's 1000)")
    r.add_argument("--storage-sample", type=float, default=0.05, help="share of devices probing storage latency")
    r.add_argument("--prefix", default=identities.PREFIX, help="thing name prefix (default %(default)s)")
    r.add_argument("--ids-dir", default=DEFAULT_IDS, help="where identities are kept (default %(default)s)")
    r.add_argument("--home", default=DEFAULT_HOME, help="provisioning home of the local IoT Core it starts")
    r.add_argument("--broker-dir", help="run against this running broker (make demo's <home>/broker) instead")
    r.add_argument("--aws-endpoint", help="with --broker-dir: its moto URL, to count what was stored")
    r.add_argument("--csv", help="Locust's CSV statistics to this prefix")
    r.add_argument("--rate-quota", type=positive(float), default=None,
                   help="aws: the account's CONNECTs/s quota if raised (default: 100, safe in every region)")
    r.add_argument("--run-id", help="aws: the run's id (default: made from the time); its things are sim-<id>-NNNNN")
    r.add_argument("--endpoint", help="aws: HOST[:PORT] instead of the account's ATS endpoint")
    r.add_argument("--keep", action="store_true", help="aws: keep the run's things and certificates (no clean-up)")
    r.add_argument("--timeline", help="append the fleet's counters to this file every 2 s (JSON lines; the chart)")
    i = sub.add_parser("ids", help="make (or find) the identities of N devices for a broker's CA")
    i.add_argument("--devices", type=positive(int), required=True)
    i.add_argument("--ids-dir", default=DEFAULT_IDS)
    i.add_argument("--home", default=DEFAULT_HOME)
    i.add_argument("--prefix", default=identities.PREFIX)
    from sim import aws

    aws.add_commands(sub)
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        if a.command == "run":
            if a.workers < 0:
                raise BadInput("--workers must be 0 or more")
            if a.backend == "aws":
                from sim import aws

                a.rate_quota = a.rate_quota or aws.MAX_CONNECTS_PER_S
                s = run_aws(a)
            else:
                s = run_local(a)
            print(json.dumps(s) if a.json else summary.human(s))
            return exit_codes.OK
        if a.command == "ids":
            from provisioning import local as local_backend
            from cloud.local.broker import LocalBroker

            state = local_backend.broker_dir(Path(a.home))
            if not (state / "pki").exists():
                local_backend.ca_init(Path(a.home), 8883)
            b = LocalBroker.from_state_dir(state)
            t0 = time.monotonic()
            r = identities.ensure(a.ids_dir, b.ca_cert, b.ca_key, a.devices, a.prefix)
            print("identities=%d made=%d dir=%s seconds=%.1f" % (r["count"], r["made"], r["dir"], time.monotonic() - t0))
            return exit_codes.OK
        if a.command == "aws":
            from sim import aws

            return aws.main(a)
    except (BadInput, ValueError, FileNotFoundError) as e:
        print("error: %s" % e, file=sys.stderr)
        return exit_codes.BAD_INPUT
    except (RuntimeError, TimeoutError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return exit_codes.SERVICE_ERROR
    except Exception as e:  # noqa: BLE001 - botocore's, sorted into the table's codes; anything else re-raised
        return aws_failure(e)
    return exit_codes.OK


def aws_failure(e: Exception) -> int:
    """An AWS error as one error line, one hint and its exit code (never the credentials themselves)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    if isinstance(e, (NoCredentialsError, NoRegionError)):
        return exit_codes.fail("no AWS credentials or region (%s)" % type(e).__name__,
                               "aws configure, or set AWS_PROFILE and AWS_REGION", exit_codes.NO_CREDENTIALS)
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedException"):
            return exit_codes.fail("AWS refused %s: %s" % (e.operation_name, code),
                                   "the credentials need the iot: actions of docs/simulator.md (AWS)",
                                   exit_codes.ACCESS_DENIED)
        return exit_codes.fail("AWS failed %s: %s" % (e.operation_name, code), "try again; the run's things were "
                               "cleaned up (python -m sim aws cleanup --run-id ID to be sure)", exit_codes.SERVICE_ERROR)
    if isinstance(e, BotoCoreError):
        return exit_codes.fail("AWS could not be reached: %s" % e, "check the network and the region",
                               exit_codes.SERVICE_ERROR)
    raise e
