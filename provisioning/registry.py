"""Where provisioning keeps its state: the home directory and the device registry.

    <home>/broker/            the local broker: fleet CA (pki/), config, ACL, CRL, log
    <home>/devices/<thing>/   each device's bundle (unless --out put it elsewhere)
    <home>/registry.json      every device provisioned from this host: backend, certificate, bundle

home: --home, else $MOTORGUARD_HOME, else ~/.motorguard.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from provisioning import identity
from provisioning.errors import NOT_FOUND, ProvisionError


def home_dir(explicit=None) -> Path:
    h = explicit or os.environ.get("MOTORGUARD_HOME") or Path.home() / ".motorguard"
    return Path(h).expanduser().resolve()


class Registry:
    def __init__(self, home):
        self.home = Path(home)
        self.path = self.home / "registry.json"

    def load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"things": {}}

    def save(self, data: dict) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    def get(self, thing: str) -> dict | None:
        return self.load()["things"].get(thing)

    def put(self, thing: str, entry: dict) -> None:
        data = self.load()
        data["things"][thing] = entry
        self.save(data)

    def remove(self, thing: str) -> None:
        data = self.load()
        data["things"].pop(thing, None)
        self.save(data)

    def all(self) -> dict:
        return self.load()["things"]

    def device_dir(self, thing: str) -> Path:
        return self.home / "devices" / thing


def registered(home, thing: str) -> dict:
    """The registry entry of a device provisioned from this host; NOT_FOUND for any other name."""
    identity.check_thing(thing)
    entry = Registry(home).get(thing)
    if not entry:
        raise ProvisionError("no device %r in %s" % (thing, home), "provision list shows them", NOT_FOUND)
    return entry


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
