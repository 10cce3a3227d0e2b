"""The local IoT Core's service clients on the real Mosquitto: each has an identity of its own, so
none takes another's connection over (the broker makes every client id the certificate's name),
each may do only what it needs, and no device may be provisioned under a service's name."""

from __future__ import annotations

import json
import time

import pytest

import contract
from cloud.local.broker_config import SERVICE_GRANTS, acl_text
from provisioning import errors, identity, local
from provisioning.errors import ProvisionError

from tests.mqtt_device import Client

THING = "svc-dev-1"


@pytest.fixture
def device(local_broker, home):
    local.provision_device(home, THING)
    d = home / "devices" / THING
    c = Client(local_broker, THING, d / "device.crt.pem", d / "device.key.pem")
    assert c.connected
    c.subscribe("devices/%s/cmd" % THING)
    yield c
    c.close()


def as_service(broker, name, client_id="whatever-it-asks-for"):
    """A paho client with a service identity's certificate (the broker renames it after the CN)."""
    cert, key = broker.service_credentials(name)
    c = Client(broker, client_id, cert, key)
    assert c.connected, name
    return c


def settle(seconds=0.5):
    time.sleep(seconds)  # what a takeover or a delivery would have done by now


def test_the_service_clients_run_together_and_none_takes_anothers_connection(local_broker, device):
    from cloud.local import publish
    from provisioning import check, rotation

    observer = as_service(local_broker, contract.SERVICE_IDENTITY)
    engine = as_service(local_broker, contract.ENGINE_IDENTITY)
    observer.subscribe("devices/#")
    checker = check._Observer(local_broker, THING)
    watcher = rotation.StatusWatcher(local_broker, THING)
    api = publish._client(str(local_broker.state_dir))
    try:
        publish.publish(str(local_broker.state_dir), "devices/%s/cmd" % THING, json.dumps({"cmd": "stop"}))
        device.publish("devices/%s/telemetry" % THING, b'{"t": 1}', wait=True)
        device.publish("devices/%s/status" % THING, b'{"online": true, "boot": "b1"}', wait=True)
        assert device.wait_for("devices/%s/cmd" % THING), "the API's command did not arrive"
        assert observer.wait_for("devices/%s/status" % THING)
        settle()
        assert [t for t, _ in checker.got] == ["devices/%s/telemetry" % THING], "the check reads telemetry only"
        assert [p["boot"] for _, p in watcher.messages] == ["b1"], "the rotation reads status only"
        clients = {"observer": observer.client, "engine": engine.client, "check": checker.client,
                   "rotation": watcher.client, "api": api, "device": device.client}
        assert [name for name, c in clients.items() if not c.is_connected()] == []
        log = local_broker.log_path.read_text(errors="replace")
        assert "already connected, closing old connection" not in log, "one client took another's over"
        for name in contract.SERVICE_IDENTITIES:
            assert "as %s (" % name in log, "%s connected under its own name" % name
    finally:
        for c in (observer, engine):
            c.close()
        checker.close()
        watcher.close()
        publish._clients.pop(str(local_broker.state_dir), None)
        api.disconnect()
        api.loop_stop()


@pytest.mark.parametrize("name, reads, writes_cmd", [
    (contract.API_IDENTITY, False, True),
    (contract.CHECK_IDENTITY, False, False),  # its only command topic is the probe device's
    (contract.ROTATION_IDENTITY, False, False),
])
def test_each_service_identity_may_do_only_what_it_needs(local_broker, device, name, reads, writes_cmd):
    svc = as_service(local_broker, name)
    try:
        svc.subscribe("devices/#", "$aws/rules/#")  # Mosquitto grants it; the ACL decides delivery
        device.publish("devices/%s/events" % THING, b'{"e": 1}', wait=True)
        svc.publish("devices/%s/cmd" % THING, b'{"cmd": "stop", "from": "%s"}' % name.encode(), wait=True)
        settle()
        assert ("devices/%s/events" % THING in svc.topics()) is reads
        assert ("devices/%s/cmd" % THING in device.topics()) is writes_cmd
    finally:
        svc.close()


def test_a_running_broker_with_an_acl_of_before_learns_the_new_grants(local_broker, home, device):
    old = {n: SERVICE_GRANTS[n] for n in (contract.SERVICE_IDENTITY, contract.ENGINE_IDENTITY)}
    local_broker.acl_path.write_text(acl_text(old))
    _mosquitto_rereads_its_files(local_broker)
    api = as_service(local_broker, contract.API_IDENTITY)
    try:
        api.publish("devices/%s/cmd" % THING, b'{"cmd": "stop"}', wait=True)
        settle()
        assert device.topics() == [], "no grant yet"
        local.broker(home)  # what every provision command goes through
        assert local_broker.acl_path.read_text() == acl_text() and local_broker.update_acl() is False
        api.publish("devices/%s/cmd" % THING, b'{"cmd": "stop"}', wait=True)
        assert device.wait_for("devices/%s/cmd" % THING)
    finally:
        api.close()


def _mosquitto_rereads_its_files(broker):
    """SIGHUP to Mosquitto alone: a reload through the broker's command line would write the current
    ACL first, and this test needs the old one in force."""
    import os
    import signal

    log = broker.log_path
    before = log.read_text(errors="replace").count("Reloading config.")
    os.kill(broker.pid(), signal.SIGHUP)
    deadline = time.monotonic() + 5
    while log.read_text(errors="replace").count("Reloading config.") <= before:
        assert time.monotonic() < deadline, "Mosquitto did not reload"
        time.sleep(0.02)


@pytest.mark.parametrize("name", contract.RESERVED_THING_NAMES)
def test_no_device_may_take_a_service_identitys_name(home, cli, name):
    with pytest.raises(ProvisionError, match="reserved: it is a service identity") as e:
        identity.check_thing(name)
    assert e.value.code == errors.BAD_INPUT
    r = cli("device", name)
    assert r.exit_code == errors.BAD_INPUT and "reserved" in r.output and "Traceback" not in r.output, r.output
    assert not (home / "devices" / name).exists()
    assert identity.check_thing(name + "-2") == name + "-2", "only the exact names are reserved"
