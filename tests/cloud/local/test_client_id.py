"""On the local IoT Core (gateway and Mosquitto) with real paho clients: a device may connect only with
its own thing name as client id, so it cannot take over another device's session; a payload over AWS
IoT's 128 KB is not delivered."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from cloud.local.broker_config import MESSAGE_SIZE_LIMIT

pytestmark = pytest.mark.broker


class Device:
    """A paho client with a device certificate that records what it receives and every disconnect."""

    def __init__(self, broker, creds, client_id, wait_s=5.0):
        self.got = []
        self.disconnects = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context(creds["cert_pem"], creds["key_pem"]))
        c.on_connect = lambda cl, u, flags, reason, props: (not reason.is_failure) and self._connected.set()
        c.on_disconnect = self._on_disconnect
        c.on_message = lambda cl, u, m: self.got.append((m.topic, bytes(m.payload)))
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.reconnect_delay_set(0.1, 0.2)
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        self.client = c
        if not self._connected.wait(wait_s):
            c.disconnect()
            c.loop_stop()
            raise AssertionError("%s did not connect" % client_id)

    def _on_disconnect(self, *args):
        self.disconnects += 1

    def subscribe(self, *topics):
        for t in topics:
            self._subscribed.clear()
            self.client.subscribe(t, qos=1)
            assert self._subscribed.wait(5), "no SUBACK for %s" % t

    def publish(self, topic, payload, qos=1):
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(5)
        return info

    def topics(self):
        return [t for t, _ in self.got]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_a_device_claiming_another_devices_client_id_is_refused_and_cannot_take_its_session(
        mqtt_broker, device_creds, service):
    """AWS IoT Core's iot:Connect on client/${iot:Connection.Thing.ThingName}: device A's certificate
    with device B's client id gets no CONNACK, and B's session is never touched."""
    a_name, b_name = "cid-a-%d" % time.monotonic_ns(), "cid-b-%d" % time.monotonic_ns()
    b = Device(mqtt_broker, device_creds(b_name), b_name)
    try:
        b.subscribe("devices/%s/cmd" % b_name)
        with pytest.raises(AssertionError, match="did not connect"):
            Device(mqtt_broker, device_creds(a_name), b_name, wait_s=1.5)
        assert b.disconnects == 0 and b.client.is_connected(), "B was disconnected by A's connect"
        service.publish("devices/%s/cmd" % b_name, b'{"cmd":"stop","id":"for-b"}')
        assert wait(lambda: "devices/%s/cmd" % b_name in b.topics()), "B's session did not get its command"
        # A connecting as itself is accepted; a second connection as A takes A's session over, B stays.
        a = Device(mqtt_broker, device_creds(a_name), a_name)
        again = Device(mqtt_broker, device_creds(a_name), a_name)
        try:
            assert wait(lambda: a.disconnects >= 1), "a second connection of A's client id did not take over"
            assert b.disconnects == 0
        finally:
            again.close()
            a.close()
    finally:
        b.close()
    gw_log = mqtt_broker.gateway_log_path.read_text(errors="replace")
    assert "refused CONNECT from %s: no statement allows iot:Connect" % a_name in gw_log
    assert "Client %s already connected" % b_name not in mqtt_broker.log_path.read_text(errors="replace")


def test_a_payload_over_128_kb_is_not_delivered(mqtt_broker, device_creds, service):
    assert MESSAGE_SIZE_LIMIT == 131072  # AWS IoT Core's payload limit
    name = "cid-big-%d" % time.monotonic_ns()
    dev = Device(mqtt_broker, device_creds(name), name)
    topic = "devices/%s/telemetry" % name
    try:
        dev.publish(topic, b"x" * (MESSAGE_SIZE_LIMIT + 1))
        dev.publish(topic, b"y" * MESSAGE_SIZE_LIMIT)  # at the limit: delivered
        dev.publish(topic, b"after")
        msgs = service.wait_for(lambda m: any(t == topic and p == b"after" for t, p, *_ in m))
        sizes = [len(p) for t, p, *_ in msgs if t == topic]
        assert sizes == [MESSAGE_SIZE_LIMIT, 5], sizes
        assert dev.client.is_connected()
    finally:
        dev.close()
