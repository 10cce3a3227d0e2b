"""The local IoT Core refuses what AWS IoT Core refuses, the way it does (cloud/local/gateway.py): real
paho clients with the devices' own certificates against the gateway and Mosquitto, the device policy
evaluated from the very document provisioning attaches in AWS.

What AWS IoT Core does, from its developer guide: a client whose publish or subscribe the policy denies
is disconnected (the lifecycle event's disconnectReason is AUTH_ERROR); a retained publish needs
iot:RetainPublish; a CONNECT the policy denies is closed without a CONNACK; a second connection with a
client id ends the first (DUPLICATE_CLIENTID); only QoS 0 and 1 exist."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest

import contract
from provisioning import policy
from tests import mqtt_device
from tests.cloud.waiting import waited

pytestmark = pytest.mark.broker


def Device(broker, creds, thing, will=True, wait_s=5.0):
    """A device with the firmware's retained Will unless told otherwise."""
    return mqtt_device.device(broker, creds, thing, will=will, wait_s=wait_s)


def connacks(broker, creds, thing, clean_session=True, will=None, wait_s=1.0) -> list:
    """The CONNACKs a raw paho client gets within wait_s for one CONNECT (will: topic, payload, qos,
    retain); [] when the gateway closed it without one."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=thing, protocol=mqtt.MQTTv311,
                    clean_session=clean_session)
    c.tls_set_context(broker.client_context(creds["cert_pem"], creds["key_pem"]))
    if will:
        c.will_set(*will)
    got = []
    c.on_connect = lambda *a: got.append(a)
    c.connect(broker.host, broker.port, keepalive=30)
    c.loop_start()
    try:
        time.sleep(wait_s)
        return got
    finally:
        c.disconnect()
        c.loop_stop()


def name(prefix):
    return "%s-%d" % (prefix, time.monotonic_ns())


def lifecycle(service, thing, event="disconnected"):
    return [json.loads(p) for t, p, *_ in service.messages if t == contract.lifecycle_topic(event, thing)]


@pytest.fixture
def watcher(service):
    """The service observer (one client per identity: a second would take the first over), also
    subscribed to the lifecycle events."""
    done = threading.Event()
    service.client.on_subscribe = lambda *a: done.set()
    service.client.subscribe(contract.LIFECYCLE_PREFIX + "#", qos=1)
    assert done.wait(5), "no SUBACK for the lifecycle events"
    return service


def test_the_board_s_retained_status_and_retained_will_are_accepted(mqtt_broker, device_creds, service, watcher):
    thing = name("gw-ok")
    d = Device(mqtt_broker, device_creds(thing), thing)
    status = contract.topic(thing, contract.STATUS)
    try:
        d.publish(status, b'{"online": true}', retain=True).wait_for_publish(5)
        d.publish(contract.topic(thing, contract.TELEMETRY), b"{}").wait_for_publish(5)
        assert service.wait_for(lambda m: any(t == status for t, *_ in m))
        time.sleep(0.3)
        assert d.client.is_connected() and not d.disconnected.is_set()
        assert [e["eventType"] for e in lifecycle(watcher, thing, "connected")] == ["connected"]
        d.client._sock.close()  # the link drops without a DISCONNECT: the retained Will is published
        assert service.wait_for(lambda m: any(t == status and p == mqtt_device.STATUS_OFFLINE for t, p, *_ in m))
        assert waited(lambda: [e["disconnectReason"] for e in lifecycle(watcher, thing)] == ["CONNECTION_LOST"])
    finally:
        d.close()


@pytest.mark.parametrize("what", ["another device's topic", "retained telemetry", "its own command topic", "qos 2"])
def test_a_publish_the_policy_denies_closes_the_connection(mqtt_broker, device_creds, service, watcher, what):
    thing, other = name("gw-pub"), name("gw-victim")
    bystander = Device(mqtt_broker, device_creds(other), other)
    d = Device(mqtt_broker, device_creds(thing), thing)
    topic, retain, qos = {
        "another device's topic": (contract.topic(other, contract.TELEMETRY), False, 1),
        "retained telemetry": (contract.topic(thing, contract.TELEMETRY), True, 1),
        "its own command topic": (contract.topic(thing, contract.CMD), False, 1),
        "qos 2": (contract.topic(thing, contract.TELEMETRY), False, 2),
    }[what]
    try:
        d.client.reconnect_delay_set(30, 60)
        d.publish(topic, b'{"forged": true}', retain=retain, qos=qos)
        assert d.disconnected.wait(5), "the connection stayed up after a denied publish"
        time.sleep(0.3)
        assert not [m for m in service.messages if b"forged" in m[1]], "a denied publish was delivered"
        reasons = [e["disconnectReason"] for e in lifecycle(watcher, thing)]
        assert reasons == (["CLIENT_ERROR"] if qos == 2 else ["AUTH_ERROR"]), reasons
        # Its neighbour is untouched, and the denied device's Will was published.
        assert bystander.client.is_connected() and not bystander.disconnected.is_set()
        bystander.publish(contract.topic(other, contract.EVENTS), b'{"fine": 1}').wait_for_publish(5)
        assert service.wait_for(lambda m: any(t == contract.topic(other, contract.EVENTS) for t, *_ in m))
        assert service.wait_for(lambda m: any(t == contract.topic(thing, contract.STATUS) and p == mqtt_device.STATUS_OFFLINE
                                              for t, p, *_ in m))
    finally:
        d.close()
        bystander.close()


@pytest.mark.parametrize("topic_filter", ["devices/{other}/cmd", "devices/+/cmd", "devices/#", "devices/{me}/telemetry"])
def test_a_subscription_outside_the_policy_closes_the_connection(mqtt_broker, device_creds, watcher, topic_filter):
    thing, other = name("gw-sub"), name("gw-sub-victim")
    d = Device(mqtt_broker, device_creds(thing), thing)
    try:
        d.client.reconnect_delay_set(30, 60)
        d.client.subscribe(contract.topic(thing, contract.CMD), qos=1)  # its own: fine
        time.sleep(0.3)
        assert not d.disconnected.is_set()
        d.client.subscribe(topic_filter.format(other=other, me=thing), qos=1)
        assert d.disconnected.wait(5), "the connection stayed up after a denied subscribe"
        assert waited(lambda: [e["disconnectReason"] for e in lifecycle(watcher, thing)] == ["AUTH_ERROR"])
    finally:
        d.close()


def test_a_connect_the_policy_denies_gets_no_connack(mqtt_broker, device_creds):
    thing = name("gw-conn")
    creds = device_creds(thing)
    with pytest.raises(AssertionError, match="did not connect"):
        Device(mqtt_broker, creds, "someone-else", wait_s=1.5)
    assert connacks(mqtt_broker, creds, thing, clean_session=False) == [], \
        "a persistent session (iot:ConnectAttributes PersistentConnect) was accepted"
    log = mqtt_broker.gateway_log_path.read_text()
    assert "refused CONNECT from %s: no statement allows iot:Connect" % thing in log


def test_a_will_outside_the_policy_is_refused_at_connect(mqtt_broker, device_creds):
    thing = name("gw-will")
    creds = device_creds(thing)
    retained_telemetry_will = (contract.topic(thing, contract.TELEMETRY), b"{}", 1, True)
    assert connacks(mqtt_broker, creds, thing, will=retained_telemetry_will) == []
    assert "iot:RetainPublish" in mqtt_broker.gateway_log_path.read_text()


def test_a_second_connection_takes_the_session_over_as_duplicate_clientid(mqtt_broker, device_creds, watcher):
    thing = name("gw-dup")
    first = Device(mqtt_broker, device_creds(thing), thing)
    first.client.reconnect_delay_set(30, 60)
    second = Device(mqtt_broker, device_creds(thing), thing)
    try:
        assert first.disconnected.wait(5)
        assert waited(lambda: [e["disconnectReason"] for e in lifecycle(watcher, thing)] == ["DUPLICATE_CLIENTID"])
        assert second.client.is_connected()
    finally:
        first.close()
        second.close()
    assert waited(lambda: lifecycle(watcher, thing)[-1]["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT")


def raw_tls(broker, creds):
    ctx = broker.client_context(creds["cert_pem"], creds["key_pem"])
    s = ctx.wrap_socket(socket.create_connection((broker.host, broker.port), timeout=5), server_hostname="localhost")
    return s


def closed(s, timeout=5.0) -> bool:
    """True once the gateway has closed the connection (whatever it sent before, a CONNACK say)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            if s.recv(4096) == b"":
                return True
    except (ConnectionError, ssl.SSLError, OSError) as e:
        return not isinstance(e, socket.timeout)
    return False


@pytest.mark.parametrize("first_bytes", [
    b"\x30\x05\x00\x01ahi",  # a PUBLISH before any CONNECT
    b"\x10\xff\xff\xff\xff\x7f",  # a remaining length of five bytes
    b"GET / HTTP/1.1\r\n\r\n",  # not MQTT
    b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x09",  # a CONNECT cut inside its client id
])
def test_bytes_that_are_not_a_connect_are_closed_and_neighbours_keep_going(mqtt_broker, device_creds, service,
                                                                            first_bytes):
    thing, other = name("gw-junk"), name("gw-neighbour")
    neighbour = Device(mqtt_broker, device_creds(other), other)
    s = raw_tls(mqtt_broker, device_creds(thing))
    try:
        s.sendall(first_bytes)
        assert closed(s), "the gateway kept a connection that sent %r" % first_bytes
        neighbour.publish(contract.topic(other, contract.EVENTS), b'{"still": 1}').wait_for_publish(5)
        assert service.wait_for(lambda m: any(t == contract.topic(other, contract.EVENTS) for t, *_ in m))
    finally:
        s.close()
        neighbour.close()


@contextlib.contextmanager
def policy_without(broker, action):
    """The broker's gateway enforces the device policy minus the statements granting `action`, until the end."""
    original = broker.policy_path.read_text()
    doc = policy.document()
    doc["Statement"] = [s for s in doc["Statement"] if s["Action"] != action]
    broker.policy_path.write_text(json.dumps(doc))
    broker.reload()
    try:
        yield
    finally:
        broker.policy_path.write_text(original)
        broker.reload()


def test_the_gateway_enforces_the_policy_document_it_is_given_and_reloads_it(mqtt_broker, device_creds, service):
    """The same document AWS gets decides; a policy without iot:RetainPublish closes the board's retained
    status publish (what the fleet's first policy would have done in AWS), and the ACL follows too."""
    thing = name("gw-doc")
    with policy_without(mqtt_broker, "iot:RetainPublish"):
        d = Device(mqtt_broker, device_creds(thing), thing, will=False)
        d.client.reconnect_delay_set(30, 60)
        d.publish(contract.topic(thing, contract.STATUS), b'{"online": true}', retain=True)
        assert d.disconnected.wait(5), "a retained publish without iot:RetainPublish was accepted"
        d.close()
    d = Device(mqtt_broker, device_creds(thing), thing)
    try:
        d.publish(contract.topic(thing, contract.STATUS), b'{"online": 2}', retain=True).wait_for_publish(5)
        time.sleep(0.3)
        assert not d.disconnected.is_set()
    finally:
        d.close()


def test_a_message_the_policy_does_not_let_the_device_receive_is_not_delivered(mqtt_broker, device_creds, service):
    thing = name("gw-recv")
    with policy_without(mqtt_broker, "iot:Receive"):
        d = Device(mqtt_broker, device_creds(thing), thing)
        d.client.subscribe(contract.topic(thing, contract.CMD), qos=1)
        time.sleep(0.3)
        for i in range(3):  # QoS 1: the gateway acknowledges on the device's behalf, so nothing piles up
            service.publish(contract.topic(thing, contract.CMD), b'{"n": %d}' % i)
        time.sleep(0.5)
        assert d.got == [] and d.client.is_connected()
        d.close()


def connect_bytes(client_id: str) -> bytes:
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def publish_bytes(topic: str, payload: bytes, pid: int = 1) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + pid.to_bytes(2, "big") + payload
    return bytes([0x32, len(body)]) + body


def test_packets_sent_in_one_write_with_the_connect_are_each_judged(mqtt_broker, device_creds, service):
    """A client need not wait for the CONNACK: a forbidden PUBLISH riding in the same TLS record as its
    CONNECT is judged like any other, and the allowed one before it still goes through."""
    thing, other = name("gw-pipe"), name("gw-pipe-victim")
    s = raw_tls(mqtt_broker, device_creds(thing))
    try:
        s.sendall(connect_bytes(thing) + publish_bytes(contract.topic(thing, contract.EVENTS), b'{"first":1}', 1)
                  + publish_bytes(contract.topic(other, contract.EVENTS), b'{"forged":1}', 2))
        assert closed(s), "a forbidden publish pipelined behind the CONNECT was let through"
        assert service.wait_for(lambda m: any(t == contract.topic(thing, contract.EVENTS) for t, *_ in m))
        time.sleep(0.3)
        assert not service.on(contract.topic(other, contract.EVENTS))
    finally:
        s.close()
