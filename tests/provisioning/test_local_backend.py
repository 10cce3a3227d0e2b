"""The local backend through the real `provision` entry point, against the real Mosquitto: a
provisioned virtual ESP32 connects, identities are confined to their own topics, revoked and foreign
certificates are refused, and no key material ever reaches the terminal."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import time
from pathlib import Path

import pytest

from contract import exit_codes

from provisioning import errors, pki
from provisioning.registry import Registry

ROOT = Path(__file__).resolve().parents[2]


def key_markers(bundle: Path) -> list[str]:
    """Strings that would betray the private key if they appeared in any output."""
    der = (bundle / "device.key.der").read_bytes()
    return ["PRIVATE KEY", base64.b64encode(der).decode()[:40], der.hex()[:40]]


def assert_no_key_material(text: str, bundle: Path):
    for marker in key_markers(bundle):
        assert marker not in text


def test_device_bundle_check_and_idempotency(local_broker, home, cli):
    r = cli("device", "motor-001", "--wifi-ssid", "lab", "--wifi-password", "secret123", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    bundle = Path(out["bundle"])
    assert out["changed"] is True and bundle == home / "devices" / "motor-001"
    for name in ("device.key.der", "device.key.pem"):
        assert stat.S_IMODE((bundle / name).stat().st_mode) == 0o600
    cfg = json.loads((bundle / "config.json").read_text())
    assert cfg == {"thing": "motor-001", "mqtt": {"host": "localhost", "port": local_broker.port},
                   "wifi": {"ssid": "lab", "password": "secret123"}}
    cert = pki.load_cert(bundle / "device.crt.der")
    assert cert.subject.rfc4514_string() == "CN=motor-001"
    before = (bundle / "device.crt.der").read_bytes()

    again = cli("device", "motor-001")
    assert again.exit_code == 0 and "already provisioned" in again.output
    assert (bundle / "device.crt.der").read_bytes() == before

    chk = cli("check", "motor-001", "--json")
    assert chk.exit_code == 0, chk.output
    steps = json.loads(chk.stdout)["steps"]
    assert [s["ok"] for s in steps] == [True] * 6  # listener, connect with the Will, telemetry, retained, 2 refusals
    assert_no_key_material(r.output + again.output + chk.output, bundle)


def test_virtual_esp32_runs_on_the_bundle(local_broker, home, cli):
    from vesp32.harness import VirtualESP32

    assert cli("device", "vm-001", "--wifi-ssid", "lab", "--wifi-password", "secret123").exit_code == 0
    got = []
    c = local_broker.service_client("svc-prov-test", topics=[("devices/#", 1)],
                                    on_message=lambda cl, u, m: got.append((m.topic, json.loads(m.payload))))
    # The bundle dir is the board's flash: config.json names localhost and the broker's port.
    vm = VirtualESP32(home / "devices" / "vm-001", firmware_dir=ROOT / "firmware", proxy=False)
    try:
        vm.start()
        vm.wait_for_line("MG NET online", 15)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(t == "devices/vm-001/events" for t, _ in got):
            time.sleep(0.05)
        boot = [m for t, m in got if t == "devices/vm-001/events"]
        assert boot and boot[0]["event"] == "BOOT" and boot[0]["device"] == "vm-001"
    finally:
        vm.stop()
        c.disconnect()
        c.loop_stop()


def test_revoked_certificate_is_refused(local_broker, home, cli):
    assert cli("device", "motor-rv").exit_code == 0
    assert cli("check", "motor-rv").exit_code == 0
    r = cli("revoke", "motor-rv")
    assert r.exit_code == 0 and "revoked" in r.output
    chk = cli("check", "motor-rv")
    assert chk.exit_code == errors.CHECK_FAILED
    assert "FAIL connect" in chk.output
    assert Registry(home).get("motor-rv")["status"] == "REVOKED"
    assert cli("revoke", "motor-rv").output.strip().endswith("already revoked")


def test_certificate_from_another_ca_is_refused(local_broker, home, cli, tmp_path):
    assert cli("device", "motor-fx").exit_code == 0
    bundle = home / "devices" / "motor-fx"
    # Same thing name, same broker, but signed by a CA the broker does not trust.
    ca, ca_key = pki.make_ca("Intruder CA", tmp_path / "intruder")
    creds = pki.issue_client(ca, ca_key, "motor-fx", tmp_path / "intruder-dev")
    shutil.copy(creds["cert_pem"], bundle / "device.crt.pem")
    shutil.copy(creds["key_pem"], bundle / "device.key.pem")
    chk = cli("check", "motor-fx")
    assert chk.exit_code == errors.CHECK_FAILED and "FAIL connect" in chk.output


def test_force_replaces_and_revokes_the_old_certificate(local_broker, home, cli):
    assert cli("device", "motor-fc").exit_code == 0
    old = Registry(home).get("motor-fc")["serial"]
    r = cli("device", "motor-fc", "--force")
    assert r.exit_code == 0 and "provisioned" in r.output
    entry = Registry(home).get("motor-fc")
    assert entry["serial"] != old and old in entry["revoked"]
    assert old in pki.crl_serials(local_broker.crl)
    assert cli("check", "motor-fc").exit_code == 0


def test_rotate_stages_then_commits(local_broker, home, cli):
    assert cli("device", "motor-ro").exit_code == 0
    old = Registry(home).get("motor-ro")["serial"]
    staged = cli("rotate", "motor-ro")
    assert staged.exit_code == 0 and "staged" in staged.output
    assert Registry(home).get("motor-ro")["serial"] == old  # not confirmed: the old one stays
    assert old not in pki.crl_serials(local_broker.crl)
    staged_serial = Registry(home).get("motor-ro")["pending"]["serial"]
    next_dir = home / "devices" / "motor-ro.next"
    assert pki.load_cert(next_dir / "device.crt.der").serial_number == staged_serial
    assert "reused" in cli("rotate", "motor-ro").output  # staging again changes nothing
    assert "ACTIVE+NEXT" in cli("list").output
    forced = cli("rotate", "motor-ro", "--force")
    assert forced.exit_code == 0 and "rotated" in forced.output
    # --force commits the certificate that was staged (and may be on the board), not a fresh one.
    assert Registry(home).get("motor-ro")["serial"] == staged_serial
    assert pki.load_cert(home / "devices" / "motor-ro" / "device.crt.der").serial_number == staged_serial
    assert not next_dir.exists()
    assert old in pki.crl_serials(local_broker.crl)
    assert cli("check", "motor-ro").exit_code == 0


def test_batch_and_list(local_broker, home, cli):
    r = cli("batch", "--count", "3", "--prefix", "line-a")
    assert r.exit_code == 0, r.output
    listed = json.loads(cli("list", "--json").stdout)
    assert [d["thing"] for d in listed] == ["line-a-001", "line-a-002", "line-a-003"]
    table = cli("list").output
    assert "line-a-002" in table and "ACTIVE" in table
    again = cli("batch", "--count", "3", "--prefix", "line-a")
    assert "0 new, 3 already provisioned" in again.output


@pytest.mark.parametrize("args, code, words", [
    (["device", "bad name"], errors.BAD_INPUT, "invalid thing name"),
    (["device", "x" * 129], errors.BAD_INPUT, "invalid thing name"),
    (["device", "motor-1\n"], errors.BAD_INPUT, "invalid thing name"),
    (["device", "motor-1", "--wifi-password", "secret123"], errors.BAD_INPUT, "without --wifi-ssid"),
    (["device", "motor-1", "--wifi-ssid", "lab", "--wifi-password", "short"], errors.BAD_INPUT, "8-63"),
    (["device", "motor-1", "--wifi-ssid", "s" * 33], errors.BAD_INPUT, "1-32 bytes"),
    (["device", "motor-1", "--port", "/dev/ttyNOPE0"], exit_codes.PORT_ABSENT, "does not exist"),
    (["batch", "--count", "0", "--prefix", "p"], errors.BAD_INPUT, "--count"),
    (["batch", "--count", "2", "--prefix", "bad prefix"], errors.BAD_INPUT, "invalid thing name"),
    (["check", "nobody"], errors.NOT_FOUND, "no device"),
    (["revoke", "nobody"], errors.NOT_FOUND, "no device"),
    (["device", "motor-1", "--backend", "gcp"], errors.BAD_INPUT, "invalid choice: 'gcp'"),
    (["device", "motor-1", "--key-type", "dsa"], errors.BAD_INPUT, "invalid choice: 'dsa'"),
    (["device", "motor-1", "--backend", "aws", "--attribute", "novalue"], errors.BAD_INPUT, "KEY=VALUE"),
    (["device", "motor-1", "--root-ca", "/nonexistent/ca.pem"], errors.BAD_INPUT, "does not exist"),
    (["device", "motor-1", "--out", __file__], errors.BAD_INPUT, "is a file"),
    (["check", "bad name"], errors.BAD_INPUT, "invalid thing name"),
    (["revoke", "bad/name"], errors.BAD_INPUT, "invalid thing name"),
    (["rotate", "nobody"], errors.NOT_FOUND, "no device"),
    (["rotate", "nobody", "--wait-online", "0"], errors.BAD_INPUT, "seconds in 1-3600"),
    (["batch", "--count", "10001", "--prefix", "p"], errors.BAD_INPUT, "--count"),
    (["batch", "--count", "2"], errors.BAD_INPUT, "required: --prefix"),
    (["batch", "--count", "2", "--prefix", "x" * 126], errors.BAD_INPUT, "invalid thing name"),
    (["list", "--bogus"], errors.BAD_INPUT, "unrecognized arguments: --bogus"),
    (["--home", __file__, "list"], errors.BAD_INPUT, "is a file"),
    (["rotate"], errors.BAD_INPUT, "required: THING"),
])
def test_bad_input_is_one_line_and_a_code(home, cli, args, code, words):
    r = cli(*args)
    assert r.exit_code == code, r.output
    assert words in r.output
    assert "Traceback" not in r.output


def test_failed_bundle_write_rolls_back(local_broker, home, cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("where the bundle's parent dir should be")
    before = pki.crl_serials(local_broker.crl)
    r = cli("device", "motor-wf", "--out", str(blocker / "bundle"))
    assert r.exit_code == errors.SERVICE_ERROR and "rolled back" in r.output, r.output
    assert Registry(home).get("motor-wf") is None
    assert len(pki.crl_serials(local_broker.crl) - before) == 1  # the certificate this run made


def test_traceback_only_with_debug(home, cli):
    plain = cli("device", "bad name")
    debug = cli("--debug", "device", "bad name")
    assert plain.exit_code == debug.exit_code == errors.BAD_INPUT
    assert "Traceback" not in plain.output and len(plain.output.strip().splitlines()) == 2  # error + hint
    assert "Traceback" in debug.output and "invalid thing name" in debug.output


def test_mpremote_missing(home, cli, monkeypatch):
    monkeypatch.setenv("MOTORGUARD_MPREMOTE", "/nonexistent/mpremote")
    r = cli("device", "motor-1", "--port", "/dev/ttyUSB0")
    assert r.exit_code == errors.MPREMOTE_MISSING and "pip install mpremote" in r.output


def test_port_that_is_not_a_board(home, cli, tmp_path):
    # A path that exists but is no serial device is refused before anything is made or sent, with the
    # board tools' own check and exit code (boardlink).
    from provisioning import local
    from cloud.local.broker import free_port

    local.ca_init(home, free_port())
    port = tmp_path / "ttyFAKE0"
    port.write_bytes(b"")
    r = cli("device", "motor-np", "--port", str(port))
    assert r.exit_code == exit_codes.PORT_UNUSABLE, r.output
    assert "is not a serial device" in r.output and "PORT must be the board's serial device" in r.output
    assert "Traceback" not in r.output
    assert Registry(home).get("motor-np") is None  # refused first: no identity made for a board it cannot reach


def test_rotate_option_conflicts(local_broker, home, cli):
    assert cli("device", "motor-oc").exit_code == 0
    for args, words in ((["--abort", "--force"], "cannot be combined"),
                        (["--port", "/dev/ttyUSB9", "--wait-online", "5"], "pick one")):
        r = cli("rotate", "motor-oc", *args)
        assert r.exit_code == errors.BAD_INPUT and words in r.output, r.output
    r = cli("rotate", "motor-oc", "--port", "/dev/ttyNOPE0")
    assert r.exit_code == exit_codes.PORT_ABSENT and "does not exist" in r.output
    assert "pending" not in Registry(home).get("motor-oc")  # nothing staged by a refused command
    Registry(home).put("motor-aw", {"backend": "aws", "certificate_id": "x", "certificate_arn": "y",
                                    "bundle": str(home / "devices" / "motor-aw"), "status": "ACTIVE"})
    r = cli("rotate", "motor-aw", "--wait-online", "5")
    assert r.exit_code == errors.BAD_INPUT and "--wait-online needs the local broker" in r.output


def test_device_without_a_ca_says_to_create_one(home, cli):
    r = cli("device", "motor-1")
    assert r.exit_code == errors.NOT_FOUND and "provision ca init" in r.output


def test_real_board_push(home, cli):
    import os

    port = os.environ.get("MOTORGUARD_PORT")
    if not port:
        pytest.skip("needs a MicroPython board: set MOTORGUARD_PORT=/dev/ttyUSB0 (copies a bundle onto it)")
    r = cli("device", "hil-bundle", "--port", port)
    assert r.exit_code == 0 and "verified" in r.output
