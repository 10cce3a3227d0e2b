"""The local backend: device identities signed by the local fleet CA, enforced by the local broker.

    from provisioning import local
    local.ca_init(home)                               # once: fleet CA, broker TLS cert, service identity
    result = local.provision_device(home, "motor-001")  # bundle in <home>/devices/motor-001
    local.revoke(home, "motor-001")                   # CRL updated, broker reloaded

The broker (the local IoT Core's, cloud/local/broker.py, reached through provisioning.broker_home)
identifies a device by its certificate's CN and its ACL confines it to devices/<CN>/..., so a device
is registered by the certificate alone; the registry records which certificate is current, and
revocation goes through the CRL.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from provisioning import bundle, current, identity, pki
from provisioning.broker_home import BrokerError, LocalBroker, find_mosquitto
from provisioning.errors import BROKER_MISSING, CONFLICT, NOT_FOUND, SERVICE_ERROR, ProvisionError
from provisioning.registry import Registry, now_iso

DEFAULT_PORT = 8883
BROKER_HOST_NAME = "localhost"  # a name in the broker's certificate, so the device's SNI/hostname check is real


def broker_dir(home) -> Path:
    return Path(home) / "broker"


def ca_init(home, port: int = DEFAULT_PORT) -> dict:
    """Creates the fleet CA and the broker's identity (once); reports what exists otherwise."""
    state = broker_dir(home)
    if (state / "pki").exists():
        b = LocalBroker.from_state_dir(state)
        return {"created": False, "ca": str(b.ca_cert), "broker_dir": str(state), "port": b.port}
    b = LocalBroker.with_new_pki(state, port)
    b.write_config()
    return {"created": True, "ca": str(b.ca_cert), "broker_dir": str(state), "port": b.port}


def broker(home, port: int | None = None) -> LocalBroker:
    state = broker_dir(home)
    if not (state / "pki").exists():
        raise ProvisionError("no local fleet CA in %s" % state, "run: provision ca init", NOT_FOUND)
    b = LocalBroker.from_state_dir(state, port)
    b.update_acl()  # a broker running since before a service identity existed learns its grants
    return b


def broker_start(home, port: int | None = None) -> LocalBroker:
    try:
        find_mosquitto()
    except BrokerError as e:
        raise ProvisionError(str(e), "then run this again", BROKER_MISSING) from None
    if not (broker_dir(home) / "pki").exists():
        ca_init(home, port or DEFAULT_PORT)
    b = broker(home, port)
    if not b.running():
        try:
            b.start()
        except BrokerError as e:
            raise ProvisionError("the local broker did not start: %s" % str(e).splitlines()[0],
                                 "is the port in use? try --port", SERVICE_ERROR) from None
    return b


def provision_device(home, thing: str, out=None, wifi_ssid=None, wifi_password=None, key_type: str = "ec",
                     force: bool = False, remote_start: bool = False, attributes=None, root_ca_pem=None) -> dict:
    """attributes and root_ca_pem are AWS's (thing attributes, Amazon's root CA): the local fleet has
    no thing attributes and its own CA, so they have no meaning here (the CLI says they are aws's)."""
    identity.check_thing(thing)
    identity.check_wifi(wifi_ssid, wifi_password)
    identity.check_key_type(key_type)
    reg = Registry(home)
    b = broker(home)
    out = Path(out).resolve() if out else reg.device_dir(thing)
    entry = reg.get(thing)
    if entry and not force:
        if entry.get("backend") != "local":
            raise ProvisionError("%s is registered with the %s backend" % (thing, entry.get("backend")),
                                 "use --backend %s, or --force to replace it" % entry.get("backend"), CONFLICT)
        if bundle.complete(entry["bundle"]):
            return {"thing": thing, "backend": "local", "changed": False, "bundle": entry["bundle"],
                    "certificate": entry["fingerprint"], "message": "already provisioned (use --force to replace)"}
    if out.exists() and any(out.iterdir()) and not force and not (entry and entry.get("bundle") == str(out)):
        raise ProvisionError("%s exists and is not this device's bundle" % out,
                             "choose another --out, or --force to overwrite it", CONFLICT)

    if entry and entry.get("pending"):  # --force: a half-done rotation goes first
        rotate_abort(home, thing, entry["pending"])
        entry = reg.get(thing)
    key, csr = identity.new_key_and_csr(thing, key_type)
    cert = pki.sign_csr(b.ca_cert, b.ca_key, csr)
    identity.certificate_for_key(pki.cert_bytes(cert).decode(), key)
    cfg = bundle.device_config(thing, BROKER_HOST_NAME, b.port, wifi_ssid, wifi_password, remote_start)
    old = entry.get("serial") if entry and entry.get("backend") == "local" else None
    new_dir = not out.exists()
    try:
        bundle.write(out, cfg, cert, key, b.ca_cert.read_bytes())
        reg.put(thing, {
            "backend": "local",
            "serial": cert.serial_number,
            "fingerprint": identity.fingerprint(cert),
            "bundle": str(out),
            "created": now_iso(),
            "revoked": list(entry.get("revoked", [])) if entry else [],
            "status": "ACTIVE",
        })
    except OSError as e:
        # Undo this run: its bundle goes, its certificate is revoked; an earlier identity is untouched.
        if new_dir:
            shutil.rmtree(out, ignore_errors=True)
        pki.revoke(b.ca_cert, b.ca_key, b.crl, [cert.serial_number])
        raise ProvisionError("could not write the bundle for %s (%s: %s); rolled back: bundle removed, the new "
                             "certificate revoked" % (thing, type(e).__name__, e.strerror or e),
                             "check that %s is writable, or choose another --out" % out.parent, SERVICE_ERROR) from None
    if old is not None and old != cert.serial_number:
        _revoke_serials(home, thing, [old])
    return {"thing": thing, "backend": "local", "changed": True, "bundle": str(out),
            "certificate": identity.fingerprint(cert), "endpoint": "%s:%d" % (BROKER_HOST_NAME, b.port)}


def _revoke_serials(home, thing, serials):
    b = broker(home)
    pki.revoke(b.ca_cert, b.ca_key, b.crl, list(serials))
    if b.running():
        b.reload()
    reg = Registry(home)
    entry = reg.get(thing)
    if entry:
        entry["revoked"] = sorted(set(entry.get("revoked", [])) | set(serials))
        reg.put(thing, entry)


def revoke(home, thing: str) -> dict:
    identity.check_thing(thing)
    reg = Registry(home)
    entry = reg.get(thing)
    if not entry or entry.get("backend") != "local":
        raise ProvisionError("no locally provisioned device %r" % thing, "provision list shows them", NOT_FOUND)
    if entry.get("pending"):  # a staged rotation's certificate goes too
        rotate_abort(home, thing, entry["pending"])
    if entry.get("status") == "REVOKED":
        return {"thing": thing, "changed": False, "message": "already revoked"}
    _revoke_serials(home, thing, [entry["serial"]])
    entry = reg.get(thing)
    entry["status"] = "REVOKED"
    reg.put(thing, entry)
    return {"thing": thing, "changed": True, "serial": entry["serial"]}


def rotate_begin(home, thing: str, key_type: str = "ec") -> dict:
    """A new key and certificate in <bundle>.next; the old certificate stays valid."""
    reg = Registry(home)
    entry = reg.get(thing)
    if not entry or entry.get("backend") != "local":
        raise ProvisionError("no locally provisioned device %r" % thing, "provision list shows them", NOT_FOUND)
    if entry.get("status") == "REVOKED":
        raise ProvisionError("%s is revoked" % thing, "provision device %s --force gives it a new identity" % thing,
                             CONFLICT)
    b = broker(home)
    key, csr = identity.new_key_and_csr(thing, key_type)
    cert = pki.sign_csr(b.ca_cert, b.ca_key, csr)
    current = Path(entry["bundle"])
    cfg = json.loads((current / "config.json").read_text())
    nxt = current.with_name(current.name + ".next")
    bundle.write(nxt, cfg, cert, key, b.ca_cert.read_bytes())
    return {"thing": thing, "backend": "local", "next_bundle": str(nxt), "serial": cert.serial_number,
            "fingerprint": identity.fingerprint(cert), "old_serial": entry["serial"]}


def rotate_commit(home, thing: str, pending: dict) -> dict:
    """The device runs on the new certificate: make it current, revoke the old one (CRL)."""
    current.make_current(home, thing, pending, {"serial": pending["serial"]},
                          lambda: _revoke_serials(home, thing, [pending["old_serial"]]))
    return {"thing": thing, "changed": True, "serial": pending["serial"], "revoked": pending["old_serial"]}


def rotate_abort(home, thing: str, pending: dict) -> dict:
    """Drops a staged rotation: the old files back in place, the new certificate revoked."""
    reg = Registry(home)
    entry = reg.get(thing)
    if entry:
        bundle.restore(entry["bundle"])
    _revoke_serials(home, thing, [pending["serial"]])
    shutil.rmtree(pending["next_bundle"], ignore_errors=True)
    entry = reg.get(thing)
    if entry:
        entry.pop("pending", None)
        reg.put(thing, entry)
    return {"thing": thing, "changed": True, "revoked": pending["serial"]}
