"""Fixtures shared by the tests of the local broker (tests/cloud/local) and of the firmware's MQTT
client on it (tests/firmware/mqtt).

mqtt_broker       (session) a running cloud.local.broker.LocalBroker on a free port with a fresh
                  test PKI (CA, server cert, service identities, empty CRL); stopped at the end.
broker            (function) the same, a test's own: for the tests that stop and restart it.
device_creds      (function) issue(thing, kind="ec") -> dict of str paths (cert_der, key_der,
                  cert_pem, key_pem, ca_der, ca_pem) signed by mqtt_broker's CA.
service           (function) a paho-mqtt client connected as the service identity and subscribed
                  to devices/#: .messages, .wait_for(pred, timeout), .publish(topic, payload, qos).
service_observer  (function) service_observer(topic) -> one more such client, subscribed to topic
                  (the caller closes it).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

# This file puts tests/ on sys.path (pytest's prepend import mode), where tests/cloud, tests/vesp32,
# ... would make namespace packages of cloud, vesp32, ...: the repository root goes first.
ROOT = Path(__file__).resolve().parents[1]
if sys.path[0] != str(ROOT):
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory):
    from cloud.local.broker import LocalBroker, free_port

    broker = LocalBroker.with_new_pki(tmp_path_factory.mktemp("broker"), free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker(tmp_path):
    from cloud.local.broker import LocalBroker, free_port

    b = LocalBroker.with_new_pki(tmp_path / "broker", free_port())
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def device_creds(mqtt_broker):
    made: dict = {}

    def issue(thing: str, kind: str = "ec") -> dict:
        if thing not in made:
            made[thing] = {k: str(v) for k, v in mqtt_broker.issue_device(thing, kind).items()}
        return made[thing]

    return issue


class ServiceObserver:
    """The cloud side: a paho client with the service identity."""

    def __init__(self, broker, topic: str = "devices/#"):
        self.messages: list = []
        self._cv = threading.Condition()
        self.client = broker.service_client(f"svc-{os.getpid()}-{time.monotonic_ns()}", topics=[(topic, 1)],
                                            on_message=self._on_message, timeout_s=5)

    def _on_message(self, client, userdata, msg):
        with self._cv:
            self.messages.append((msg.topic, msg.payload, msg.retain, msg.qos))
            self._cv.notify_all()

    def wait_for(self, pred, timeout: float = 5.0) -> list:
        """Waits until pred(messages) is true; returns the messages (asserting is the caller's job)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            return list(self.messages)

    def on(self, topic: str) -> list:
        with self._cv:
            return [m for m in self.messages if m[0] == topic]

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)
        return info

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def service(mqtt_broker):
    obs = ServiceObserver(mqtt_broker)
    yield obs
    obs.close()


@pytest.fixture
def service_observer(mqtt_broker):
    return lambda topic: ServiceObserver(mqtt_broker, topic)


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """No AWS credentials anywhere boto3 looks: environment, files, profile, instance metadata."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
