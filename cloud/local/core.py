"""The local IoT Core in one object: the mTLS broker (cloud/local/broker.py, with the fleet CA of a
provisioning home), AWS services in a moto server, the rules engine running the real Lambdas
in-process, and the REST API with the dashboard's user pool (cloud/local/cognito.py).

    with LocalCore(home) as core:        # home: a provisioning home (fleet CA, broker, registry)
        core.api.url, core.engine.stats(), core.meter.snapshot()
        core.users.add_user(name, password)   # a dashboard user (core.users: the moto user pool)

The engine runs the rules of cloud/rules.py, as the CDK stack deploys them.

Used by `make demo`, the end-to-end test and `make bench-cloud`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cloud import rules
from cloud.local import moto_env
from cloud.local.broker import LocalBroker
from cloud.local.cognito import LocalUserPool
from cloud.local.engine import Engine, default_functions
from cloud.local.meter import Meter
from provisioning import local as local_backend


class LocalCore:
    def __init__(self, home, broker_port: int | None = None, api_port: int = 0, workers: int = 4, functions=None,
                 moto_factory=None, lambda_processes: int = 0, gateway_workers: int = 1):
        """moto_factory: makes the AWS side (default: moto in this process; the benchmark runs it in
        its own process so it does not share a core with the engine); lambda_processes: worker
        processes for the queue-fed Lambdas (0: they run in this process)."""
        self.home = Path(home)
        self.broker_port = broker_port
        self.api_port = api_port
        self.workers = workers
        self.functions = functions
        self.moto_factory = moto_factory or moto_env.MotoServer
        self.lambda_processes = lambda_processes
        self.gateway_workers = gateway_workers  # processes sharing the broker's port (a large fleet needs several)
        self.broker = self.moto = self.engine = self.api = self.users = None
        self.meter = Meter()
        self.started_at = None

    def start(self) -> "LocalCore":
        from cloud.local.apigw import ApiServer

        state = local_backend.broker_dir(self.home)
        if not (state / "pki").exists():
            local_backend.ca_init(self.home, self.broker_port or moto_env.free_port())
        # The broker of the home's fleet CA, run from this process (provision's local backend, by
        # contrast, drives it through its command line).
        self.broker = LocalBroker.from_state_dir(state, self.broker_port)
        self.broker.update_acl()
        if not self.broker.running():
            self.broker.gateway_workers = self.gateway_workers
            self.broker.start()
        self.moto = self.moto_factory().start()
        os.environ["MOTORGUARD_LOCAL_BROKER_DIR"] = str(self.broker.state_dir)  # the api publishes commands there
        self.meter.install()
        self.engine = Engine(self.broker, functions=self.functions or default_functions(), workers=self.workers,
                             rules=rules.RULES, lambda_processes=self.lambda_processes,
                             meter=self.meter).start()
        self.users = LocalUserPool(self.moto.url).create()  # the dashboard's sign-in
        self.api = ApiServer(self.api_port, verifier=self.users.verifier()).start()
        self.started_at = time.monotonic()
        return self

    def stop(self):
        """Stops every part, each whatever the others did: a busy moto that does not exit in time must
        not leave the broker and its gateway running."""
        failed = None
        for part in (self.api, self.engine, self.moto, self.broker):
            if part is not None:
                try:
                    part.stop()
                except Exception as e:  # noqa: BLE001 - shut the rest down anyway, then say so
                    failed = failed or e
        if failed is not None:
            raise failed

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def counts(self, devices: int, seconds: float) -> dict:
        """Billable operations so far: the meter's AWS calls plus IoT Core and Lambda figures from the engine."""
        c = self.meter.snapshot()
        st = self.engine.stats()
        c["iot_message_5kb"] = st["message_units_5kb"] - st["basic_ingest"]
        c["iot_rule_triggered"] = sum(st["fired"].values())
        c["iot_rule_action"] = st["actions_ok"] + st["actions_failed"] + st["error_actions"]
        c["lambda_request"] = st["lambda_invocations"]
        c["lambda_gb_second"] = st["lambda_gb_seconds"]
        c["iot_connection_minute"] = devices * seconds / 60.0
        return c
