"""A device for the cloud tests: a paho client with its own certificate from the broker's CA."""

from __future__ import annotations

import json


class Publisher:
    def __init__(self, broker, thing):
        import paho.mqtt.client as mqtt

        creds = broker.issue_device(thing)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=thing, protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context(creds["cert_pem"], creds["key_pem"]))
        c.max_inflight_messages_set(200)
        c.max_queued_messages_set(0)
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c

    def publish(self, topic, payload, qos=1):
        """Sends at once; returns paho's MessageInfo. A dict is sent as JSON."""
        return self.client.publish(topic, payload if isinstance(payload, (bytes, str)) else json.dumps(payload), qos=qos)

    def publish_acked(self, topic, payload):
        """Sends with QoS 1 and waits for the broker's PUBACK."""
        info = self.publish(topic, payload)
        info.wait_for_publish(5)
        assert info.is_published(), "no PUBACK for %s" % topic

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
