"""Committing a certificate rotation, the step both backends share: the staged bundle becomes the
device's current one. Below the backends (aws.py, local.py) and the rotation (rotation.py), which
all call it, so none of them imports another to get it."""

from __future__ import annotations

import shutil
from pathlib import Path

from provisioning import bundle
from provisioning.registry import Registry, now_iso


def make_current(home, thing: str, pending: dict, certificate: dict, revoke_old) -> None:
    """What committing a rotation means in either backend: the staged files in place (if the
    device does not hold them yet), the new certificate recorded as the thing's current one
    (certificate: the backend's own fields for it, e.g. its serial or its AWS id and ARN), then
    revoke_old() (each backend revokes in its own way), and the staged and previous files gone."""
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
