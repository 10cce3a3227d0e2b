"""Publishing to the local broker as the API's service identity (what iot-data publish is in AWS):
contract.API_IDENTITY, which may only write devices/+/cmd. An identity of its own,
because the broker makes every client id its certificate's name: on a shared one, this client and
the rules engine, provision check or a test's observer would take each other's connections over.

    api.publisher = publisher(broker_dir)     # what cloud/local/apigw.py does for the api handler
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_clients = {}


def _client(broker_dir: str):
    from cloud.local.broker import LocalBroker
    from contract import API_IDENTITY

    with _lock:
        c = _clients.get(broker_dir)
        if c is not None and c.is_connected():
            return c
        b = LocalBroker.from_state_dir(broker_dir)
        try:
            c = b.service_client(API_IDENTITY, API_IDENTITY, timeout_s=5, keepalive=60)
        except ConnectionError:
            raise ConnectionError("cannot reach the local broker in %s" % broker_dir) from None
        _clients[broker_dir] = c
        return c


def publish(broker_dir: str, topic: str, payload: str, qos: int = 1) -> None:
    info = _client(broker_dir).publish(topic, payload, qos=qos)
    info.wait_for_publish(5)
    if not info.is_published():
        raise ConnectionError("the local broker did not acknowledge the publish to %s" % topic)


def publisher(broker_dir: str):
    """publish(broker_dir, topic, payload) as a (topic, payload) publisher, the api handler's kind
    (cloud/lambdas/api.py publisher)."""
    def send(topic: str, payload: str) -> None:
        publish(broker_dir, topic, payload)

    return send
