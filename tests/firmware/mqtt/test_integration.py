"""The firmware's MQTT client against the local IoT Core (the gateway with mutual TLS and the device
policy, in front of Mosquitto).

Each device is device_script.py running the unchanged firmware module under
MicroPython (DER credentials in memory, as on the ESP32) or CPython (PEM files).
The cloud side is paho-mqtt with the service identity. Thing names are unique
per test and runtime, so retained messages of one test never meet another.
"""

from __future__ import annotations

import time

import pytest

from provisioning import pki

from .conftest import RUNTIMES

pytestmark = pytest.mark.broker


def dev_cfg(broker, thing, creds, steps, **kw):
    c = {"client_id": thing, "host": "localhost", "port": broker.port, "tls": creds, "steps": steps}
    c.update(kw)
    return c


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_publish_subscribe_and_pubacks(runtime, mqtt_broker, device_creds, service, run_device):
    thing = f"rt-{runtime}"
    base = f"devices/{thing}"
    steps = [
        ["will", f"{base}/status", "offline", False, 1],
        ["connect"],
        ["sub", f"{base}/cmd", 1],
        ["start_run"],
        ["ready"],
        ["pub", f"{base}/telemetry", "q0", 0],
        ["pub", f"{base}/telemetry", "q1", 1],
        ["pub", f"{base}/events", "x" * 3000, 1],  # two-byte remaining length, several TLS records
        ["wait_acks", 5000],
        ["wait_rx", 20, 5000],
        ["stats"],
        ["disconnect"],
        ["wait_run", 2000],
    ]
    d = run_device(runtime, dev_cfg(mqtt_broker, thing, device_creds(thing), steps, keepalive=30))
    ready = d.expect("ready")
    assert d.of("connected")[0]["sp"] is False
    assert d.of("suback")[0]["rc"] == 1
    assert ready["t"] < 3000
    for i in range(20):  # a burst of commands: many packets in few TLS records
        service.publish(f"{base}/cmd", b'{"cmd": "stop", "id": "%d"}' % i, qos=1)
    d.finish()
    assert [e["msg"] for e in d.of("rx")] == ['{"cmd": "stop", "id": "%d"}' % i for i in range(20)]
    assert {e["topic"] for e in d.of("rx")} == {f"{base}/cmd"}
    qos1_pids = [e["pid"] for e in d.of("pub") if e["pid"]]
    assert len(qos1_pids) == 2 and sorted(e["pid"] for e in d.of("puback")) == sorted(qos1_pids)
    assert d.of("pub")[0]["pid"] == 0  # QoS 0 has no packet id
    assert d.of("stats")[0]["inflight"] == 0
    assert d.of("run_end")[0]["exc"] is None
    msgs = service.wait_for(lambda m: len([x for x in m if x[0].startswith(base + "/")]) >= 3)
    mine = [(t, p) for t, p, *_ in msgs if t.startswith(base + "/") and not t.endswith("/cmd")]
    assert (f"{base}/telemetry", b"q0") in mine and (f"{base}/telemetry", b"q1") in mine
    assert (f"{base}/events", b"x" * 3000) in mine
    time.sleep(0.3)
    assert not service.on(f"{base}/status"), "a clean DISCONNECT must not fire the will"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_last_will_when_link_drops(runtime, mqtt_broker, device_creds, service, service_observer, run_device):
    thing = f"will-{runtime}"
    status = f"devices/{thing}/status"
    steps = [
        ["will", status, '{"online": false}', True, 1],
        ["connect"],
        ["start_run"],
        ["pub", status, '{"online": true}', 1, True],
        ["wait_acks", 3000],
        ["close"],  # drop the TCP link without DISCONNECT, like a power cut
        ["wait_run", 2000],
    ]
    d = run_device(runtime, dev_cfg(mqtt_broker, thing, device_creds(thing), steps, keepalive=30))
    d.finish()
    assert d.of("acks")[0]["inflight"] == 0
    msgs = service.wait_for(lambda m: any(t == status and p == b'{"online": false}' for t, p, *_ in m))
    assert [p for t, p, *_ in msgs if t == status] == [b'{"online": true}', b'{"online": false}']
    # The will was retained: a service that connects later still sees the device as offline.
    late = service_observer(status)
    try:
        got = late.wait_for(lambda m: m, 3)
        assert got and got[0][1] == b'{"online": false}' and got[0][2] is True
    finally:
        late.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_keepalive_keeps_an_idle_link_up(runtime, mqtt_broker, device_creds, run_device):
    thing = f"ka-{runtime}"
    # Mosquitto drops a client silent for 1.5 x keepalive (1.5 s here); 2.6 s idle must survive.
    steps = [["connect"], ["start_run"], ["sleep", 2600], ["stats"],
             ["pub", f"devices/{thing}/telemetry", "still here", 1], ["wait_acks", 3000], ["disconnect"]]
    d = run_device(runtime, dev_cfg(mqtt_broker, thing, device_creds(thing), steps, keepalive=1, ack_timeout_ms=800))
    d.finish()
    stats = d.of("stats")[0]
    assert stats["connected"] and stats["pings"] >= 3, stats
    assert d.of("acks")[0]["inflight"] == 0 and d.of("disconnected")
    # run() ran through the idle time and ended only with our disconnect(), without an error.
    end = d.of("run_end")
    assert end and end[0]["exc"] is None and end[0]["t"] >= d.of("acks")[0]["t"], d.events


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_policy_confines_a_device_to_its_own_topics(runtime, mqtt_broker, device_creds, service, run_device):
    """Its own command topic and telemetry work; only its own commands reach it."""
    a, b = f"acl-a-{runtime}", f"acl-b-{runtime}"
    device_creds(b)
    steps = [
        ["connect"],
        ["sub", f"devices/{a}/cmd", 1],
        ["start_run"],
        ["pub", f"devices/{a}/telemetry", "genuine", 1],
        ["wait_acks", 3000],
        ["ready"],
        ["wait_rx", 1, 3000],
        ["sleep", 500],
        ["disconnect"],
    ]
    d = run_device(runtime, dev_cfg(mqtt_broker, a, device_creds(a), steps))
    d.expect("ready")
    service.publish(f"devices/{b}/cmd", b"for b only")
    service.publish(f"devices/{a}/cmd", b"for a")
    d.finish()
    assert d.of("acks")[0]["inflight"] == 0
    assert [(e["topic"], e["msg"]) for e in d.of("rx")] == [(f"devices/{a}/cmd", "for a")]
    assert service.wait_for(lambda m: any(t == f"devices/{a}/telemetry" for t, *_ in m))


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("step", [["sub", "devices/{b}/cmd", 1], ["sub", "devices/#", 1],
                                  ["pub", "devices/{b}/telemetry", "forged", 1]])
def test_a_step_outside_the_policy_ends_the_connection(runtime, step, mqtt_broker, device_creds, service, run_device):
    """As AWS IoT Core does: another device's command topic, a wildcard over the fleet, or a publish
    under another device's prefix closes the connection, and nothing forged is delivered."""
    a, b = f"acl-x-{runtime}", f"acl-y-{runtime}"
    device_creds(b)
    bad = [step[0], step[1].format(b=b)] + step[2:]
    steps = [["connect"], ["start_run"], bad, ["wait_acks", 3000], ["sub", f"devices/{a}/cmd", 1], ["ready"]]
    d = run_device(runtime, dev_cfg(mqtt_broker, a, device_creds(a), steps))
    d.finish()
    errors = d.of("error")
    assert errors and errors[0]["step"] in ("sub", "wait_acks", "pub"), d.events
    assert not d.of("ready"), "the connection survived a step outside the policy"
    time.sleep(0.3)
    assert not service.on(f"devices/{b}/telemetry"), "a device wrote under another device's prefix"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_certificate_from_another_ca_is_refused(runtime, mqtt_broker, run_device, tmp_path):
    ca, ca_key = pki.make_ca("Rogue CA", tmp_path)
    creds = {k: str(v) for k, v in pki.issue_client(ca, ca_key, "rogue", tmp_path / "dev").items()}
    # The device trusts the real broker; the broker must not trust the rogue CA's client cert.
    creds["ca_der"] = str(tmp_path / "broker-ca.der")
    pki.write_cert(creds["ca_der"], pki.load_cert(mqtt_broker.ca_cert), der=True)
    creds["ca_pem"] = str(mqtt_broker.ca_cert)
    d = run_device(runtime, dev_cfg(mqtt_broker, "rogue", creds, [["connect", True, 5000]]))
    d.finish()
    err = d.of("error")
    assert err and err[0]["step"] == "connect" and err[0]["type"] != "TimeoutError", d.events
    assert not d.of("connected")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_revoked_certificate_is_refused_after_crl_reload(runtime, mqtt_broker, device_creds, run_device):
    thing = f"revoked-{runtime}"
    creds = device_creds(thing)
    steps = [["connect", True, 5000], ["disconnect"]]
    d = run_device(runtime, dev_cfg(mqtt_broker, thing, creds, steps))
    d.finish()
    assert d.of("connected") and not d.of("error"), d.events
    mqtt_broker.revoke(creds["cert_pem"])  # new CRL + SIGHUP, returns once Mosquitto reloaded
    d = run_device(runtime, dev_cfg(mqtt_broker, thing, creds, steps))
    d.finish()
    assert not d.of("connected"), d.events
    assert d.of("error")[0]["step"] == "connect"
    # Other devices are unaffected by the reload.
    other = f"ok-after-crl-{runtime}"
    d = run_device(runtime, dev_cfg(mqtt_broker, other, device_creds(other), steps))
    d.finish()
    assert d.of("connected"), d.events


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_qos1_burst_reaches_the_service_without_drops(runtime, mqtt_broker, device_creds, service, run_device):
    thing = f"burst-{runtime}"
    n = 400
    steps = [["connect"], ["start_run"], ["pub_many", f"devices/{thing}/telemetry", n, 1], ["wait_acks", 10000],
             ["disconnect"]]
    d = run_device(runtime, dev_cfg(mqtt_broker, thing, device_creds(thing), steps))
    d.finish(30)
    assert d.of("acks")[0]["inflight"] == 0, d.events
    topic = f"devices/{thing}/telemetry"
    service.wait_for(lambda m: len([1 for t, *_ in m if t == topic]) >= n, 10)
    got = [p for t, p, *_ in service.messages if t == topic]
    assert got == [str(i).encode() for i in range(n)]  # all of them, in order
