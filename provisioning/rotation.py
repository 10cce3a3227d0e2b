"""Certificate rotation: the new identity is staged beside the old one, and the old one is revoked
only once the device is confirmed on the new one (or the operator forces it).

    pending, reused = rotation.stage(home, "motor-001")       # new key + cert in <bundle>.next
    ... check it from the host, then deliver it and confirm ...
    rotation.commit(home, "motor-001")                        # files in place, old cert revoked
    rotation.abort(home, "motor-001")                         # or: old files back, new cert gone

The staged rotation is recorded in the registry (entry["pending"]), so a later `rotate --force`
commits the very certificate that was staged and put on the board, never a fresh one.

Confirmation. The firmware reads its certificate files once per boot, at its first connection.
So a device is on the new certificate when, after the new files are on its flash, it boots, comes
online, and stays connected:
  --port        the files are copied with mpremote and read back; the board is soft-reset and its
                console must print `MG NET online` (any backend);
  --wait-online the files are installed into the bundle dir (a virtual ESP32's flash) and the
                rotation's service identity (contract.ROTATION_IDENTITY: it reads status topics and
                lifecycle events only) watches devices/<thing>/status for `online` from a boot it had
                not seen before the files changed (local backend: AWS would need a cloud subscriber).
"Online" alone is not enough: in AWS a board whose policy refuses its retained status prints online,
is disconnected (AUTH_ERROR), and retries forever. So the device must then stay connected for
SETTLE_S, judged by the thing's lifecycle events (provisioning/lifecycle.py stayed_connected: no end
of its new session, no reconnect, no refusal), read locally by the rotation's service identity and in
AWS with the operator's IAM credentials (lifecycle.AwsListener); locally its Will (an offline status
from the new boot) counts against it too. Without any lifecycle event the local broker's status topic
decides alone, and in AWS the rotation is not confirmed.
A boot that read the old files in the instant before they changed would also qualify; restart the
device after `rotate` says the files are in place, not during.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import contract
from contract import ROTATION_IDENTITY
from provisioning import backends, lifecycle, pki
from provisioning.errors import BAD_INPUT, CHECK_FAILED, CONFLICT, NOT_FOUND, SERVICE_ERROR, ProvisionError
from provisioning.registry import Registry, registered

SETTLE_S = 5.0  # how long a device must stay connected on its new certificate, after it came online


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
    backend = backends.get(entry["backend"])
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
    return backends.get(entry["backend"]).rotate_commit(home, thing, entry["pending"])


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
    failed = [s for s in steps if not s["ok"] and s.get("verdict") != check.TAKEOVER]
    if failed:
        abort(home, thing)
        raise ProvisionError("the new certificate failed the check: %s: %s" % (failed[0]["step"], failed[0]["detail"]),
                             "the old certificate stays in use; the new one was dropped", CHECK_FAILED)
    # A device online on its old certificate takes its client id back from the check: what ran until
    # then passed, and the confirmation below holds the device itself to the policy on the new one.
    cut_short = any(s.get("verdict") == check.TAKEOVER for s in steps)
    confirmed = unstable = None
    if port:
        presence = _presence(home, entry, pending)  # listening before anything goes onto the board
        try:
            delivered = time.monotonic()
            try:
                pushed = bundle.push(pending["next_bundle"], port)  # through maintenance mode, then a hard reset
            except ProvisionError as e:
                e.hint += " (the rotation stays staged and the old certificate valid: run this again, or --abort)"
                raise
            if pushed["online"]:
                stayed, detail = settle(presence, delivered, time.monotonic())
                if stayed:
                    confirmed = "the board came online on %s after a reset and %s" % (port, detail)
                else:
                    unstable = detail
        finally:
            presence.close()
    elif wait_online:
        seen = install_and_wait_online(local.broker(home), entry["bundle"], pending, wait_online,
                                       on_installed=on_installed)
        if seen and seen["stayed"]:
            confirmed = "the device came online from boot %s and %s" % (seen["status"].get("boot"), seen["detail"])
        elif seen:
            unstable = seen["detail"]
    if confirmed is None and force:
        confirmed = "--force" + (" (unconfirmed: %s)" % unstable if unstable else "")
    if confirmed is None:
        keep = "both certificates stay valid; once the device works on the new one: provision rotate %s --force " \
               "(or --abort)" % thing
        if unstable:
            raise ProvisionError("%s came online on the new certificate but is not confirmed: %s" % (thing, unstable),
                                 ("provision policy update --dry-run shows whether the policy in AWS is behind; "
                                  if "refused" in unstable else "") + keep, CHECK_FAILED)
        if port or wait_online:
            raise ProvisionError("%s did not come online on the new certificate in time" % thing, keep, CHECK_FAILED)
        return {"thing": thing, "committed": False, "reused": reused, "next_bundle": pending["next_bundle"],
                "steps": steps, "check_cut_short": cut_short}
    r = commit(home, thing)
    r.update(confirmed=confirmed, committed=True, steps=steps, check_cut_short=cut_short)
    return r


def _presence(home, entry: dict, pending: dict):
    """What watches the device come online and stay: the rotation's service identity on the local
    broker (status and lifecycle events), or in AWS a lifecycle listener with the operator's IAM
    credentials on the bundle's data endpoint."""
    from provisioning import local

    thing = pending["thing"]
    if entry["backend"] == "local":
        b = local.broker(home)
        if not b.running():
            raise ProvisionError("the local broker is not running", "provision broker start", SERVICE_ERROR)
        return StatusWatcher(b, thing)
    cfg = json.loads((Path(pending["next_bundle"]) / contract.CONFIG_FILE).read_text())
    try:
        return lifecycle.AwsListener(cfg["mqtt"]["host"], thing, ROTATION_IDENTITY)
    except ProvisionError as e:
        e.hint += " (nothing went onto the board; the rotation stays staged: run this again, or --abort)"
        raise


def settle(presence, delivered: float, online_at: float, boot=None) -> tuple:
    """Waits until SETTLE_S after online_at, then whether the device stayed connected: (ok, detail).
    presence: a StatusWatcher (local: lifecycle events and the status topic) or an AwsListener."""
    time.sleep(max(0.0, online_at + SETTLE_S - time.monotonic()))
    stayed, detail = lifecycle.stayed_connected(presence.events.snapshot(), delivered, online_at, SETTLE_S)
    if not isinstance(presence, StatusWatcher):
        if stayed is None:  # AWS: nothing else to go by
            return False, detail + ", so it cannot be told that it stayed connected"
        return stayed, detail
    if stayed is False:  # the lifecycle event says why: it comes first
        return stayed, detail
    boot = boot or presence.boot_online(delivered, online_at + 1.0)  # --port: the console named no boot
    will = presence.went_offline(boot, online_at, online_at + SETTLE_S) if boot else None
    if will is not None:
        return False, "its Will (an offline status from boot %s) arrived %.1f s after it came online" % (
            boot, max(0.0, will - online_at))
    if stayed is None and boot:
        return True, ("stayed online for %g s by its status topic (no offline Will from its boot; no lifecycle "
                      "events on this broker)" % SETTLE_S)
    if stayed is None:
        return False, detail + ", so it cannot be told that it stayed connected"
    return stayed, detail


def abort(home, thing: str) -> dict:
    entry = registered(home, thing)
    if not entry.get("pending"):
        return {"thing": thing, "changed": False, "message": "no rotation staged"}
    return backends.get(entry["backend"]).rotate_abort(home, thing, entry["pending"])


class StatusWatcher:
    """The rotation's service identity's view of one device on the local broker: its status topic and
    its lifecycle events."""

    def __init__(self, broker, thing: str, timeout_s: float = 10.0):
        self.topic = contract.topic(thing, contract.STATUS)
        self.events = lifecycle.Events(thing)
        self.messages = []  # (monotonic time, payload dict)
        self._cond = threading.Condition()
        topics = [(self.topic, 1)] + [(t, 1) for t in self.events.topics]  # one SUBACK
        try:
            self.client = broker.service_client(ROTATION_IDENTITY, ROTATION_IDENTITY, topics, self._on_message,
                                                timeout_s)
        except ConnectionError:
            raise ProvisionError("the rotation's service identity could not subscribe on the local broker",
                                 "is it running? provision broker status", NOT_FOUND) from None

    def _on_message(self, client, userdata, msg):
        if msg.topic in self.events.topics:
            self.events.add(msg.topic, msg.payload)
            return
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        with self._cond:
            self.messages.append((time.monotonic(), payload))
            self._cond.notify_all()

    def boot_online(self, since: float, until: float):
        """The boot of the last online status that arrived between since and until, or None."""
        with self._cond:
            boots = [p.get("boot") for t, p in self.messages if since <= t <= until and p.get("online") is True]
        return boots[-1] if boots else None

    def went_offline(self, boot, since: float, until: float) -> float | None:
        """When an offline status (the Will) of that boot arrived between since and until, or None."""
        with self._cond:
            for t, p in self.messages:
                if since <= t <= until and p.get("boot") == boot and p.get("online") is False:
                    return t
        return None

    def boots_seen(self) -> set:
        with self._cond:
            return {p.get("boot") for _, p in self.messages}

    def wait_new_boot_online(self, since: float, known_boots: set, timeout_s: float) -> tuple | None:
        """(arrival time, status) of the first online status from a boot not in known_boots, or None."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for t, p in self.messages:
                    if t >= since and p.get("online") is True and p.get("boot") not in known_boots:
                        return t, p
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def install_and_wait_online(broker, bundle_dir, pending: dict, timeout_s: float, on_installed=None) -> dict | None:
    """Installs the staged files into bundle_dir, waits for the device to come online from a new boot,
    then SETTLE_S more: {status, stayed, detail}, or None when it did not come online in time."""
    from provisioning import bundle

    watcher = StatusWatcher(broker, pending["thing"])
    try:
        time.sleep(0.3)  # the retained status (the current boot) arrives right after SUBACK
        known = watcher.boots_seen()
        installed = time.monotonic()
        bundle.install(pending["next_bundle"], bundle_dir)
        if on_installed:
            on_installed()
        seen = watcher.wait_new_boot_online(installed, known, timeout_s)
        if seen is None:
            return None
        online_at, status = seen
        stayed, detail = settle(watcher, installed, online_at, boot=status.get("boot"))
        return {"status": status, "stayed": stayed, "detail": detail}
    finally:
        watcher.close()
