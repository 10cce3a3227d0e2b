"""LocalBroker.service_client, the one way the services and tools connect a client to the local
broker: subscribed before it returns, subscribed again after the broker restarts, and a clear
ConnectionError, not a hang, when the broker is not there."""

from __future__ import annotations

import threading

import pytest

import contract


def test_a_service_client_is_subscribed_when_it_returns_and_again_after_a_restart(broker):
    got = []
    seen = threading.Event()

    def on_message(client, userdata, msg):
        got.append(msg.payload)
        seen.set()

    # Two identities: the broker makes an identity its client id, so two clients of one would take
    # each other's place. The API's may write a command; the observer's reads every device topic.
    topic = contract.topic("svc-1", contract.CMD)
    listener = broker.service_client("svc-listener", topics=[(topic, 1)], on_message=on_message,
                                     setup=lambda c: c.reconnect_delay_set(0.1, 0.5))
    talker = broker.service_client("svc-talker", contract.API_IDENTITY)
    try:
        talker.publish(topic, b"one", qos=1).wait_for_publish(5)
        assert seen.wait(5) and got == [b"one"]  # no sleep needed: the SUBACK came before it returned
        broker.stop()
        broker.start()
        seen.clear()
        deadline = threading.Event()
        for _ in range(100):  # the talker reconnects on its own loop too
            if talker.is_connected() and listener.is_connected():
                break
            deadline.wait(0.1)
        talker.publish(topic, b"two", qos=1).wait_for_publish(5)
        assert seen.wait(10) and got[-1] == b"two"
    finally:
        for c in (listener, talker):
            c.loop_stop()
            c.disconnect()


def test_no_broker_is_a_connection_error_that_names_the_client(broker):
    broker.stop()
    with pytest.raises(ConnectionError):
        broker.service_client("svc-alone", topics=[("devices/#", 1)], timeout_s=1)
