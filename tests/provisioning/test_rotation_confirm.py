"""`provision rotate` confirms a new certificate only when the device stayed connected on it, not on its
"online" alone: against the local IoT Core (the gateway enforces the policy and publishes lifecycle
events), a board that comes online on the new certificate and is then disconnected for a refused
publish, or drops its connection, is not confirmed; one that stays is. Both ways of confirming:
--wait-online (the status topic) and --port (the console's online line; the board's tools faked)."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest

import contract
from provisioning import bundle, errors, lifecycle, pki, rotation
from provisioning.errors import ProvisionError
from provisioning.registry import Registry

pytestmark = pytest.mark.broker

THING = "rot-cf"


class Board:
    """What the firmware does on a connect, with the bundle's files: a retained offline Will, then a
    retained online status from its boot (paho; it reconnects by itself, as the board would)."""

    def __init__(self, broker, bundle_dir, boot: str):
        self.topic = contract.topic(THING, contract.STATUS)
        self.boot = boot
        self.connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=THING, protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context(bundle_dir / "device.crt.pem", bundle_dir / "device.key.pem"))
        c.will_set(self.topic, self.status(False), qos=1, retain=True)
        c.on_connect = lambda *a: self.connected.set()
        c.reconnect_delay_set(min_delay=0.3, max_delay=0.3)
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        assert self.connected.wait(5)
        c.publish(self.topic, self.status(True), qos=1, retain=True).wait_for_publish(5)
        self.client = c

    def status(self, online: bool) -> str:
        return json.dumps({"v": 1, "device": THING, "online": online, "boot": self.boot, "fw": "test"})

    def publish(self, topic: str):
        self.client.publish(topic, b"{}", qos=1)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(rotation, "SETTLE_S", 1.5)


@pytest.fixture
def provisioned(local_broker, home, cli, quick):
    assert cli("device", THING).exit_code == 0
    return home / "devices" / THING


def rotate_with_board(home, local_broker, bundle_dir, after_online, boards):
    """rotate --wait-online, with a board that boots on the installed files, comes online, then does
    after_online(board)."""
    def boot_on_new_files():
        board = Board(local_broker, bundle_dir, boot="b%07d" % len(boards))
        boards.append(board)
        after_online(board)

    return rotation.rotate(home, THING, wait_online=10, on_installed=boot_on_new_files)


def test_a_board_that_stays_connected_is_confirmed(provisioned, local_broker, home):
    boards = []
    old_serial = Registry(home).get(THING)["serial"]
    try:
        r = rotate_with_board(home, local_broker, provisioned, lambda board: None, boards)
    finally:
        for b in boards:
            b.close()
    assert r["committed"] is True
    assert "came online from boot b0000000" in r["confirmed"] and "stayed connected for 1.5 s" in r["confirmed"]
    assert old_serial in pki.crl_serials(local_broker.crl)


def test_a_board_disconnected_for_a_refused_publish_is_not_confirmed(provisioned, local_broker, home):
    # What AWS would do to a board whose policy lacks a permission it uses: online, then closed (AUTH_ERROR).
    boards = []
    old_serial = Registry(home).get(THING)["serial"]
    try:
        with pytest.raises(ProvisionError) as e:
            rotate_with_board(home, local_broker, provisioned,
                              lambda board: board.publish(contract.topic("someone-else", contract.TELEMETRY)), boards)
    finally:
        for b in boards:
            b.close()
    assert e.value.code == errors.CHECK_FAILED
    assert "came online on the new certificate but is not confirmed" in e.value.message
    assert "AUTH_ERROR" in e.value.message and "provision policy update --dry-run" in e.value.hint
    entry = Registry(home).get(THING)
    assert entry["serial"] == old_serial and "pending" in entry  # nothing committed, nothing revoked
    assert old_serial not in pki.crl_serials(local_broker.crl)


def test_a_board_that_drops_off_after_online_is_not_confirmed(provisioned, local_broker, home):
    def drop(board):
        board.client.reconnect_delay_set(min_delay=30, max_delay=30)  # it stays away this time
        board.client.socket().close()  # the link goes, no DISCONNECT: the broker sees it lost

    boards = []
    try:
        with pytest.raises(ProvisionError) as e:
            rotate_with_board(home, local_broker, provisioned, drop, boards)
    finally:
        for b in boards:
            b.close()
    assert e.value.code == errors.CHECK_FAILED and "is not confirmed" in e.value.message
    assert "its connection ended" in e.value.message and "CONNECTION_LOST" in e.value.message
    assert "pending" in Registry(home).get(THING)


def test_with_port_the_console_line_alone_does_not_confirm(provisioned, local_broker, home, monkeypatch):
    """--port: the board's tools faked (no board here): push installs the files, and the board comes
    online on them, says so on its console, and is closed for a refused publish right after."""
    boards = []

    def push(src, port):  # the board tools: files installed, the board reset, `MG NET online` seen
        bundle.install(src, provisioned)
        board = Board(local_broker, provisioned, boot="c0ffee00")
        boards.append(board)
        board.publish(contract.topic("someone-else", contract.EVENTS))
        return {"online": True}  # `MG NET online` was printed before the broker closed it

    monkeypatch.setattr(bundle, "mpremote_cmd", lambda: "mpremote")
    monkeypatch.setattr(bundle, "check_port", lambda port: None)
    monkeypatch.setattr(bundle, "push", push)
    try:
        with pytest.raises(ProvisionError) as e:
            rotation.rotate(home, THING, port="/dev/ttyFAKE0")
        assert "AUTH_ERROR" in e.value.message and e.value.code == errors.CHECK_FAILED

        # The same board, well-behaved, is confirmed on that same staged certificate.
        for b in boards:
            b.close()
        monkeypatch.setattr(bundle, "push", lambda src, port: bundle.install(src, provisioned) and {"online": bool(
            boards.append(Board(local_broker, provisioned, boot="c0ffee01")) or True)})
        staged = Registry(home).get(THING)["pending"]["serial"]
        r = rotation.rotate(home, THING, port="/dev/ttyFAKE0")
        assert r["committed"] is True and "came online on /dev/ttyFAKE0" in r["confirmed"]
        assert "stayed connected" in r["confirmed"] and Registry(home).get(THING)["serial"] == staged
    finally:
        for b in boards:
            b.close()


def test_settle_in_aws_needs_a_lifecycle_event(monkeypatch):
    """The AWS listener's view: no event is no confirmation; an event of a session that stayed is."""
    monkeypatch.setattr(rotation, "SETTLE_S", 0.1)

    class Listener:  # what lifecycle.AwsListener offers rotation: its events
        events = lifecycle.Events(THING)

    t = time.monotonic()
    ok, detail = rotation.settle(Listener(), t - 1, t)
    assert ok is False and "cannot be told that it stayed connected" in detail
    Listener.events.add(lifecycle.topics(THING)[0], json.dumps({
        "clientId": THING, "timestamp": 1, "eventType": "connected", "sessionIdentifier": "s-new",
        "principalIdentifier": "p", "versionNumber": 0}).encode())
    ok, detail = rotation.settle(Listener(), t - 1, time.monotonic())
    assert ok is True and "stayed connected" in detail
