"""paho clients for the provisioning tests: a device from its bundle, and the service identity."""

from __future__ import annotations

import ssl
import threading
import time

import paho.mqtt.client as mqtt


class Client:
    """One MQTT connection over mutual TLS that records what it receives."""

    def __init__(self, broker, client_id, cert=None, key=None, timeout=5.0):
        self.got = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._ended = threading.Event()  # refused: the broker closed the TLS session
        self._subacks = []
        self.reason = None
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context(cert, key))
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = lambda cl, u, mid, codes, props: self._subacks.append(mid)
        c.on_disconnect = lambda *a: self._ended.set()
        self.client = c
        try:
            c.connect(broker.host, broker.port, keepalive=30)
        except (OSError, ssl.SSLError) as e:
            self.reason = e
            return
        c.loop_start()
        deadline = time.monotonic() + timeout
        while not (self._connected.is_set() or self._ended.is_set()) and time.monotonic() < deadline:
            time.sleep(0.01)

    def _on_connect(self, client, userdata, flags, reason, props):
        self.reason = reason
        if not reason.is_failure:
            self._connected.set()

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.got.append((msg.topic, bytes(msg.payload)))

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self.client.is_connected()

    def subscribe(self, *topics, timeout=5.0):
        for t in topics:
            _, mid = self.client.subscribe(t, qos=1)
            deadline = time.monotonic() + timeout
            while mid not in self._subacks:
                assert time.monotonic() < deadline, "no SUBACK for %s" % t
                time.sleep(0.01)

    def publish(self, topic, payload=b"{}"):
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _ in self.got]

    def wait_for(self, topic, timeout=5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if topic in self.topics():
                return True
            time.sleep(0.02)
        return False

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def can_connect(broker, cert, key, client_id, timeout=5.0) -> bool:
    c = Client(broker, client_id, cert, key, timeout)
    ok = c.connected
    try:
        c.close()
    except Exception:  # noqa: BLE001 - a refused client may have no connection to close
        pass
    return ok
