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
                rotation's service identity (contract.ROTATION_IDENTITY: it reads
                status topics only) watches devices/<thing>/status for `online` from a boot it had
                not seen before the files changed (local backend: AWS would need a cloud subscriber).
A boot that read the old files in the instant before they changed would also qualify; restart the
device after `rotate` says the files are in place, not during.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import contract
from contract import ROTATION_IDENTITY
from provisioning import pki
from provisioning.errors import BAD_INPUT, CHECK_FAILED, CONFLICT, NOT_FOUND, SERVICE_ERROR, ProvisionError
from provisioning.registry import Registry, now_iso, registered


def backend_module(name: str):
    if name == "local":
        from provisioning import local

        return local
    from provisioning import aws

    return aws


def current_key_type(bundle_dir) -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa

    cert = pki.load_cert(Path(bundle_dir) / contract.DEVICE_CERT)
    return "rsa" if isinstance(cert.public_key(), rsa.RSAPublicKey) else "ec"


def stage(home, thing: str, key_type: str | None = None) -> tuple[dict, bool]:
    """The staged rotation: the one already recorded (reused=True) or a new one."""
    from provisioning import bundle

    entry = registered(home, thing)
    pending = entry.get("pending")
    if pending and bundle.complete(pending["next_bundle"]):
        return pending, True
    backend = backend_module(entry["backend"])
    if pending:  # recorded but its files are gone: start over cleanly
        backend.rotate_abort(home, thing, pending)
        entry = registered(home, thing)
    pending = backend.rotate_begin(home, thing, key_type or current_key_type(entry["bundle"]))
    entry = registered(home, thing)
    entry["pending"] = pending
    Registry(home).put(thing, entry)
    return pending, False


def commit(home, thing: str) -> dict:
    entry = registered(home, thing)
    if not entry.get("pending"):
        raise ProvisionError("no rotation of %s is staged" % thing, "provision rotate %s stages one" % thing, NOT_FOUND)
    return backend_module(entry["backend"]).rotate_commit(home, thing, entry["pending"])


def make_current(home, thing: str, pending: dict, certificate: dict, revoke_old) -> None:
    """What committing a rotation means in either backend: the staged files in place (if the
    device does not hold them yet), the new certificate recorded as the thing's current one
    (certificate: the backend's own fields for it, e.g. its serial or its AWS id and ARN), then
    revoke_old() (each backend revokes in its own way), and the staged and previous files gone."""
    from provisioning import bundle

    reg = Registry(home)
    entry = reg.get(thing)
    current, nxt = Path(entry["bundle"]), Path(pending["next_bundle"])
    if not bundle.installed(current, nxt):
        bundle.install(nxt, current)
    entry.update(certificate, fingerprint=pending["fingerprint"], created=now_iso(), status="ACTIVE")
    entry.pop("pending", None)
    reg.put(thing, entry)
    revoke_old()
    shutil.rmtree(nxt, ignore_errors=True)
    shutil.rmtree(current.with_name(current.name + ".prev"), ignore_errors=True)


def rotate(home, thing: str, port=None, wait_online=None, key_type=None, force=False, on_installed=None) -> dict:
    """`provision rotate THING`: stage a new certificate, check it from the host, deliver it and
    confirm the device on it (port: a board on USB; wait_online: seconds, a device on the local
    broker), then commit. Without a confirmation and without force, the rotation stays staged and
    the result says committed=False. on_installed() runs once wait_online put the files in place."""
    from provisioning import bundle, check, local

    entry = registered(home, thing)
    if port and wait_online:
        raise ProvisionError("--port and --wait-online are two ways to confirm: pick one",
                             "--port for a board on USB, --wait-online for a device on the local broker", BAD_INPUT)
    if wait_online and entry["backend"] != "local":
        raise ProvisionError("--wait-online needs the local broker's service identity; %s is on %s" % (
            thing, entry["backend"]), "use --port (the board's console confirms), or --force once you have "
                                      "seen the device online", BAD_INPUT)
    if entry.get("status") == "REVOKED":
        raise ProvisionError("%s is revoked: nothing to rotate" % thing,
                             "provision device %s --force gives it a new identity" % thing, CONFLICT)
    if port:
        bundle.mpremote_cmd()
        bundle.check_port(port)
    if wait_online and not local.broker(home).running():
        raise ProvisionError("the local broker is not running", "provision broker start", SERVICE_ERROR)

    pending, reused = stage(home, thing, key_type)
    steps = check.check_device(home, entry, pending["next_bundle"])
    if not all(s["ok"] for s in steps):
        abort(home, thing)
        raise ProvisionError("the new certificate failed the check: %s" % next(
            s["step"] + ": " + s["detail"] for s in steps if not s["ok"]),
            "the old certificate stays in use; the new one was dropped", CHECK_FAILED)
    confirmed = None
    if port:
        try:
            bundle.push(pending["next_bundle"], port)
        except ProvisionError as e:
            e.hint += " (the rotation stays staged and the old certificate valid: run this again, or --abort)"
            raise
        if bundle.wait_online(port):
            confirmed = "the board came online on %s after a reset" % port
    elif wait_online:
        seen = install_and_wait_online(local.broker(home), entry["bundle"], pending, wait_online,
                                       on_installed=on_installed)
        if seen:
            confirmed = "the device came online from boot %s" % seen.get("boot")
    if confirmed is None and force:
        confirmed = "--force"
    if confirmed is None:
        if port or wait_online:
            raise ProvisionError(
                "%s did not come online on the new certificate in time" % thing,
                "both certificates stay valid; once the device is online: provision rotate %s --force "
                "(or --abort)" % thing, CHECK_FAILED)
        return {"thing": thing, "committed": False, "reused": reused, "next_bundle": pending["next_bundle"],
                "steps": steps}
    r = commit(home, thing)
    r.update(confirmed=confirmed, committed=True, steps=steps)
    return r


def abort(home, thing: str) -> dict:
    entry = registered(home, thing)
    if not entry.get("pending"):
        return {"thing": thing, "changed": False, "message": "no rotation staged"}
    return backend_module(entry["backend"]).rotate_abort(home, thing, entry["pending"])


class StatusWatcher:
    """The rotation's service identity's view of one device's status topic on the local broker."""

    def __init__(self, broker, thing: str, timeout_s: float = 10.0):
        import paho.mqtt.client as mqtt

        self.topic = contract.topic(thing, contract.STATUS)
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
