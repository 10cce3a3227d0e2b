"""The dashboard's tests run Debian's Chromium headless (Playwright, executable_path) against the
real local stack: broker, gateway, rules engine, Lambdas, moto (with the Cognito user pool), the
API and the dashboard server, and virtual ESP32s running the shipped firmware.

stack      (package) DashboardStack with four devices (stopped after the package's last test, so that
           its virtual ESP32s and its engine never run beside the other tests):
           motor-001  remote start allowed, left STOPPED
           motor-002  no remote start, RUNNING (the Stop test stops it)
           motor-003  no remote start, STOPPED (the FAULT test overloads it)
           evil-001   a paho client with its own certificate whose messages carry HTML and script
signed_in  (function) a page (a fresh browser context) signed in as the stack's user
screenshot(page, name)   saves build/dashboard-screenshots/<name>.png (every run; look at them)

A machine without Chromium fails these tests with a message saying how to install it: they are
part of make test, which installs it (scripts/setup.sh).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_stack import EVIL_DETAIL, EVIL_FW, DashboardStack, find_chromium, sign_in  # noqa: E402


@pytest.fixture(scope="package")
def browser():
    """Debian's Chromium, headless (never Playwright's download), for these tests only: Playwright's
    sync API holds an asyncio loop on the main thread while it runs, which would break every later
    test that starts a loop of its own, so it stops when the package's last test is done (the pytest-
    playwright plugin's session-long browser is off: pyproject addopts)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=find_chromium(), headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A fresh browser context and page per test."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    with DashboardStack(tmp_path_factory.mktemp("dashboard-home")) as s:
        s.add_device("motor-001", remote_start=True)
        vm2 = s.add_device("motor-002")
        s.add_device("motor-003")
        vm2.press("start")
        vm2.wait_for_state("RUNNING", 5)
        s.evil = evil_device(s)
        wait_until_listed(s, ["motor-001", "motor-002", "motor-003", "evil-001"])
        yield s
        s.evil.close()


def evil_device(stack):
    """A device whose strings carry HTML and script: a BOOT event, and the ack of a command."""
    import requests

    from contract import topic

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cloud"))
    from devices import Publisher

    dev = Publisher(stack.core.broker, "evil-001")
    now = int(time.time() * 1000)
    dev.publish_acked(topic("evil-001", "events"), {
        "v": 1, "device": "evil-001", "boot": "0badf00d", "fw": EVIL_FW, "uptime_s": 1, "heap_free": 1000, "rssi": -50,
        "seq": 0, "dropped": 0, "time": now, "event": "BOOT", "state": "STOPPED", "detail": EVIL_DETAIL,
        "temperature_c": 20.0, "current_a": 0.0})
    wait_until_listed(stack, ["evil-001"])
    r = requests.post(stack.core.api.url + "/devices/evil-001/commands", json={"cmd": "stop", "id": "evil-cmd-1"})
    assert r.status_code == 202, r.text
    dev.publish_acked(topic("evil-001", "ack"), {
        "v": 1, "device": "evil-001", "boot": "0badf00d", "id": "evil-cmd-1", "cmd": "stop", "ok": False,
        "result": "<img src=y onerror=window.__pwned=2>refused", "state": "STOPPED"})
    return dev


def wait_until_listed(stack, things, timeout=20):
    import requests

    deadline = time.monotonic() + timeout
    while True:
        listed = {d["device"] for d in requests.get(stack.core.api.url + "/devices?limit=500").json()["devices"]}
        if set(things) <= listed:
            return
        assert time.monotonic() < deadline, "devices %s not listed by the API within %d s" % (things, timeout)
        time.sleep(0.1)


@pytest.fixture
def signed_in(page, stack):
    page.set_default_timeout(15000)
    sign_in(page, stack)
    return page
