"""`provision check`: proof from the host that a bundle's certificate, the policy and the endpoint
work, before the bundle goes onto a board. Uses the AWS IoT Device SDK v2 (awsiotsdk), as a device
would, with the bundle's own files.

Steps: connect as the thing; publish a telemetry message to its own topic (PUBACK); publish to
another device's topic and subscribe to another device's command topic, both of which must be
refused. AWS IoT Core refuses by closing the connection or failing the SUBACK. The local broker
(Mosquitto) instead acknowledges and silently discards, so against it the check also listens with a
service identity of its own (contract.CHECK_IDENTITY: it reads telemetry and may
command only the probe device, CHECK_PROBE_THING) and asserts that the device's own message
arrived and the forbidden ones did not.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import contract
from contract import CHECK_IDENTITY, CHECK_PROBE_THING
from provisioning.errors import CHECK_FAILED, NOT_FOUND, SERVICE_ERROR, ProvisionError

OTHER = CHECK_PROBE_THING  # a thing name no device may have (identity.check_thing)
TIMEOUT_S = 10


def probe_message(thing: str) -> str:
    """A schema-valid telemetry message (schemas/v1/telemetry.schema.json) marked as a check."""
    now_ms = int(time.time() * 1000)
    return json.dumps({
        "v": 1, "device": thing, "boot": "00000000", "fw": "provision-check", "uptime_s": 0, "heap_free": 0,
        "rssi": 0, "seq": 0, "dropped": 0,
        "samples": [{"time": now_ms, "temperature_c": 25.0, "current_a": 0.0, "position": 90.0, "speed": 0,
                     "state": "STOPPED"}],
    })


class _Observer:
    """The cloud side on the local broker: a paho client with the check's own service identity."""

    def __init__(self, broker):
        import paho.mqtt.client as mqtt

        self.got = []
        self._ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=CHECK_IDENTITY, protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context(identity=CHECK_IDENTITY))
        c.on_message = lambda cl, u, m: self.got.append((m.topic, m.payload))
        c.on_subscribe = lambda *a: self._ready.set()
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        c.subscribe(contract.topic_filter(contract.TELEMETRY), qos=1)  # all the check listens for, and may read
        if not self._ready.wait(TIMEOUT_S):
            raise ProvisionError("the check's service identity could not subscribe on the local broker",
                                 "is the broker running? provision broker status", CHECK_FAILED)
        self.client = c

    def publish(self, topic, payload):
        self.client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT_S)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def check_device(home, entry: dict, bundle_dir=None) -> list[dict]:
    """`provision check`: run() on a registered device's bundle (or on bundle_dir, a staged one),
    with the check's listener on the local broker for a local device."""
    observer = None
    if entry["backend"] == "local":
        from provisioning import local

        observer = local.broker(home)
        if not observer.running():
            raise ProvisionError("the local broker is not running", "provision broker start", SERVICE_ERROR)
    return run(bundle_dir or entry["bundle"], observer_broker=observer)


def run(bundle_dir, observer_broker=None, endpoint: str | None = None) -> list[dict]:
    """Runs every step; returns [{step, ok, detail}]. observer_broker: the LocalBroker (local backend)."""
    from awscrt import mqtt
    from awsiot import mqtt_connection_builder

    d = Path(bundle_dir)
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ProvisionError("no usable bundle in %s (%s)" % (d, e), "provision device THING writes one",
                             NOT_FOUND) from None
    thing = cfg["thing"]
    host, port = (endpoint.rsplit(":", 1) if endpoint else (cfg["mqtt"]["host"], cfg["mqtt"].get("port", 8883)))
    own = contract.topic(thing, contract.TELEMETRY)
    steps = []
    interrupted = threading.Event()
    received = []

    def step(name, ok, detail=""):
        steps.append({"step": name, "ok": bool(ok), "detail": detail})
        return ok

    observer = _Observer(observer_broker) if observer_broker is not None else None
    conn = mqtt_connection_builder.mtls_from_path(
        endpoint=host, port=int(port), cert_filepath=str(d / "device.crt.pem"), pri_key_filepath=str(d / "device.key.pem"),
        ca_filepath=str(d / "root-ca.pem"), client_id=thing, clean_session=True, keep_alive_secs=30,
        on_connection_interrupted=lambda *a, **k: interrupted.set(), enable_metrics_collection=False)
    try:
        try:
            conn.connect().result(TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - the SDK raises its own error types
            step("connect as %s to %s:%s" % (thing, host, port), False, type(e).__name__ + ": " + str(e)[:120])
            return steps
        step("connect as %s to %s:%s" % (thing, host, port), True, "mutual TLS accepted")

        fut, _ = conn.publish(own, probe_message(thing), mqtt.QoS.AT_LEAST_ONCE)
        try:
            fut.result(TIMEOUT_S)
            ok = True
            detail = "PUBACK"
        except Exception as e:  # noqa: BLE001
            ok, detail = False, str(e)[:120]
        if ok and observer is not None:
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline and not any(t == own for t, _ in observer.got):
                time.sleep(0.05)
            ok = any(t == own for t, _ in observer.got)
            detail = "PUBACK, and the service received it" if ok else "PUBACK, but the service never received it"
        step("publish to %s" % own, ok, detail)

        # Subscribe to another device's commands: refused by AWS; granted-but-never-delivered locally.
        other_cmd = contract.topic(OTHER, contract.CMD)
        try:
            sub, _ = conn.subscribe(other_cmd, mqtt.QoS.AT_LEAST_ONCE,
                                    callback=lambda topic, payload, **kw: received.append(topic))
            sub.result(TIMEOUT_S)
            refused, detail = False, "SUBACK granted"
        except Exception as e:  # noqa: BLE001
            refused, detail = True, "SUBACK refused (%s)" % type(e).__name__
        if not refused and observer is not None:
            observer.publish(other_cmd, b'{"cmd":"stop"}')
            time.sleep(1.0)
            refused = other_cmd not in received
            detail += "; %s" % ("nothing delivered (broker ACL)" if refused else "A COMMAND FOR ANOTHER DEVICE ARRIVED")
        step("subscribe to %s is refused" % other_cmd, refused, detail)

        other = contract.topic(OTHER, contract.TELEMETRY)
        before = len(observer.got) if observer else 0
        fut, _ = conn.publish(other, probe_message(OTHER), mqtt.QoS.AT_LEAST_ONCE)
        try:
            fut.result(3)
        except Exception:  # noqa: BLE001 - AWS closes the connection instead of a PUBACK
            pass
        if observer is not None:
            time.sleep(1.0)
            leaked = [t for t, _ in observer.got[before:] if t == other]
            step("publish to %s is refused" % other, not leaked,
                 "discarded by the broker's ACL" if not leaked else "THE BROKER DELIVERED IT")
        else:
            step("publish to %s is refused" % other, interrupted.wait(3), "AWS IoT closed the connection"
                 if interrupted.is_set() else "the connection stayed up: the policy allows it")
    finally:
        try:
            conn.disconnect().result(TIMEOUT_S)
        except Exception:  # noqa: BLE001
            pass
        if observer is not None:
            observer.close()
    return steps
