"""One MQTT client for the tests that play a device (or a bare service identity) against the local
IoT Core: a real paho client over mutual TLS with the certificate it is given, recording what it
receives and every disconnect. The gateway's, the client-id, the workers' and provisioning's tests
all use it.

    c = Client(broker, "motor-1", cert, key)              # cert None: the broker's service identity
    c.connected, c.reason                                 # refused: False, and why (CONNACK or TLS)
    c = device(broker, creds, "motor-1", will=True)      # must connect: AssertionError otherwise
"""

from __future__ import annotations

import json
import ssl
import threading
import time

import paho.mqtt.client as mqtt

import contract

STATUS_OFFLINE = json.dumps({"v": 1, "device": "x", "online": False}).encode()


class Client:
    """Connects on construction and waits up to timeout for the CONNACK or the broker closing the
    session; must_connect: an AssertionError "<client id> did not connect" instead of a refused
    client. will: the retained offline status the firmware leaves behind."""

    def __init__(self, broker, client_id, cert=None, key=None, will=False, must_connect=False, timeout=5.0):
        self.thing = client_id
        self.got = []
        self.disconnects = 0
        self.reason = None
        self.disconnected = threading.Event()  # the broker closed the session (or refused it)
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._subacks = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context(cert, key))
        if will:
            c.will_set(contract.topic(client_id, contract.STATUS), STATUS_OFFLINE, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = lambda cl, u, mid, codes, props: self._subacks.append(mid)
        self.client = c
        try:
            c.connect(broker.host, broker.port, keepalive=30)
        except (OSError, ssl.SSLError) as e:  # refused in the TLS handshake
            self.reason = e
        else:
            c.loop_start()
            deadline = time.monotonic() + timeout
            while not (self._connected.is_set() or self.disconnected.is_set()) and time.monotonic() < deadline:
                time.sleep(0.01)
        if must_connect and not self._connected.is_set():
            self.close()
            raise AssertionError("%s did not connect (%s)" % (client_id, self.reason))

    def _on_connect(self, client, userdata, flags, reason, props):
        self.reason = reason
        if not reason.is_failure:
            self._connected.set()

    def _on_disconnect(self, *args):
        self.disconnects += 1
        self.disconnected.set()

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.got.append((msg.topic, bytes(msg.payload)))

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self.client.is_connected()

    def subscribe(self, *topics, timeout=5.0):
        """Each topic at QoS 1, its SUBACK waited for."""
        for t in topics:
            _, mid = self.client.subscribe(t, qos=1)
            deadline = time.monotonic() + timeout
            while mid not in self._subacks:
                assert time.monotonic() < deadline, "no SUBACK for %s" % t
                time.sleep(0.01)

    def publish(self, topic, payload=b"{}", retain=False, qos=1, wait=False):
        """paho's MessageInfo; wait: until the broker has taken it (its PUBACK), for a publish the
        policy allows (a denied one closes the connection instead)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if wait:
            info.wait_for_publish(5)
        return info

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _ in self.got]

    def wait_for(self, topic, timeout=5.0) -> bool:
        """Whether a message on topic has arrived within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if topic in self.topics():
                return True
            time.sleep(0.02)
        return False

    def close(self):
        self.client.reconnect_delay_set(60, 120)  # a closed test client must not come back meanwhile
        self.client.disconnect()
        self.client.loop_stop()


def device(broker, creds, client_id, will=False, wait_s=5.0) -> Client:
    """A device with creds (the broker's issue_device: cert_pem, key_pem) that must connect."""
    return Client(broker, client_id, creds["cert_pem"], creds["key_pem"], will=will, must_connect=True,
                  timeout=wait_s)


def can_connect(broker, cert, key, client_id, timeout=5.0) -> bool:
    c = Client(broker, client_id, cert, key, timeout=timeout)
    ok = c.connected
    c.close()
    return ok
