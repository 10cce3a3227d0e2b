"""The dashboard in a real browser against the real local stack (tests/dashboard/conftest.py):
sign-in, the fleet and its live updates, Stop and Start on virtual ESP32s, the charts against the
API, strings from devices shown as text, the page under a broken API, and accessibility. Every run
saves a screenshot of each page in build/dashboard-screenshots/."""

from __future__ import annotations

import time

import boto3
import pytest
from playwright.sync_api import expect

from cloud import resources
from dashboard_stack import as_json, api_get, screenshot, sign_in, wait_for

from dashboard_stack import EVIL_DETAIL, EVIL_FW  # noqa: I001 - the constants the evil device sent


def row(page, thing):
    return page.locator('tr[data-device="%s"]' % thing)


def open_device(page, thing):
    page.click('a[href="#/device/%s"]' % thing)
    expect(page.locator("#device-state")).not_to_have_text("…")


def test_without_a_session_the_page_asks_to_sign_in_and_the_api_refuses(page, stack):
    page.goto(stack.dashboard.url)
    expect(page.locator("form.signin")).to_be_visible()
    expect(page.locator("table.fleet")).to_have_count(0)
    screenshot(page, "sign-in")
    assert api_get(stack, "/devices", token="").status_code == 401
    # A wrong password is refused with a clear message, and nothing else is shown.
    page.fill("#username", stack.user)
    page.fill("#password", "not-the-password-1A")
    page.click("form.signin button[type=submit]")
    expect(page.locator("#signin-error")).to_have_text("Wrong user name or password.")
    expect(page.locator("table.fleet")).to_have_count(0)


def test_the_fleet_lists_every_device_with_its_state(signed_in, stack):
    page = signed_in
    for thing in ("motor-001", "motor-002", "motor-003", "evil-001"):
        expect(row(page, thing)).to_be_visible()
    expect(row(page, "motor-002").locator("td").nth(0)).to_have_text("▶ RUNNING")
    expect(row(page, "motor-001").locator("td").nth(0)).to_have_text("■ STOPPED")
    expect(row(page, "motor-002").locator("td").nth(1)).to_have_text("● online")
    expect(row(page, "motor-002").locator("td").nth(3)).to_contain_text("°C")
    # Search and filters work on the rows already drawn.
    page.fill("#search", "motor-00")
    expect(row(page, "evil-001")).to_be_hidden()
    page.select_option("#state-filter", "RUNNING")
    expect(row(page, "motor-001")).to_be_hidden()
    expect(row(page, "motor-002")).to_be_visible()
    expect(page.locator(".count")).to_have_text("Showing 1 of 4 devices.")
    page.fill("#search", "")
    page.select_option("#state-filter", "")
    # The count of rejected messages links to their reasons.
    page.click("button[aria-controls=rejects]")
    expect(page.locator("#rejects h2")).to_have_text("Why messages were rejected")
    screenshot(page, "fleet")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    expect(row(page, "motor-002")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways on a phone"
    screenshot(page, "fleet-phone")


def test_a_fault_on_a_virtual_esp32_appears_on_the_page_within_2_s_of_being_stored(signed_in, stack):
    page = signed_in
    vm = stack.vms["motor-003"]
    devices = boto3.resource("dynamodb").Table(resources.TABLES["devices"][0])
    expect(row(page, "motor-003").locator("td").nth(0)).to_have_text("■ STOPPED")
    vm.force_temperature(75.0)  # past the hard limit: FAULT in any state
    wait_for(lambda: devices.get_item(Key={"device": "motor-003"}).get("Item", {}).get("state") == "FAULT", 10,
             "the FAULT stored")
    stored = time.monotonic()
    expect(row(page, "motor-003").locator("td").nth(0)).to_have_text("⚠ FAULT", timeout=5000)
    shown = time.monotonic() - stored
    assert shown < 2.0, "the FAULT reached the page %.2f s after it was stored" % shown
    expect(row(page, "motor-003").locator("td").nth(5)).to_contain_text("FAULT: overtemp")
    expect(page.locator(".alerts-summary")).to_contain_text("1 device in FAULT")
    screenshot(page, "fleet-fault")
    open_device(page, "motor-003")
    page.click('button[data-range="5m"]')
    expect(page.locator(".alert-banner")).to_contain_text("FAULT latched: overtemp")
    expect(page.locator("ul.alerts")).to_contain_text("FAULT")
    screenshot(page, "device-fault")
    # Reset at the machine, as a person would, for the tests after this one.
    vm.force_temperature(None)
    vm.force_temperature(25.0)
    time.sleep(0.3)
    vm.press("stop")
    vm.wait_for_state("STOPPED", 5)
    vm.force_temperature(None)


def test_stop_on_the_page_stops_a_running_virtual_esp32_and_shows_the_ack(signed_in, stack):
    page = signed_in
    vm = stack.vms["motor-002"]
    if vm.state != "RUNNING":
        vm.press("start")
        vm.wait_for_state("RUNNING", 5)
    open_device(page, "motor-002")
    expect(page.locator("#device-state")).to_have_text("▶ RUNNING")
    # No remote start for this device: Start is not offered at all, and the page says why.
    expect(page.locator("#start")).to_be_hidden()
    expect(page.locator("#start-note")).to_contain_text("not provisioned to accept it")
    assert vm.pwm_duty > 0
    t0 = time.time_ns()
    page.click("#stop")
    latency_s = vm.watch_pwm_off_after(t0, timeout=5) / 1e9
    assert latency_s < 3, latency_s
    expect(page.locator("#command-feedback")).to_contain_text("Stop acknowledged", timeout=10000)
    first = page.locator("table.commands tbody tr").first
    expect(first).to_contain_text("stop")
    expect(first).to_contain_text("%s (dashboard)" % stack.user)
    expect(first).to_contain_text("done")
    expect(page.locator("#device-state")).to_have_text("■ STOPPED", timeout=5000)
    screenshot(page, "device-after-stop")


def test_start_is_offered_only_when_allowed_and_asks_first(signed_in, stack):
    page = signed_in
    vm = stack.vms["motor-001"]
    open_device(page, "motor-001")
    expect(page.locator("#device-state")).to_have_text("■ STOPPED")
    expect(page.locator("#start")).to_be_visible()
    page.click("#start")
    expect(page.locator("#start-dialog")).to_be_visible()
    page.click("#cancel-start")
    assert vm.state == "STOPPED"  # cancelled: nothing was sent
    page.click("#start")
    page.click("#confirm-start")
    vm.wait_for_state("RUNNING", 10)
    expect(page.locator("#command-feedback")).to_contain_text("Start acknowledged", timeout=10000)
    expect(page.locator("#start")).to_be_hidden(timeout=5000)  # RUNNING: no Start
    page.click("#stop")
    vm.wait_for_state("STOPPED", 5)


def test_a_charts_points_are_what_the_api_returns_for_the_same_range(signed_in, stack):
    page = signed_in
    open_device(page, "motor-002")
    page.wait_for_function("() => document.querySelector('#chart-temperature').mgChart.data[0].length >= 30")
    screenshot(page, "device")
    t, temps = page.evaluate("(() => { const d = document.querySelector('#chart-temperature').mgChart.data;"
                             " return [Array.from(d[0]), Array.from(d[1])]; })()")
    first, last = round(t[0] * 1000), round(t[-1] * 1000)
    api = as_json(api_get(stack, "/devices/motor-002/telemetry", **{"from": first, "to": last, "limit": 5000}))
    assert [s["time"] for s in api["samples"]] == [round(x * 1000) for x in t]
    assert [s["temperature_c"] for s in api["samples"]] == temps
    current = page.evaluate("Array.from(document.querySelector('#chart-current').mgChart.data[1])")
    assert [s["current_a"] for s in api["samples"]] == current[:len(api["samples"])]


def test_strings_from_a_device_are_shown_as_text_and_run_nothing(signed_in, stack):
    page = signed_in
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    expect(row(page, "evil-001").locator("td").nth(6)).to_have_text(EVIL_FW)
    open_device(page, "evil-001")
    expect(page.locator("ol.events")).to_contain_text(EVIL_DETAIL)
    expect(page.locator("table.commands")).to_contain_text("<img src=y onerror=window.__pwned=2>refused")
    screenshot(page, "device-hostile-strings")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0 and page.locator("main script, main b").count() == 0
    assert dialogs == []


def test_a_bad_a_slow_and_an_offline_api_each_show_a_clear_message(signed_in, stack):
    page = signed_in
    expect(row(page, "motor-001")).to_be_visible()
    problem = page.locator("div.problem")

    page.route("**/api/devices?*", lambda route: route.fulfill(status=200, body="<html>not json</html>",
                                                                content_type="text/html"))
    expect(problem).to_contain_text("cannot read (not JSON)")
    expect(row(page, "motor-001")).to_be_visible()  # what was shown stays
    page.unroute("**/api/devices?*")
    expect(problem).to_be_hidden()

    page.route("**/api/devices?*", lambda route: route.abort("internetdisconnected"))
    expect(problem).to_contain_text("Cannot reach the API")
    expect(row(page, "motor-001")).to_be_visible()
    page.unroute("**/api/devices?*")
    expect(problem).to_be_hidden()

    slow = []
    page.route("**/api/devices?*", lambda route: slow.append(route))  # never answered: the page's 8 s timeout
    expect(problem).to_contain_text("did not answer within 8 s", timeout=15000)
    expect(row(page, "motor-001")).to_be_visible()
    page.unroute("**/api/devices?*")
    screenshot(page, "fleet-api-timeout")


@pytest.mark.parametrize("view", ["sign-in", "fleet", "device"])
def test_no_serious_or_critical_accessibility_violation(page, stack, view):
    from axe_playwright_python.sync_playwright import Axe

    page.set_default_timeout(15000)
    if view == "sign-in":
        page.goto(stack.dashboard.url)
        page.wait_for_selector("form.signin")
    else:
        sign_in(page, stack)
        if view == "device":
            open_device(page, "motor-001")
            page.wait_for_selector("#chart-temperature canvas")
    found = Axe().run(page).response["violations"]
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in found
               if v["impact"] in ("serious", "critical")]
    assert serious == [], serious
