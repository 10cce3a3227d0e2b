"""A device as AWS IoT Core sees it, for the local IoT Core's tests: a real paho client with the
device's own certificate and client id, optionally with the retained offline Will the firmware
sets, recording what it receives and every disconnect. One copy for the gateway's, the workers'
and the client-id tests."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt

import contract

STATUS_OFFLINE = json.dumps({"v": 1, "device": "x", "online": False}).encode()


class Device:
    """connect on construction (AssertionError "<client id> did not connect" when no CONNACK
    accepts it within wait_s); will: the retained offline status the firmware leaves behind."""

    def __init__(self, broker, creds, client_id, will=False, wait_s=5.0):
        self.thing = client_id
        self.got = []
        self.disconnects = 0
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self._subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context(creds["cert_pem"], creds["key_pem"]))
        if will:
            c.will_set(contract.topic(client_id, contract.STATUS), STATUS_OFFLINE, qos=1, retain=True)
        c.on_connect = lambda cl, u, f, reason, p: (not reason.is_failure) and self.connected.set()
        c.on_disconnect = self._on_disconnect
        c.on_message = lambda cl, u, m: self.got.append((m.topic, bytes(m.payload)))
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        self.client = c
        if not self.connected.wait(wait_s):
            self.close()
            raise AssertionError("%s did not connect" % client_id)

    def _on_disconnect(self, *args):
        self.disconnects += 1
        self.disconnected.set()

    def subscribe(self, *topics):
        """Each topic at QoS 1, its SUBACK waited for."""
        for t in topics:
            self._subscribed.clear()
            self.client.subscribe(t, qos=1)
            assert self._subscribed.wait(5), "no SUBACK for %s" % t

    def publish(self, topic, payload=b"{}", retain=False, qos=1, wait=False):
        """wait: until the broker has taken it (its PUBACK), for a publish the policy allows."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if wait:
            info.wait_for_publish(5)
        return info

    def topics(self):
        return [t for t, _ in self.got]

    def close(self):
        self.client.reconnect_delay_set(60, 120)  # a closed test client must not come back meanwhile
        self.client.disconnect()
        self.client.loop_stop()
