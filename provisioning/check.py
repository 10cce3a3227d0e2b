"""`provision check`: proof from the host that a bundle's certificate, the policy and the endpoint
work, before the bundle goes onto a board. Uses the AWS IoT Device SDK v2 (awsiotsdk), as a device
would, with the bundle's own files and the device's own client id.

Steps, each as the board does it or as the policy must refuse it:
1. listen for the thing's lifecycle events ($aws/events/presence/connected|disconnected/<thing>): in
   AWS with the operator's IAM credentials over a signed WebSocket, locally with the check's service
   identity (contract.CHECK_IDENTITY, which also reads telemetry and may command only the probe
   device, CHECK_PROBE_THING);
2. connect as the thing with a Last Will on its own status topic (retained, QoS 1, an offline status),
   as the board does: the policy must accept the Will at connect (iot:ConnectAttributes LastWill,
   iot:Publish and iot:RetainPublish on the status topic);
3. publish telemetry to its own topic (PUBACK; locally, the listener must receive it);
4. publish a retained status to its own status topic (PUBACK, and the connection still up a moment
   later: AWS IoT Core closes the connection of a client whose publish its policy denies, so a missing
   iot:RetainPublish shows up here as an interruption);
5. subscribe to another device's command topic, and 6. publish to another device's telemetry topic:
   both must be refused, by a failed SUBACK or by the broker closing the connection.

A closed connection alone proves nothing: the live device, connecting with the same client id, takes
the session over just the same. So every interruption is judged by the disconnected lifecycle event
of the check's own session (provisioning/lifecycle.py): AUTH_ERROR or FORBIDDEN_ACCESS is a refusal;
DUPLICATE_CLIENTID means the device is online, and the check stops and says to run it while the device
is offline; no event in time is reported as such, never as a refusal. Against a broker that grants a
forbidden subscription or acknowledges a forbidden publish without closing the connection, the local
listener proves instead that nothing was delivered.

The check leaves a retained offline status (fw "provision-check") on the device's status topic; the
device replaces it with its own when it next connects.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import contract
from contract import CHECK_IDENTITY, CHECK_PROBE_THING
from provisioning import lifecycle
from provisioning.errors import CHECK_FAILED, NOT_FOUND, SERVICE_ERROR, ProvisionError

OTHER = CHECK_PROBE_THING  # a thing name no device may have (identity.check_thing)
TIMEOUT_S = 10
SETTLE_S = 1.0  # a connection must stay up this long after an accepted step (AWS closes it at once on a denial)
CHECK_FW = "provision-check"  # the fw field of the check's status messages
TAKEOVER = "takeover"  # a step's verdict when the live device took the session over
TAKEOVER_HINT = ("run provision check while the device is offline (powered off, or off its network): it "
                 "connects with the same client id and AWS IoT Core keeps only one connection per client id")


def probe_message(thing: str) -> str:
    """A schema-valid telemetry message (schemas/v1/telemetry.schema.json) marked as a check."""
    now_ms = int(time.time() * 1000)
    return json.dumps({
        "v": 1, "device": thing, "boot": "00000000", "fw": CHECK_FW, "uptime_s": 0, "heap_free": 0,
        "rssi": 0, "seq": 0, "dropped": 0,
        "samples": [{"time": now_ms, "temperature_c": 25.0, "current_a": 0.0, "position": 90.0, "speed": 0,
                     "state": "STOPPED"}],
    })


def offline_status(thing: str) -> str:
    """A schema-valid offline status (schemas/v1/status.schema.json) marked as a check: the check's Will
    and its retained publish. Offline, since the device is (or should be) while the check runs."""
    return json.dumps({"v": 1, "device": thing, "online": False, "boot": "00000000", "fw": CHECK_FW})


class _Observer:
    """The cloud side on the local broker: a paho client with the check's own service identity, reading
    telemetry (what the device's publish must deliver) and the thing's lifecycle events."""

    def __init__(self, broker, thing: str):
        self.got = []
        self.events = lifecycle.Events(thing)
        # One SUBSCRIBE, one SUBACK: all the check listens for, and may read.
        topics = [(contract.topic_filter(contract.TELEMETRY), 1)] + [(t, 1) for t in self.events.topics]
        try:
            self.client = broker.service_client(CHECK_IDENTITY, CHECK_IDENTITY, topics, self._on_message, TIMEOUT_S)
        except ConnectionError:
            raise ProvisionError("the check's service identity could not subscribe on the local broker",
                                 "is the broker running? provision broker status", CHECK_FAILED) from None

    def _on_message(self, client, userdata, msg):
        if msg.topic in self.events.topics:
            self.events.add(msg.topic, msg.payload)
        else:
            self.got.append((msg.topic, msg.payload))

    def publish(self, topic, payload):
        self.client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT_S)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class _Device:
    """One connection as the device, from its bundle (awsiotsdk), with the check's retained Will."""

    def __init__(self, bundle_dir: Path, thing: str, host: str, port: int, will: bool = True):
        from awscrt import mqtt
        from awsiot import mqtt_connection_builder

        self.interrupted = threading.Event()
        self.began = None
        status = contract.topic(thing, contract.STATUS)
        self.conn = mqtt_connection_builder.mtls_from_path(
            endpoint=host, port=port, cert_filepath=str(bundle_dir / "device.crt.pem"),
            pri_key_filepath=str(bundle_dir / "device.key.pem"), ca_filepath=str(bundle_dir / "root-ca.pem"),
            client_id=thing, clean_session=True, keep_alive_secs=30, enable_metrics_collection=False,
            will=mqtt.Will(status, mqtt.QoS.AT_LEAST_ONCE, offline_status(thing).encode(), True) if will else None,
            reconnect_min_timeout_secs=60, reconnect_max_timeout_secs=120,
            on_connection_interrupted=self._on_interrupted)

    def _on_interrupted(self, connection, error, **kw):
        self.interrupted.set()
        # No reconnect of its own: it would push the live device off again, or be one more connection
        # to tell apart. A disconnect from this callback ends the connection at once (the SDK's
        # disconnect otherwise completes only when the pending reconnect would have started).
        connection.disconnect()

    def connect(self):
        self.began = time.monotonic()
        self.conn.connect().result(TIMEOUT_S)

    def wait(self, fut, timeout_s: float = TIMEOUT_S) -> tuple:
        """("done", result) | ("refused", exc) for a SUBACK refusal | ("failed", exc) | ("interrupted", None)
        | ("timeout", None): how an operation ended."""
        from awscrt import mqtt

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if fut.done():
                exc = fut.exception()
                if exc is None:
                    return "done", fut.result()
                if isinstance(exc, mqtt.SubscribeError):
                    return "refused", exc
                # An operation failed by a lost connection: the interruption callback may come a moment later.
                return ("interrupted", None) if self.interrupted.wait(0.5) else ("failed", exc)
            if self.interrupted.is_set():
                return "interrupted", None
            time.sleep(0.01)
        return "timeout", None

    def close(self):
        try:
            self.conn.disconnect().result(TIMEOUT_S)
        except Exception:  # noqa: BLE001 - closing what may already be closed
            pass


class _Check:
    """One run of the steps against one bundle; steps() is the result."""

    def __init__(self, bundle_dir: Path, thing: str, host: str, port: int, events, observer):
        self.bundle_dir, self.thing, self.host, self.port = bundle_dir, thing, host, port
        self.events = events  # lifecycle.Events, or None when no listener could be set up
        self.observer = observer  # _Observer on the local broker, or None (AWS)
        self.steps = []
        self.earlier = set()  # sessions of this check's previous connections

    def step(self, name, ok, detail="", verdict=None) -> bool:
        entry = {"step": name, "ok": bool(ok), "detail": detail}
        if verdict:
            entry["verdict"] = verdict
        self.steps.append(entry)
        return bool(ok)

    def ending(self, dev: _Device) -> lifecycle.Ending:
        if self.events is None:
            return lifecycle.Ending("unknown", None, "the connection closed, but without a lifecycle listener a "
                                    "refusal cannot be told from a takeover by the live device")
        end = lifecycle.wait_ending(self.events, dev.began, self.earlier)
        if end.session:
            self.earlier.add(end.session)
        return end

    def closed(self, name: str, dev: _Device, refusal_expected: bool, refused_means: str = "") -> bool:
        """A step whose connection was closed: judged by the lifecycle event. False: stop the check."""
        end = self.ending(dev)
        if end.kind == "takeover":
            self.step(name, False, "%s; %s" % (end.detail, TAKEOVER_HINT), verdict=TAKEOVER)
            return False
        if refusal_expected:
            self.step(name, end.kind == "refused", end.detail)
        else:
            self.step(name, False, end.detail + (refused_means if end.kind == "refused" else ""))
        return True

    # ------------------------------------------------------------ the steps

    def connect(self) -> _Device | None:
        name = "connect as %s to %s:%s with a retained Last Will on %s" % (
            self.thing, self.host, self.port, contract.topic(self.thing, contract.STATUS))
        dev = _Device(self.bundle_dir, self.thing, self.host, self.port)
        try:
            dev.connect()
            self.step(name, True, "mutual TLS and the Will accepted")
            return dev
        except Exception as e:  # noqa: BLE001 - the SDK raises its own error types
            error = type(e).__name__ + ": " + str(e)[:120]
        dev.close()
        # Refused: the certificate, or only the Will? One more try without a Will tells them apart.
        bare = _Device(self.bundle_dir, self.thing, self.host, self.port, will=False)
        try:
            bare.connect()
        except Exception:  # noqa: BLE001
            self.step(name, False, error)
            return None
        finally:
            bare.close()
        self.step(name, False, "refused with the Will, accepted without it: the policy does not allow the board's "
                  "retained Will (iot:Connect with iot:ConnectAttributes LastWill, iot:Publish and iot:RetainPublish "
                  "on its status topic) (%s)" % error)
        return None

    def publish_own(self, dev: _Device) -> bool:
        from awscrt import mqtt

        own = contract.topic(self.thing, contract.TELEMETRY)
        name = "publish to %s" % own
        fut, _ = dev.conn.publish(own, probe_message(self.thing), mqtt.QoS.AT_LEAST_ONCE)
        state, got = dev.wait(fut)
        if state == "interrupted":
            return self.closed(name, dev, False, ": the policy does not allow the device's telemetry")
        if state != "done":
            self.step(name, False, "no PUBACK (%s)" % (str(got)[:120] if got else state))
            return True
        if self.observer is None:
            self.step(name, True, "PUBACK")
            return True
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and not any(t == own for t, _ in self.observer.got):
            time.sleep(0.05)
        ok = any(t == own for t, _ in self.observer.got)
        self.step(name, ok, "PUBACK, and the service received it" if ok else
                  "PUBACK, but the service never received it")
        return True

    def publish_retained(self, dev: _Device) -> bool:
        from awscrt import mqtt

        status = contract.topic(self.thing, contract.STATUS)
        name = "publish a retained status to %s" % status
        fut, _ = dev.conn.publish(status, offline_status(self.thing), mqtt.QoS.AT_LEAST_ONCE, retain=True)
        state, got = dev.wait(fut)
        if state == "done" and dev.interrupted.wait(SETTLE_S):
            state = "interrupted"  # acknowledged, then closed: judge the close
        if state == "interrupted":
            return self.closed(name, dev, False, ": the policy does not allow the board's retained status "
                               "(iot:RetainPublish on %s)" % status)
        if state != "done":
            self.step(name, False, "no PUBACK (%s)" % (str(got)[:120] if got else state))
            return True
        self.step(name, True, "PUBACK, and the connection still up %g s later" % SETTLE_S)
        return True

    def subscribe_other(self, dev: _Device) -> bool:
        from awscrt import mqtt

        other_cmd = contract.topic(OTHER, contract.CMD)
        name = "subscribe to %s is refused" % other_cmd
        received = []
        sub, _ = dev.conn.subscribe(other_cmd, mqtt.QoS.AT_LEAST_ONCE,
                                    callback=lambda topic, payload, **kw: received.append(topic))
        state, got = dev.wait(sub)
        if state == "done" and dev.interrupted.wait(SETTLE_S if self.observer is None else 0.2):
            state = "interrupted"
        if state == "interrupted":
            return self.closed(name, dev, True)
        if state == "refused":
            self.step(name, True, "SUBACK refused")
            return True
        if state != "done":
            self.step(name, False, "no SUBACK (%s)" % (str(got)[:120] if got else state))
            return True
        if self.observer is None:
            self.step(name, False, "SUBACK granted and the connection stayed up: the policy allows it")
            return True
        # A broker that grants every subscription and enforces its ACL only when delivering.
        self.observer.publish(other_cmd, b'{"cmd":"stop"}')
        time.sleep(1.0)
        refused = other_cmd not in received
        self.step(name, refused, "SUBACK granted; %s" % (
            "nothing delivered (broker ACL)" if refused else "A COMMAND FOR ANOTHER DEVICE ARRIVED"))
        return True

    def publish_other(self, dev: _Device) -> bool:
        from awscrt import mqtt

        other = contract.topic(OTHER, contract.TELEMETRY)
        name = "publish to %s is refused" % other
        before = len(self.observer.got) if self.observer else 0
        fut, _ = dev.conn.publish(other, probe_message(OTHER), mqtt.QoS.AT_LEAST_ONCE)
        state, _ = dev.wait(fut, 3)
        if state in ("done", "timeout") and dev.interrupted.wait(SETTLE_S):
            state = "interrupted"
        if state == "interrupted":
            return self.closed(name, dev, True)
        if self.observer is None:
            self.step(name, False, "the connection stayed up: the policy allows it")
            return True
        # A broker that acknowledges a forbidden publish and drops it (SETTLE_S has passed meanwhile).
        leaked = [t for t, _ in self.observer.got[before:] if t == other]
        self.step(name, not leaked, "discarded by the broker's ACL" if not leaked else "THE BROKER DELIVERED IT")
        return True

    def run(self) -> list:
        dev = self.connect()
        if dev is None:
            return self.steps
        try:
            for action in (self.publish_own, self.publish_retained, self.subscribe_other, self.publish_other):
                if dev.interrupted.is_set():  # the last step ended the connection: a new one for the next
                    dev.close()
                    dev = _Device(self.bundle_dir, self.thing, self.host, self.port)
                    try:
                        dev.connect()
                    except Exception as e:  # noqa: BLE001
                        self.step("connect again for the next step", False, type(e).__name__ + ": " + str(e)[:120])
                        return self.steps
                if not action(dev):
                    break
        finally:
            dev.close()
        return self.steps


def check_device(home, entry: dict, bundle_dir=None, session=None) -> list[dict]:
    """`provision check`: run() on a registered device's bundle (or on bundle_dir, a staged one),
    with the check's listener on the local broker for a local device, or in AWS (session: boto3's)."""
    observer = None
    if entry["backend"] == "local":
        from provisioning import local

        observer = local.broker(home)
        if not observer.running():
            raise ProvisionError("the local broker is not running", "provision broker start", SERVICE_ERROR)
    return run(bundle_dir or entry["bundle"], observer_broker=observer, aws_session=session)


def run(bundle_dir, observer_broker=None, endpoint: str | None = None, aws_session=None) -> list[dict]:
    """Runs every step; returns [{step, ok, detail[, verdict]}] (verdict "takeover": the device is live).
    observer_broker: the LocalBroker (local backend); otherwise the listener is AWS's (aws_session)."""
    d = Path(bundle_dir)
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ProvisionError("no usable bundle in %s (%s)" % (d, e), "provision device THING writes one",
                             NOT_FOUND) from None
    thing = cfg["thing"]
    host, port = (endpoint.rsplit(":", 1) if endpoint else (cfg["mqtt"]["host"], cfg["mqtt"].get("port", 8883)))
    listen = "listen for the lifecycle events of %s" % thing
    observer = listener = None
    if observer_broker is not None:
        observer = _Observer(observer_broker, thing)
        events, first = observer.events, {"step": listen, "ok": True, "detail": "as %s on the local broker"
                                          % CHECK_IDENTITY}
    else:
        try:
            listener = lifecycle.AwsListener(host, thing, CHECK_IDENTITY, aws_session)
            events, first = listener.events, {"step": listen, "ok": True, "detail": "as %s with your AWS credentials"
                                              % listener.client_id}
        except ProvisionError as e:  # the check still runs; an interruption then cannot be judged
            events, first = None, {"step": listen, "ok": False, "detail": "%s; %s" % (e.message, e.hint)}
    try:
        check = _Check(d, thing, host, int(port), events, observer)
        check.steps.append(first)
        return check.run()
    finally:
        for c in (observer, listener):
            if c is not None:
                c.close()
