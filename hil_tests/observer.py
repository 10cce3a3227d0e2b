"""The cloud side of the HIL tests: subscribes to the board's topics with the service identity through
the AWS IoT Device SDK v2 (awsiotsdk), locally against Mosquitto or on AWS IoT Core."""

from __future__ import annotations

import json
import threading
import time

import contract
from cloud.domain import messages


class Observer:
    def __init__(self, site):
        from awscrt import mqtt
        from awsiot import mqtt_connection_builder

        host, _, port = site.endpoint.rpartition(":")
        self.thing = site.thing
        self.messages = []
        self._cv = threading.Condition()
        self.conn = mqtt_connection_builder.mtls_from_path(
            endpoint=host, port=int(port or 8883), cert_filepath=site.cert, pri_key_filepath=site.key,
            ca_filepath=site.ca, client_id="hil-observer-%d" % time.monotonic_ns(), clean_session=True,
            keep_alive_secs=30, enable_metrics_collection=False)
        self.conn.connect().result(10)
        every_topic = contract.thing_filter(site.thing)
        fut, _ = self.conn.subscribe(every_topic, mqtt.QoS.AT_LEAST_ONCE, callback=self._on)
        fut.result(10)
        self.qos1 = mqtt.QoS.AT_LEAST_ONCE

    def _on(self, topic, payload, **kw):
        parsed = contract.parse_topic(topic)
        kind = parsed[1] if parsed else topic.rsplit("/", 1)[-1]
        with self._cv:
            self.messages.append((kind, json.loads(payload)))
            self._cv.notify_all()

    def wait(self, pred, timeout=10.0, what="message"):
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                found = [b for k, b in self.messages if pred(k, b)]
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("observer: no %s in %s s (got %s)" % (what, timeout, [k for k, _ in self.messages]))
                self._cv.wait(left)

    def invalid(self):
        """(kind, problems) of each message the device published that its schema refuses."""
        with self._cv:
            found = [(k, messages.errors(contract.MESSAGE_OF_TOPIC[k], b)) for k, b in self.messages
                     if k in contract.DEVICE_PUBLISHES]
        return [(k, problems) for k, problems in found if problems]

    def command(self, **cmd):
        """A version 2 command as the API sends it (docs/commands.md), issued now."""
        cmd.setdefault("v", contract.MESSAGE_VERSIONS[contract.MESSAGE_OF_TOPIC[contract.CMD]])
        cmd.setdefault("issued_at", int(time.time() * 1000))
        fut, _ = self.conn.publish(contract.topic(self.thing, contract.CMD), json.dumps(cmd), self.qos1)
        fut.result(10)

    def close(self):
        self.conn.disconnect().result(10)
