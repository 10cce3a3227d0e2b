"""On the local IoT Core (gateway and Mosquitto) with real paho clients: a device may connect only with
its own thing name as client id, so it cannot take over another device's session; a payload over AWS
IoT's 128 KB is not delivered."""

from __future__ import annotations

import time

import pytest

from cloud.local.broker_config import MESSAGE_SIZE_LIMIT
from tests.mqtt_device import device as Device
from tests.cloud.waiting import waited

pytestmark = pytest.mark.broker


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
        assert waited(lambda: "devices/%s/cmd" % b_name in b.topics()), "B's session did not get its command"
        # A connecting as itself is accepted; a second connection as A takes A's session over, B stays.
        a = Device(mqtt_broker, device_creds(a_name), a_name)
        again = Device(mqtt_broker, device_creds(a_name), a_name)
        try:
            assert waited(lambda: a.disconnects >= 1), "a second connection of A's client id did not take over"
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
        dev.publish(topic, b"x" * (MESSAGE_SIZE_LIMIT + 1), wait=True)
        dev.publish(topic, b"y" * MESSAGE_SIZE_LIMIT, wait=True)  # at the limit: delivered
        dev.publish(topic, b"after", wait=True)
        msgs = service.wait_for(lambda m: any(t == topic and p == b"after" for t, p, *_ in m))
        sizes = [len(p) for t, p, *_ in msgs if t == topic]
        assert sizes == [MESSAGE_SIZE_LIMIT, 5], sizes
        assert dev.client.is_connected()
    finally:
        dev.close()
