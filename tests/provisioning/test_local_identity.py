"""What a locally provisioned identity may do on the real Mosquitto: device A stays out of device B's
topics, rotation moves a running virtual ESP32 to a new certificate before the old one is revoked,
and the local broker is driven through the CLI."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from provisioning import errors, pki
from provisioning.registry import Registry
from tests.mqtt_device import Client, can_connect

ROOT = Path(__file__).resolve().parents[2]
PROVISION = str(Path(sys.executable).parent / "provision")


def bundle_of(home, thing) -> Path:
    return home / "devices" / thing


def device_client(broker, home, thing, client_id=None):
    b = bundle_of(home, thing)
    return Client(broker, client_id or thing, b / "device.crt.pem", b / "device.key.pem")


def closed_by_the_broker(c: Client, timeout=3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.disconnected.is_set():
            return True
        time.sleep(0.01)
    return False


def test_device_a_cannot_publish_or_subscribe_to_device_b(local_broker, home, cli):
    """As in AWS IoT Core, each thing the policy forbids closes device A's connection (the local IoT
    Core's gateway), and nothing of it reaches anyone."""
    for thing in ("dev-a", "dev-b"):
        assert cli("device", thing).exit_code == 0
    svc = Client(local_broker, "svc-isolation")
    b = device_client(local_broker, home, "dev-b")
    try:
        assert svc.connected and b.connected
        svc.subscribe("devices/#", "$aws/rules/#")
        b.subscribe("devices/dev-b/cmd")
        forbidden_filters = ["devices/dev-b/cmd", "devices/dev-b/#", "devices/+/telemetry", "#"]
        forbidden = ["devices/dev-b/%s" % t for t in ("telemetry", "events", "status", "ack", "cmd")]
        forbidden += ["devices/dev-a/cmd", "$aws/rules/motorguard_telemetry/devices/dev-b/telemetry",
                      "$aws/rules/motorguard_telemetry/devices/dev-a/telemetry",  # no Basic Ingest any more
                      "devices/dev-a/other", "elsewhere/dev-a"]
        actions = [("subscribe " + f, lambda a, f=f: a.client.subscribe(f, qos=1)) for f in forbidden_filters]
        actions += [("publish " + t, lambda a, t=t: a.client.publish(t, b'{"from":"dev-a"}', qos=1))
                    for t in forbidden]
        for what, action in actions:
            a = device_client(local_broker, home, "dev-a")
            try:
                assert a.connected, what
                action(a)
                assert closed_by_the_broker(a), "the connection stayed up after: %s" % what
            finally:
                a.close()
        a = device_client(local_broker, home, "dev-a")
        try:
            a.publish("devices/dev-a/telemetry", b'{"from":"dev-a"}', wait=True)
            assert not a.disconnected.is_set()
        finally:
            a.close()
        svc.publish("devices/dev-b/cmd", b'{"cmd":"stop"}', wait=True)
        b.publish("devices/dev-b/telemetry", b'{"from":"dev-b"}', wait=True)

        # The allowed traffic arrives; by then the forbidden messages, sent first, have been handled.
        for topic in ("devices/dev-a/telemetry", "devices/dev-b/telemetry"):
            assert svc.wait_for(topic), topic
        assert b.wait_for("devices/dev-b/cmd")
        time.sleep(0.5)
        from_a = [t for t, p in svc.got if p == b'{"from":"dev-a"}']
        assert from_a == ["devices/dev-a/telemetry"]
        assert b.topics() == ["devices/dev-b/cmd"]
    finally:
        for c in (svc, b):
            c.close()


def test_rotation_confirmed_by_a_running_virtual_esp32(local_broker, home, cli, tmp_path):
    from vesp32.harness import VirtualESP32

    thing = "vm-rot"
    assert cli("device", thing, "--wifi-ssid", "lab", "--wifi-password", "secret123").exit_code == 0
    bundle = bundle_of(home, thing)
    old = tmp_path / "old"
    old.mkdir()
    for name in ("device.crt.pem", "device.key.pem"):
        shutil.copy(bundle / name, old / name)
    old_serial = Registry(home).get(thing)["serial"]

    vm = VirtualESP32(bundle, firmware_dir=ROOT / "firmware", proxy=False)
    try:
        vm.start()
        vm.wait_for_line("MG NET online", 15)
        env = dict(os.environ, MOTORGUARD_HOME=str(home))
        proc = subprocess.Popen([PROVISION, "rotate", thing, "--wait-online", "40", "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            old_der = pki.cert_bytes(pki.load_cert(old / "device.crt.pem"), der=True)
            deadline = time.monotonic() + 30
            while (bundle / "device.crt.der").read_bytes() == old_der:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "rotate never installed the new files"
                time.sleep(0.05)
            assert Registry(home).get(thing)["serial"] == old_serial  # not committed before the device is back
            assert old_serial not in pki.crl_serials(local_broker.crl)
            mark = vm.mark()
            vm.reboot()  # the operator restarts the device: it loads the new certificate
            vm.wait_for_line("MG NET online", 15, since=mark)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        r = json.loads(out)
        assert r["committed"] is True and "came online from boot" in r["confirmed"]
        assert "stayed connected for" in r["confirmed"]  # not on the "online" line alone
        entry = Registry(home).get(thing)
        assert entry["serial"] != old_serial and "pending" not in entry
        assert pki.load_cert(bundle / "device.crt.der").serial_number == entry["serial"]
        assert old_serial in pki.crl_serials(local_broker.crl)
        # (The client id must be the thing name, as in AWS; the new connection pushes the board off.)
        assert not can_connect(local_broker, old / "device.crt.pem", old / "device.key.pem", thing)
        assert can_connect(local_broker, bundle / "device.crt.pem", bundle / "device.key.pem", thing)
        key_der = (bundle / "device.key.der").read_bytes()
        for marker in ("PRIVATE KEY", base64.b64encode(key_der).decode()[:40], key_der.hex()[:40]):
            assert marker not in out + err
    finally:
        vm.stop()


def test_rotation_not_confirmed_keeps_both_then_abort_restores(local_broker, home, cli):
    thing = "rot-ab"
    assert cli("device", thing).exit_code == 0
    bundle = bundle_of(home, thing)
    before = (bundle / "device.crt.der").read_bytes()
    old_serial = Registry(home).get(thing)["serial"]
    # Nobody restarts the device: no confirmation, so nothing is revoked.
    r = cli("rotate", thing, "--wait-online", "2")
    assert r.exit_code == errors.CHECK_FAILED and "did not come online" in r.output, r.output
    pending = Registry(home).get(thing)["pending"]
    assert (bundle / "device.crt.der").read_bytes() != before  # the new files are in place
    assert old_serial not in pki.crl_serials(local_broker.crl)
    ab = cli("rotate", thing, "--abort")
    assert ab.exit_code == 0 and "dropped" in ab.output
    assert (bundle / "device.crt.der").read_bytes() == before
    assert pending["serial"] in pki.crl_serials(local_broker.crl)
    assert old_serial not in pki.crl_serials(local_broker.crl)
    assert "pending" not in Registry(home).get(thing)
    assert cli("check", thing).exit_code == 0


def test_broker_start_status_stop_through_the_cli(home, cli):
    from cloud.local.broker import free_port

    port = free_port()
    init = cli("ca", "init", "--port", str(port), "--json")
    assert init.exit_code == 0 and json.loads(init.stdout)["created"] is True
    assert json.loads(cli("ca", "init", "--json").stdout)["created"] is False
    try:
        started = cli("broker", "start")
        assert started.exit_code == 0 and ":%d" % port in started.output, started.output
        st = cli("broker", "status", "--json")
        assert st.exit_code == 0
        status = json.loads(st.stdout)
        assert status["running"] and status["tls_ok"] and status["port"] == port
        # The module's own launcher still reads the same state.
        mod = subprocess.run([sys.executable, "-m", "cloud.local.broker", "status", "--state-dir",
                              str(home / "broker")], capture_output=True, text=True)
        assert mod.returncode == 0 and "tls_ok: True" in mod.stdout
    finally:
        assert cli("broker", "stop").output.strip() == "stopped"
    down = cli("broker", "status")
    assert down.exit_code == errors.SERVICE_ERROR and "running: False" in down.output


def test_broker_start_without_mosquitto_says_how_to_install(home, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("MOTORGUARD_MOSQUITTO", str(tmp_path / "no-mosquitto"))
    r = cli("broker", "start")
    assert r.exit_code == errors.BROKER_MISSING
    assert "apt-get install -y mosquitto" in r.output and "Traceback" not in r.output


def test_no_key_material_in_any_output_or_log(local_broker, home, cli):
    outputs = []

    def run(*args):
        r = cli(*args)
        outputs.append(r.output)
        return r

    assert run("device", "km-1", "--json").exit_code == 0
    assert run("device", "km-1", "--force").exit_code == 0
    assert run("check", "km-1", "--json").exit_code == 0
    assert run("rotate", "km-1", "--force", "--json").exit_code == 0
    assert run("batch", "--count", "2", "--prefix", "km-b", "--json").exit_code == 0
    assert run("list", "--json").exit_code == 0
    assert run("revoke", "km-1", "--json").exit_code == 0
    assert run("--debug", "check", "km-1").exit_code == errors.CHECK_FAILED  # revoked: refused
    assert run("--debug", "device", "bad name").exit_code == errors.BAD_INPUT
    logs = [p.read_text(errors="replace") for p in (home / "broker").glob("mosquitto.*")]
    logs += [(home / "registry.json").read_text(), (home / "broker" / "acl").read_text()]
    text = "\n".join(outputs + logs)
    keys = [p for p in home.rglob("*.key.*")]
    assert len(keys) >= 6  # devices, the service identity, the broker, the CA
    for path in keys:
        data = path.read_bytes()
        der = pki.key_bytes(pki.load_key(path), der=True)
        body = base64.b64encode(der).decode()
        for marker in ("PRIVATE KEY", body[:40], body[-40:], der.hex()[:40]):
            assert marker not in text, "%s leaked from %s" % (marker[:12], path.name)
        assert stat_mode(path) == 0o600, path
        assert data  # the file itself holds the key


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
