"""Lifecycle events read as AWS IoT Core publishes them (recorded payloads, in AWS's format): a refusal
told from a takeover by the check's own session, out-of-order and late events, a device that stayed
connected on its new certificate and one that did not; and the AWS listener built with the installed
awsiotsdk (SigV4 over WebSocket)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from provisioning import errors, lifecycle
from provisioning.errors import ProvisionError

THING = "motor-001"
CONNECTED_TOPIC, DISCONNECTED_TOPIC = lifecycle.topics(THING)


def connected(session: str, ts: int = 1765000000000) -> bytes:
    return json.dumps({"clientId": THING, "timestamp": ts, "eventType": "connected", "sessionIdentifier": session,
                       "principalIdentifier": "a3f5c0ffee", "ipAddress": "192.0.2.10", "versionNumber": 0}).encode()


def disconnected(session: str, reason: str, ts: int = 1765000001000) -> bytes:
    return json.dumps({"clientId": THING, "timestamp": ts, "eventType": "disconnected", "sessionIdentifier": session,
                       "principalIdentifier": "a3f5c0ffee", "clientInitiatedDisconnect":
                       reason == "CLIENT_INITIATED_DISCONNECT", "disconnectReason": reason,
                       "versionNumber": 0}).encode()


def ev(payload: bytes, at: float) -> lifecycle.Event:
    e = lifecycle.parse(payload, at)
    assert e is not None
    return e


def test_topics_are_awss():
    assert (CONNECTED_TOPIC, DISCONNECTED_TOPIC) == ("$aws/events/presence/connected/motor-001",
                                                     "$aws/events/presence/disconnected/motor-001")


def test_parse_keeps_events_and_drops_anything_else():
    e = ev(disconnected("s1", "AUTH_ERROR"), 3.0)
    assert (e.kind, e.session, e.reason, e.arrived) == ("disconnected", "s1", "AUTH_ERROR", 3.0)
    assert ev(connected("s1"), 1.0).reason is None
    for junk in (b"not json", b"[]", b'{"eventType": "subscribed", "sessionIdentifier": "s"}',
                 b'{"eventType": "connected"}', b'{"eventType": "connected", "sessionIdentifier": ""}', None):
        assert lifecycle.parse(junk, 0.0) is None


def test_events_take_only_this_client_ids_topics():
    events = lifecycle.Events(THING)
    events.add("$aws/events/presence/connected/motor-002", connected("x"))
    events.add("devices/motor-001/status", connected("y"))
    other = json.loads(connected("z"))
    other["clientId"] = "motor-002"  # on this client's topic, but not about it
    events.add(CONNECTED_TOPIC, json.dumps(other).encode())
    events.add(CONNECTED_TOPIC, connected("s1"))
    assert [e.session for e in events.snapshot()] == ["s1"]


def test_a_refusal_is_told_by_the_checks_own_session():
    events = [ev(connected("old"), 0.2), ev(disconnected("old", "AUTH_ERROR"), 0.3),  # before the check began
              ev(connected("check"), 1.1), ev(disconnected("check", "AUTH_ERROR"), 2.0)]
    end = lifecycle.ending(events, began=1.0)
    assert end.kind == "refused" and end.reason == "AUTH_ERROR" and end.session == "check"
    forbidden = [ev(connected("check"), 1.1), ev(disconnected("check", "FORBIDDEN_ACCESS"), 2.0)]
    assert lifecycle.ending(forbidden, began=1.0).kind == "refused"


def test_a_takeover_by_the_live_device_is_not_a_refusal():
    # The check pushes the live device off (its session ends DUPLICATE_CLIENTID), the device comes back
    # and pushes the check off. Only the second is about the check's connection.
    events = [ev(disconnected("device-1", "DUPLICATE_CLIENTID"), 1.05), ev(connected("check"), 1.06),
              ev(connected("device-2"), 1.9), ev(disconnected("check", "DUPLICATE_CLIENTID"), 1.91)]
    end = lifecycle.ending(events, began=1.0)
    assert end.kind == "takeover" and end.session == "check" and "the device is online" in end.detail
    # Had the device's own end been taken for the check's, a refusal would have looked like a takeover:
    refused = events[:2] + [ev(disconnected("check", "AUTH_ERROR"), 1.5)]
    assert lifecycle.ending(refused, began=1.0).kind == "refused"


def test_out_of_order_and_twice_delivered_events():
    events = [ev(disconnected("check", "AUTH_ERROR"), 1.2), ev(connected("check"), 1.3),
              ev(connected("check"), 1.4), ev(disconnected("check", "AUTH_ERROR"), 1.5)]
    assert lifecycle.ending(events, began=1.0).kind == "refused"
    assert lifecycle.ending(events[:1], began=1.0) is None  # its session not known yet: undecided


def test_a_late_event_of_the_checks_previous_connection_is_not_taken_for_the_next():
    # Connection 1 (session c1) was judged already; its connected event arrives again, late, after
    # connection 2 began. Connection 2 is c2.
    events = [ev(connected("c1"), 2.1), ev(connected("c2"), 2.2), ev(disconnected("c2", "AUTH_ERROR"), 2.5)]
    assert lifecycle.ending(events, began=2.0) is None  # c1 taken for the connection: its end never comes
    end = lifecycle.ending(events, began=2.0, earlier={"c1"})
    assert end.kind == "refused" and end.session == "c2"


def test_another_reason_is_neither_refusal_nor_takeover():
    events = [ev(connected("check"), 1.1), ev(disconnected("check", "MQTT_KEEP_ALIVE_TIMEOUT"), 9.0)]
    end = lifecycle.ending(events, began=1.0)
    assert end.kind == "other" and "MQTT_KEEP_ALIVE_TIMEOUT" in end.detail


def test_no_event_in_time_is_said_honestly():
    events = lifecycle.Events(THING)
    end = lifecycle.wait_ending(events, time.monotonic(), timeout_s=0.1)
    assert end.kind == "unknown" and "no connected lifecycle event" in end.detail
    assert "a refusal cannot be told from a takeover" in end.detail
    began = time.monotonic()
    events.add(CONNECTED_TOPIC, connected("check"))
    end = lifecycle.wait_ending(events, began, timeout_s=0.1)
    assert end.kind == "unknown" and end.session == "check" and "no disconnected lifecycle event" in end.detail


def test_wait_ending_wakes_when_the_event_arrives():
    events = lifecycle.Events(THING)
    began = time.monotonic()
    events.add(CONNECTED_TOPIC, connected("check"))
    later = threading.Timer(0.2, events.add, (DISCONNECTED_TOPIC, disconnected("check", "AUTH_ERROR")))
    later.start()
    t = time.monotonic()
    end = lifecycle.wait_ending(events, began, timeout_s=5)
    assert end.kind == "refused" and time.monotonic() - t < 2


# ------------------------------------------------------------------ rotation: did it stay connected?

DELIVERED = 10.0  # the new files went out


def test_a_device_that_stayed_connected():
    events = [ev(disconnected("old", "CONNECTION_LOST"), 12.0),  # its old boot, reset to load the new files
              ev(connected("new"), 13.0)]
    ok, detail = lifecycle.stayed_connected(events, DELIVERED, online_at=13.2, settle_s=5)
    assert ok is True and "stayed connected for 5 s" in detail


def test_the_new_connection_pushing_the_old_one_off_is_fine():
    events = [ev(connected("new"), 13.0), ev(disconnected("old", "DUPLICATE_CLIENTID"), 13.01)]
    assert lifecycle.stayed_connected(events, DELIVERED, online_at=13.1, settle_s=5)[0] is True


def test_an_old_boot_that_reconnected_before_the_restart_is_not_the_new_session():
    events = [ev(connected("old-again"), 11.0), ev(disconnected("old-again", "CONNECTION_LOST"), 20.0),
              ev(connected("new"), 22.0)]
    assert lifecycle.stayed_connected(events, DELIVERED, online_at=22.3, settle_s=5)[0] is True


def test_a_policy_refusal_right_after_online_is_caught():
    # What the board does in AWS without iot:RetainPublish: it prints online, its retained status is
    # denied, AWS closes the connection; it backs off and tries again, and again.
    events = [ev(connected("n1"), 13.0), ev(disconnected("n1", "AUTH_ERROR"), 13.1), ev(connected("n2"), 14.0),
              ev(disconnected("n2", "AUTH_ERROR"), 14.1)]
    ok, detail = lifecycle.stayed_connected(events, DELIVERED, online_at=13.05, settle_s=5)
    assert ok is False and "AUTH_ERROR" in detail


def test_a_connection_lost_in_the_settle_window_is_not_confirmed():
    events = [ev(connected("new"), 13.0), ev(disconnected("new", "CONNECTION_LOST"), 15.0)]
    ok, detail = lifecycle.stayed_connected(events, DELIVERED, online_at=13.1, settle_s=5)
    assert ok is False and "ended 1.9 s after it came online: CONNECTION_LOST" in detail


def test_a_reconnect_in_the_settle_window_is_not_confirmed():
    events = [ev(connected("new"), 13.0), ev(connected("again"), 16.0)]
    ok, detail = lifecycle.stayed_connected(events, DELIVERED, online_at=13.1, settle_s=5)
    assert ok is False and "connected again" in detail


def test_what_happens_after_the_window_does_not_count():
    events = [ev(connected("new"), 13.0), ev(disconnected("new", "CLIENT_INITIATED_DISCONNECT"), 30.0)]
    assert lifecycle.stayed_connected(events, DELIVERED, online_at=13.1, settle_s=5)[0] is True


def test_without_a_connected_event_it_cannot_tell():
    ok, detail = lifecycle.stayed_connected([], DELIVERED, online_at=13.1, settle_s=5)
    assert ok is None and "no lifecycle event" in detail
    before = [ev(connected("old"), 5.0)]  # before the files went out: the old boot
    assert lifecycle.stayed_connected(before, DELIVERED, online_at=13.1, settle_s=5)[0] is None


# ------------------------------------------------------------------ the listener in AWS


def test_region_of_the_data_endpoint():
    assert lifecycle.region_of("a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com") == "eu-west-1"
    assert lifecycle.region_of("localhost") is None
    assert lifecycle.region_of("iot.example.com") is None


@pytest.fixture
def aws_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDLISTENERTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "listener-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))


def test_the_listener_is_a_signed_websocket_built_by_the_installed_sdk(aws_credentials):
    import boto3
    from awscrt import mqtt

    endpoint = "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
    conn = lifecycle.aws_connection(endpoint, "motorguard-provision-check-0a1b2c3d")
    assert isinstance(conn, mqtt.Connection)
    assert (conn.host_name, conn.port, conn.client_id) == (endpoint, 443, "motorguard-provision-check-0a1b2c3d")
    assert conn.clean_session is True and conn.will is None
    creds = lifecycle._crt_credentials(boto3.Session())
    assert creds.access_key_id == "AKIDLISTENERTEST" and creds.secret_access_key == "listener-secret"


def test_the_listener_without_credentials_says_so(monkeypatch, tmp_path, aws_credentials):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ProvisionError) as e:
        lifecycle.aws_connection("x-ats.iot.us-east-1.amazonaws.com", "motorguard-provision-check-1")
    assert e.value.code == errors.NO_CREDENTIALS


def test_a_listener_without_a_region_says_so(aws_credentials):
    with pytest.raises(ProvisionError) as e:
        lifecycle.aws_connection("127.0.0.1", "motorguard-provision-check-1")
    assert e.value.code == errors.NO_CREDENTIALS and "AWS_REGION" in e.value.hint


def test_a_listener_that_cannot_connect_names_the_endpoint_and_the_permissions(aws_credentials, monkeypatch):
    from cloud.local.broker import free_port

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()  # nothing listens there
    with pytest.raises(ProvisionError) as e:
        lifecycle.AwsListener("127.0.0.1", THING, "motorguard-provision-check", port=port, timeout_s=5)
    assert "127.0.0.1:%d" % port in e.value.message and e.value.code == errors.SERVICE_ERROR
    assert "iot:Subscribe on topicfilter/$aws/events/presence/*/<thing>" in e.value.hint
    assert "listener-secret" not in e.value.message + e.value.hint
