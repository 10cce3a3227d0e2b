"""cloud.local.broker: the generated Mosquitto config and ACL (cloud/local/broker_config.py), the
process lifecycle, the CLI, and provisioning's LocalBroker driving the same broker through that CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import contract
from cloud.local import broker as broker_mod
from cloud.local import broker_config
from cloud.local.broker import BrokerError, LocalBroker, free_port
from cloud.local.broker_config import acl_text
from contract import exit_codes
from provisioning import broker_home

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A broker with its PKI, not started."""
    return LocalBroker.with_new_pki(tmp_path_factory.mktemp("cfg"), 18883)


def test_config_hides_mosquitto_behind_the_gateway(made):
    conf = made.config_text()
    lines = set(conf.splitlines())
    for needed in (
        "persistence true",
        f"listener 0 {made.socket_path}",  # a unix socket only: every client comes through the gateway
        "use_username_as_clientid true",  # client id = certificate name (tests/cloud/local/test_client_id.py)
        "message_size_limit 131072",  # AWS IoT Core's 128 KB payload limit
        f"max_queued_messages {broker_config.MAX_QUEUED_MESSAGES}",
        f"max_inflight_messages {broker_config.MAX_INFLIGHT_MESSAGES}",
        f"acl_file {made.acl_path}",
    ):
        assert needed in lines, needed
    assert not [ln for ln in lines if ln.startswith("listener ") and ln != f"listener 0 {made.socket_path}"]
    assert len(str(made.socket_path)) < 100
    assert broker_config.MAX_QUEUED_MESSAGES >= 100000  # the service must not lose a burst (a slow subscriber lost 976 of 2,000 QoS 1 messages at the default 1,000)


def test_acl_is_least_privilege():
    acl = [ln for ln in acl_text().splitlines() if ln and not ln.startswith("#")]
    assert acl == [
        "pattern write devices/%u/telemetry",
        "pattern write devices/%u/events",
        "pattern write devices/%u/status",
        "pattern write devices/%u/ack",
        "pattern read devices/%u/cmd",
        "user motorguard-service",  # the observer: tests, tools, the HIL rig
        "topic read devices/#",
        "topic read $aws/rules/#",
        "topic write devices/+/cmd",
        "topic read $aws/events/presence/#",
        "user motorguard-rules-engine",  # every rule's topics; republish actions
        "topic read devices/#",
        "topic read $aws/rules/#",
        "topic write devices/+/cmd",
        "user motorguard-api",  # the API's commands
        "topic write devices/+/cmd",
        "user motorguard-provision-check",  # sees a device's telemetry, probes one device that must not exist
        "topic read devices/+/telemetry",
        "topic write devices/motorguard-check-other/cmd",
        "topic read $aws/events/presence/#",  # tells a refusal (AUTH_ERROR) from a takeover
        "user motorguard-provision-rotation",  # waits for a new boot's status
        "topic read devices/+/status",
        "topic read $aws/events/presence/#",
        "user motorguard-gateway",  # publishes the lifecycle events
        "topic write $aws/events/presence/#",
    ]
    assert contract.SERVICE_IDENTITIES == ("motorguard-service", "motorguard-rules-engine", "motorguard-api",
                                           "motorguard-provision-check", "motorguard-provision-rotation")
    assert tuple(broker_config.SERVICE_GRANTS) == contract.SERVICE_IDENTITIES + (contract.GATEWAY_IDENTITY,)
    assert set(contract.RESERVED_THING_NAMES) == set(contract.SERVICE_IDENTITIES) | {"motorguard-check-other",
                                                                                      "motorguard-gateway"}


def test_acl_mirrors_the_aws_policy():
    """A device may write and read on the broker exactly the topics the AWS policy lets it publish to
    and receive from (%u there, the policy variable for the thing here)."""
    from provisioning import policy

    statements = {s["Sid"]: s for s in policy.document()["Statement"]}

    def as_acl(access, resource):
        return "pattern %s %s" % (access, resource.split(":topic/", 1)[1].replace(policy.THING, "%u"))

    acl = acl_text().splitlines()
    assert [ln for ln in acl if ln.startswith("pattern write ")] == [
        as_acl("write", r) for r in statements["PublishOwnTopics"]["Resource"]]
    assert [ln for ln in acl if ln.startswith("pattern read ")] == [
        as_acl("read", statements["ReceiveOwnCommands"]["Resource"])]


def test_missing_mosquitto_names_the_install_command(monkeypatch, made):
    monkeypatch.setattr(broker_mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(broker_mod.os, "access", lambda path, how: False)
    with pytest.raises(BrokerError, match="sudo apt-get install -y mosquitto") as e:
        made.start()
    assert e.value.code == exit_codes.BROKER_MISSING


def test_start_failure_reports_the_log_tail(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        b = LocalBroker.with_new_pki(tmp_path, busy.getsockname()[1])
        with pytest.raises(BrokerError, match="(?is)gateway exited.*address already in use"):
            b.start(timeout=5)
    assert not b.running() and b.pid() is None


def test_context_manager_starts_checks_and_stops(tmp_path):
    b = LocalBroker.with_new_pki(tmp_path, free_port())
    with b:
        st = b.status()
        assert st["running"] and st["tls_ok"]
        pid = st["pid"]
        b.reload()  # SIGHUP, waits for Mosquitto to log the reload
        assert b.status()["tls_ok"]
        with pytest.raises(BrokerError, match="already running"):
            b.start()
    assert not b.running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(BrokerError):
        b.reload()


def test_key_files_stay_private(made):
    keys = [made.service_credentials(identity)[1] for identity in contract.SERVICE_IDENTITIES]
    for p in [made.ca_key, made.server_key] + keys:
        assert oct(p.stat().st_mode & 0o777) == "0o600", p


def test_each_service_client_has_an_identity_of_its_own(made, tmp_path):
    """Client ids are certificate names, so one identity's connections share one id: the engine's
    persistent session must not be taken over by another service client, nor the API's publisher,
    provision check and rotation by each other."""
    from cryptography.x509.oid import NameOID

    from provisioning import pki

    names = {}
    for identity in contract.SERVICE_IDENTITIES:
        cert, _ = made.service_credentials(identity)
        names[identity] = pki.load_cert(cert).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert names == {i: i for i in contract.SERVICE_IDENTITIES}
    with pytest.raises(BrokerError, match="not a service identity"):
        made.service_credentials("motor-1")
    for reserved in contract.RESERVED_THING_NAMES:  # a device by that name would carry its grants
        with pytest.raises(BrokerError, match="service identity's name"):
            made.issue_device(reserved)
    # A state dir from before the engine had its own certificate gets one from the CA.
    old = LocalBroker.with_new_pki(tmp_path / "old", 18884)
    engine_cert, _ = old.service_credentials(contract.ENGINE_IDENTITY)
    engine_cert.unlink()
    again = LocalBroker.from_state_dir(tmp_path / "old").service_credentials(contract.ENGINE_IDENTITY)[0]
    assert again.exists() and pki.load_cert(again).issuer == pki.load_cert(old.ca_cert).subject


def cli(*args, state):
    return subprocess.run(
        [sys.executable, "-m", "cloud.local.broker", *args, "--state-dir", str(state)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )


def test_cli_start_status_config_stop(tmp_path):
    state = tmp_path / "b"
    port = free_port()
    try:
        r = cli("start", "--port", str(port), state=state)
        assert r.returncode == 0, r.stderr
        assert f"mqtts://127.0.0.1:{port}" in r.stdout
        r = cli("status", state=state)
        assert r.returncode == 0 and "tls_ok: True" in r.stdout, r.stdout + r.stderr
        r = cli("status", "--json", state=state)
        assert r.returncode == 0 and json.loads(r.stdout)["port"] == port, r.stdout + r.stderr
        r = cli("config", state=state)
        assert r.returncode == 0 and "listener 0 " in r.stdout
        assert "PRIVATE KEY" not in r.stdout
        r = cli("reload", state=state)
        assert r.returncode == 0 and "reloaded" in r.stdout, r.stdout + r.stderr
        r = cli("update-acl", state=state)
        assert r.returncode == 0 and r.stdout.strip() == "unchanged", r.stdout + r.stderr
    finally:
        r = cli("stop", state=state)
    assert r.returncode == 0 and "stopped" in r.stdout, r.stdout + r.stderr
    r = cli("status", state=state)
    assert r.returncode == exit_codes.SERVICE_ERROR and "running: False" in r.stdout
    r = cli("reload", state=state)
    assert r.returncode == exit_codes.SERVICE_ERROR and "not running" in r.stderr


def test_cli_help_names_every_command_and_its_exit_codes(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cloud.local.broker", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0
    for command in broker_mod.COMMANDS:
        assert command in r.stdout, command
    assert exit_codes.epilog(broker_mod.CODES) in r.stdout
    r = cli("status", state=tmp_path / "nothing-here")
    assert r.returncode == exit_codes.NOT_FOUND and "no PKI" in r.stderr
    r = cli("no-such-command", state=tmp_path)
    assert r.returncode == exit_codes.BAD_INPUT


def test_provisionings_broker_drives_the_same_broker_through_the_cli(tmp_path):
    """provisioning/broker_home.py's LocalBroker (what `provision` holds) imports nothing of this
    module: its process operations run `python -m cloud.local.broker`, on the same state dir."""
    b = broker_home.LocalBroker.with_new_pki(tmp_path / "home" / "broker", free_port())
    assert b.write_config() == b.conf_path and (b.state_dir / "port").read_text() == str(b.port)
    assert not b.running() and b.update_acl() is False
    here = LocalBroker.from_state_dir(b.state_dir)  # the broker itself, on the same state dir
    try:
        b.start()
        assert b.running() and b.pid() == here.pid()
        st = b.status()
        assert st["running"] and st["tls_ok"] and st["port"] == b.port
        b.reload()
        b.acl_path.write_text(acl_text({contract.SERVICE_IDENTITY: broker_config.SERVICE_GRANTS[
            contract.SERVICE_IDENTITY]}))
        assert b.update_acl() is True and b.acl_path.read_text() == acl_text()
        with pytest.raises(broker_home.BrokerError, match="already running") as e:
            b.start()
        assert e.value.code == exit_codes.SERVICE_ERROR
    finally:
        b.stop()
    assert not here.running() and not b.running()
    with pytest.raises(broker_home.BrokerError, match="not running"):
        b.reload()
