"""Certificate rotation: the new identity is staged beside the old one, and the old one is revoked
only once the device is confirmed on the new one (or the operator forces it).

    pending, reused = rotation.stage(home, "motor-001")       # new key + cert in <bundle>.next
    ... check it from the host, then deliver it and confirm ...
    rotation.commit(home, "motor-001")                        # files in place, old cert revoked
    rotation.abort(home, "motor-001")                         # or: old files back, new cert gone

The staged rotation is recorded in the registry (entry["pending"]), so a later `rotate --force`
commits the very certificate that was staged and put on the board, never a fresh one.

Confirmation. The firmware reads its certificate files once per boot, at its first connection.
So a device is on the new certificate when, after the new files are on its flash, it boots and
comes online:
  --port        the files are copied with mpremote and read back; the board is soft-reset and its
                console must print `MG NET online` (any backend);
  --wait-online the files are installed into the bundle dir (a virtual ESP32's flash) and the
                rotation's service identity (provisioning/services.py ROTATION_IDENTITY: it reads
                status topics only) watches devices/<thing>/status for `online` from a boot it had
                not seen before the files changed (local backend: AWS would need a cloud subscriber).
A boot that read the old files in the instant before they changed would also qualify; restart the
device after `rotate` says the files are in place, not during.
"""

from __future__ import annotations

import json
import threading
import time

from provisioning import identity, pki
from provisioning.errors import NOT_FOUND, ProvisionError
from provisioning.registry import Registry
from provisioning.services import ROTATION_IDENTITY


def backend_module(name: str):
    if name == "local":
        from provisioning import local

        return local
    from provisioning import aws

    return aws


def _entry(home, thing) -> dict:
    identity.check_thing(thing)
    entry = Registry(home).get(thing)
    if not entry:
        raise ProvisionError("no device %r in %s" % (thing, home), "provision list shows them", NOT_FOUND)
    return entry


def current_key_type(bundle_dir) -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa

    cert = pki.load_cert(f"{bundle_dir}/device.crt.der")
    return "rsa" if isinstance(cert.public_key(), rsa.RSAPublicKey) else "ec"


def stage(home, thing: str, key_type: str | None = None) -> tuple[dict, bool]:
    """The staged rotation: the one already recorded (reused=True) or a new one."""
    from provisioning import bundle

    entry = _entry(home, thing)
    pending = entry.get("pending")
    if pending and bundle.complete(pending["next_bundle"]):
        return pending, True
    backend = backend_module(entry["backend"])
    if pending:  # recorded but its files are gone: start over cleanly
        backend.rotate_abort(home, thing, pending)
        entry = _entry(home, thing)
    pending = backend.rotate_begin(home, thing, key_type or current_key_type(entry["bundle"]))
    entry = _entry(home, thing)
    entry["pending"] = pending
    Registry(home).put(thing, entry)
    return pending, False


def commit(home, thing: str) -> dict:
    entry = _entry(home, thing)
    if not entry.get("pending"):
        raise ProvisionError("no rotation of %s is staged" % thing, "provision rotate %s stages one" % thing, NOT_FOUND)
    return backend_module(entry["backend"]).rotate_commit(home, thing, entry["pending"])


def abort(home, thing: str) -> dict:
    entry = _entry(home, thing)
    if not entry.get("pending"):
        return {"thing": thing, "changed": False, "message": "no rotation staged"}
    return backend_module(entry["backend"]).rotate_abort(home, thing, entry["pending"])


class StatusWatcher:
    """The rotation's service identity's view of one device's status topic on the local broker."""

    def __init__(self, broker, thing: str, timeout_s: float = 10.0):
        import paho.mqtt.client as mqtt

        self.topic = "devices/%s/status" % thing
        self.messages = []  # (monotonic time, payload dict)
        self._cond = threading.Condition()
        subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=ROTATION_IDENTITY, protocol=mqtt.MQTTv311)
        c.tls_set_context(broker.client_context(identity=ROTATION_IDENTITY))
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        c.subscribe(self.topic, qos=1)
        self.client = c
        if not subscribed.wait(timeout_s):
            self.close()
            raise ProvisionError("the rotation's service identity could not subscribe on the local broker",
                                 "is it running? provision broker status", NOT_FOUND)

    def _on_message(self, client, userdata, msg):
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        with self._cond:
            self.messages.append((time.monotonic(), payload))
            self._cond.notify_all()

    def boots_seen(self) -> set:
        with self._cond:
            return {p.get("boot") for _, p in self.messages}

    def wait_new_boot_online(self, since: float, known_boots: set, timeout_s: float) -> dict | None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for t, p in self.messages:
                    if t >= since and p.get("online") is True and p.get("boot") not in known_boots:
                        return p
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def install_and_wait_online(broker, bundle_dir, pending: dict, timeout_s: float, on_installed=None) -> dict | None:
    """Installs the staged files into bundle_dir and waits for the device to come online from a new boot."""
    from provisioning import bundle

    watcher = StatusWatcher(broker, pending["thing"])
    try:
        time.sleep(0.3)  # the retained status (the current boot) arrives right after SUBACK
        known = watcher.boots_seen()
        bundle.install(pending["next_bundle"], bundle_dir)
        since = time.monotonic()
        if on_installed:
            on_installed()
        return watcher.wait_new_boot_online(since, known, timeout_s)
    finally:
        watcher.close()
