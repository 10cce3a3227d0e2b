"""The fault storm: every simulated device trips a FAULT at the same moment, through the local IoT
Core (broker, gateway, rules engine, the real alert Lambda, moto). Every alert is delivered, once per
device, even though AWS's at-least-once delivery hands the alert Lambda each event twice at once.
Judged from what reaches the SNS topic and the state table (tests/cloud/lambdas/alert_watch.py)."""

from __future__ import annotations

import time

import pytest
import requests

from cloud.local import actions, moto_env
from cloud.local.engine import Engine, default_functions
from sim import identities, local
from sim.device import Counters, Settings
from tests.cloud.lambdas.alert_watch import Pages, atomic_dynamodb, failure_records, slots
from tests.cloud.waiting import waited
from tests.sim.fleet import fleet, running

pytestmark = pytest.mark.broker
DEVICES = 12


@pytest.fixture
def aws(monkeypatch):
    """An account with MotorGuard's resources in moto, boto3 pointed at it (as tests/cloud's fixture)."""
    server = moto_env.MotoServer().start()
    requests.post(server.url + "/moto-api/reset")  # moto's state is per process, not per server
    moto_env.create_resources(server.url)
    for var in ("ALERT_WINDOW_S", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "DISCORD_WEBHOOK_URL",
                "MOTORGUARD_LOCAL_BROKER_DIR"):
        monkeypatch.delenv(var, raising=False)
    moto_env.use_endpoint(server.url)
    try:
        yield server
    finally:
        server.stop()


def test_a_fault_storm_pages_every_device_once(broker, aws, monkeypatch, tmp_path):
    actions.install_sns_limits()
    atomic_dynamodb(monkeypatch)
    pages = Pages()
    engine = Engine(broker, functions=default_functions(), async_retry_delay_s=0.1).start()
    engine.invoker.duplicates = 1  # each alert handed to the Lambda twice at the same moment
    storm_at = int(time.time() * 1000) + 3000
    settings = Settings({"SIM_FAULT_STORM_AT_MS": str(storm_at), "SIM_BACKOFF_MIN_S": "0.5", "SIM_BACKOFF_MAX_S": "1"})
    counters = Counters()
    _, sessions = fleet(broker, tmp_path, DEVICES, settings, counters)
    try:
        with running(sessions, drain_s=1):
            assert waited(lambda: counters.snapshot()["faults"] == DEVICES, 20), counters.snapshot()
            assert waited(lambda: counters.snapshot()["events_acked"] >= counters.snapshot()["events_made"], 20)
            assert waited(lambda: len(pages.subjects()) >= DEVICES, 30), pages.subjects()
            time.sleep(1.5)  # the duplicate deliveries and any retry have had their chance to page again
            subjects = pages.subjects()
    finally:
        engine.stop()
    assert len(subjects) == DEVICES, "one page per device, not %d: %s" % (len(subjects), subjects)
    paged = {thing for thing in (identities.thing_name(i) for i in range(DEVICES)) for s in subjects if thing in s}
    assert len(paged) == DEVICES, "a device got no page: %s" % subjects
    sent = [s for s in slots() if s["id"].startswith("alert#sim-")]
    assert len(sent) == DEVICES and {s["state"] for s in sent} == {"sent"}
    assert local.alert_claims("sim-") == (DEVICES, DEVICES)  # what python -m sim's summary reports
    assert failure_records() == [], "no alert may end in the failure destination"
