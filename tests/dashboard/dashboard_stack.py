"""The real local stack for the dashboard's tests and its benchmark: the local IoT Core (broker,
rules engine, Lambdas, moto, the API with its Cognito authorizer), the dashboard server in front,
a signed-up user, and virtual ESP32s running the shipped firmware.

    with DashboardStack(tmp) as stack:
        vm = stack.add_device("motor-001", remote_start=True)
        stack.dashboard.url, stack.user, stack.password, stack.api_token()
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from cloud.tools.demo_fleet import register_thing
from cloud.local.broker import free_port
from cloud.local.core import LocalCore
from cloud.local.dashboard import WEB_DIR, DashboardServer
from provisioning import local as local_backend
from vesp32.harness import VirtualESP32

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MOTORGUARD_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "build" / "dashboard-screenshots"
USER, PASSWORD = "operator", "Operator-pass-1"
ENV_TOUCHED = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
               "MOTORGUARD_LOCAL_BROKER_DIR")


def find_chromium() -> str:
    """Debian's Chromium (make setup installs it). Missing: a failure that says how to get it, never a skip."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    found = shutil.which("chromium")
    if found:
        return found
    raise RuntimeError("no Chromium at %s: the dashboard's browser tests need Debian's chromium "
                       "(make setup installs it as root: apt-get install -y chromium; or set "
                       "MOTORGUARD_CHROMIUM to a Chromium binary)" % CHROMIUM)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("%s not within %.1f s" % (what, timeout))
        time.sleep(0.05)


EVIL_FW = "<img src=x onerror=alert(1)>"  # what the evil device sends: 28 of the schema's 32 characters
EVIL_DETAIL = "<script>window.__pwned=1</script><b>x"


class DashboardStack:
    def __init__(self, home, sample_ms: int = 200):
        self.home = Path(home)
        self.sample_ms = sample_ms
        self.core = self.dashboard = None
        self.dashboard_dir = WEB_DIR
        self.user, self.password = USER, PASSWORD
        self.vms = {}

    def start(self) -> "DashboardStack":
        # The local core points this process's boto3 at its moto server: put it back afterwards.
        self._env = {k: os.environ.get(k) for k in ENV_TOUCHED}
        # moto keeps one in-memory account per process, which every moto server and mock of the test
        # session shares: start from an empty one, not from what earlier tests left in it.
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
        self.core = LocalCore(self.home, broker_port=free_port()).start()
        self.core.users.add_user(self.user, self.password)
        self.dashboard = DashboardServer(self.core.api.url, self.core.users.page_config(), WEB_DIR).start()
        return self

    def add_device(self, thing: str, remote_start: bool = False) -> VirtualESP32:
        r = local_backend.provision_device(self.home, thing, wifi_ssid="lab", wifi_password="secret123",
                                           remote_start=remote_start)
        bundle = Path(r["bundle"])
        cfg = json.loads((bundle / "config.json").read_text())
        cfg["telemetry"] = {"sample_period_ms": self.sample_ms}
        (bundle / "config.json").write_text(json.dumps(cfg))
        register_thing(thing, remote_start)
        vm = VirtualESP32(bundle, firmware_dir=ROOT / "firmware",
                          broker="%s:%d" % (self.core.broker.host, self.core.broker.port))
        vm.start()
        self.vms[thing] = vm
        vm.wait_for_line("MG NET online", 20)
        return vm

    def api_token(self) -> str:
        return self.core.users.sign_in(self.user, self.password)["IdToken"]

    def stop(self):
        for vm in self.vms.values():
            try:
                vm.stop()
            except Exception:  # noqa: BLE001 - stop the rest anyway
                pass
        if self.dashboard:
            self.dashboard.stop()
        if self.core:
            self.core.stop()
        for key, value in getattr(self, "_env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        from cloud.lambdas import common

        common.reset_clients()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ------------------------------------------------------------------ helpers of the browser tests
def sign_in(page, stack):
    page.goto(stack.dashboard.url)
    page.fill("#username", stack.user)
    page.fill("#password", stack.password)
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("table.fleet tbody tr", timeout=15000)


def screenshot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / ("%s.png" % name)), full_page=True)


def api_get(stack, path, token=None, **params):
    import requests

    headers = {"Authorization": token if token is not None else stack.api_token()}
    return requests.get(stack.dashboard.url.rstrip("/") + "/api" + path, params=params, headers=headers, timeout=10)


def as_json(r):
    assert r.status_code == 200, r.text
    return json.loads(r.text)
