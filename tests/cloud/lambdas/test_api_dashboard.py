"""The API's routes the dashboard reads (cloud/lambdas/api.py): the fleet a page at a time, alerts,
rejects, hourly aggregates, the commands with their sender and ack, and online/offline. In-process
against moto, through the local API adapter."""

from __future__ import annotations

import json
import time

import boto3
import pytest
import requests

from cloud import resources
from cloud.domain import aggregates, commands, devices, history, rejects
from cloud.lambdas import api
from cloud.local.apigw import ApiServer, LambdaContext, proxy_event


def tbl(logical):
    return boto3.resource("dynamodb").Table(resources.TABLES[logical][0])


@pytest.fixture
def api_url(aws):
    srv = ApiServer().start()
    yield srv.url
    srv.stop()


def add_device(thing, state="STOPPED", event_ms=None, reason=""):
    tbl("devices").put_item(Item={"device": thing, "state": state, "last_event": state, "reason": reason,
                                  "last_event_ms": event_ms or int(time.time() * 1000), "fw": "0.1.0", "boot": "00000001"})


def add_batch(thing, t0, n=10, period_ms=1000, temp=25.0, state="RUNNING", seq=0):
    samples = [{"time": t0 + i * period_ms, "temperature_c": temp + i / 10, "current_a": 0.5, "position": 10.0,
                "speed": 60, "state": state} for i in range(n)]
    msg = {"v": 1, "device": thing, "boot": "00000001", "fw": "0.1.0", "uptime_s": 1, "heap_free": 1, "rssi": -50,
           "seq": seq, "dropped": 0, "samples": samples}
    item, _ = history.telemetry_item(msg, 7)
    tbl("telemetry").put_item(Item=item)
    return samples


def test_devices_come_a_page_at_a_time_each_once(api_url):
    for i in range(7):
        add_device("m%d" % i)
    names, nxt, pages = [], None, 0
    while True:
        page = requests.get(api_url + "/devices", params={"limit": 3, **({"next": nxt} if nxt else {})}).json()
        assert len(page["devices"]) <= 3
        names += [d["device"] for d in page["devices"]]
        pages += 1
        nxt = page["next"]
        if not nxt:
            break
    assert sorted(names) == ["m%d" % i for i in range(7)] and pages >= 3
    for bad in ({"limit": "0"}, {"limit": "501"}, {"next": "eyJkZXZpY2UiOiAiYSBiIn0"}):  # a name no device has
        r = requests.get(api_url + "/devices", params=bad)
        assert r.status_code == 400, bad


def test_a_device_shows_its_state_now_when_it_was_last_seen_and_whether_it_is_online(api_url):
    now = int(time.time() * 1000)
    add_device("m1", "RUNNING", event_ms=now - 20_000)
    add_batch("m1", now - 9_000, n=10, state="RUNNING")
    d = requests.get(api_url + "/devices/m1").json()
    assert d["state_now"] == "RUNNING" and d["last_seen_ms"] == now
    assert d["online"] is True and d["online_from"] == "telemetry" and d["alert"] is None
    assert d["remote_start"] is None  # the registry does not say: the page offers no Start
    # Its own status message wins over the telemetry's age.
    tbl("presence").put_item(Item={"device": "m1", "online": False, "status_ms": now})
    d = requests.get(api_url + "/devices/m1").json()
    assert d["online"] is False and d["online_from"] == "status"
    # A FAULT event newer than the samples is the state now, and an alert.
    add_device("m1", "FAULT", event_ms=now + 1, reason="overtemp")
    d = requests.get(api_url + "/devices/m1").json()
    assert d["state_now"] == "FAULT" and d["alert"]["reason"] == "overtemp"
    boto3.client("iot").create_thing(thingName="m1", attributePayload={"attributes": {"remote_start": "true"}})
    assert requests.get(api_url + "/devices/m1").json()["remote_start"] is True


def test_telemetry_older_than_three_batches_means_offline():
    now = 1_800_000_000_000
    batch = [{"time": now - 100_000 + i * 1000} for i in range(30)]  # a 30 s batch, last sample 71 s old
    assert devices.online_of(None, batch, now) == (True, "telemetry")
    assert devices.online_of(None, batch, now + 30_000) == (False, "telemetry")
    assert devices.online_of(None, [], now) == (None, "unknown")


def test_alerts_list_the_devices_whose_fault_is_latched(api_url):
    add_device("ok-1", "RUNNING")
    add_device("hot-1", "FAULT", reason="overtemp", event_ms=1_800_000_000_000)
    add_device("hot-2", "FAULT", reason="overcurrent")
    alerts = requests.get(api_url + "/alerts").json()["alerts"]
    assert [(a["device"], a["reason"]) for a in alerts] == [("hot-1", "overtemp"), ("hot-2", "overcurrent")]
    assert alerts[0]["since_ms"] == 1_800_000_000_000


def test_rejects_count_the_dead_letter_queue_and_say_why(api_url, aws):
    sqs = boto3.client("sqs")
    url = aws.arns["dead_letter_queue_url"]
    sqs.send_message(QueueUrl=url, MessageBody=rejects.envelope("schema: seq: -1 is less than 0", "ingest", thing="m1",
                                                                kind="telemetry", received_ms=1, rejected_ms=2,
                                                                original=b"{}"))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"ruleName": "motorguard_events", "topic": "devices/m1/events",
                                                           "failures": [{"errorMessage": "AccessDenied"}]}))
    sqs.send_message(QueueUrl=url, MessageBody="<html>")
    assert requests.get(api_url + "/rejects", params={"limit": 0}).json() == {"count": 3, "rejects": []}
    got = requests.get(api_url + "/rejects").json()
    assert got["count"] == 3
    by_kind = {r["kind"]: r for r in got["rejects"]}
    assert by_kind["reject"]["code"] == "schema" and by_kind["reject"]["thing"] == "m1"
    assert by_kind["rule_error"]["reason"] == "AccessDenied" and by_kind["unknown"]["code"] == "unreadable"
    # Reading them took nothing away.
    assert requests.get(api_url + "/rejects", params={"limit": 0}).json()["count"] == 3


def test_hourly_aggregates_stored_and_for_the_hours_not_done_yet(api_url):
    now = int(time.time() * 1000)
    old_hour = aggregates.hour_of(now - 5 * aggregates.HOUR_MS)
    tbl("aggregates").put_item(Item=history.to_dynamo({"device": "m1", "sk": old_hour, "samples": 3600,
                                                       "temperature_c": {"min": 20.0, "max": 30.0, "mean": 25.0},
                                                       "current_a": {"min": 0.1, "max": 0.9, "mean": 0.5}}))
    add_batch("m1", now - 60_000, n=10, temp=40.0)  # this hour: no job has run yet
    hours = requests.get(api_url + "/devices/m1/aggregates", params={"from": now - 6 * aggregates.HOUR_MS}).json()["hours"]
    assert [h["hour"] for h in hours] == [old_hour, aggregates.hour_of(now)]
    assert hours[0]["temperature_c"]["mean"] == 25.0
    assert hours[1]["samples"] == 10 and hours[1]["temperature_c"]["min"] == 40.0
    r = requests.get(api_url + "/devices/m1/aggregates", params={"from": 0, "to": now})
    assert r.status_code == 400 and "at most 31 days" in r.text


def test_commands_show_who_sent_them_and_what_the_device_answered(aws, monkeypatch):
    monkeypatch.setattr(api, "publish_command", lambda thing, payload: None)
    add_device("m1")

    def post(body, request_context):
        event = proxy_event("POST", "/devices/m1/commands", {"Content-Type": "application/json"}, json.dumps(body).encode())
        event["requestContext"].update(request_context)
        return api.handler(event, LambdaContext("motorguard-api"))

    r1 = post({"cmd": "stop", "id": "c-1"}, {"identity": {"userArn": "arn:aws:iam::123456789012:user/ops"}})
    r2 = post({"cmd": "set_speed", "speed": 90, "id": "c-2"}, {"authorizer": {"claims": {"cognito:username": "ana"}}})
    assert r1["statusCode"] == 202 and r2["statusCode"] == 202
    # The device's ack of c-1, as the ack rule stores it (cloud/domain/commands.py ACK_RULE).
    tbl("commands").put_item(Item={"device": "m1", "sk": commands.ack_sk("c-1"), "id": "c-1", "ok": True,
                                   "result": "stopped", "state": "STOPPED", "acked_ms": 5})
    event = proxy_event("GET", "/devices/m1/commands", {}, b"")
    out = json.loads(api.handler(event, LambdaContext("motorguard-api"))["body"])
    by_id = {c["id"]: c for c in out["commands"]}
    assert [c["id"] for c in out["commands"]][0] == "c-2"  # newest first
    assert by_id["c-1"]["sender"] == "arn:aws:iam::123456789012:user/ops" and by_id["c-1"]["auth"] == "sigv4"
    assert by_id["c-1"]["ack"] == {"ok": True, "result": "stopped", "state": "STOPPED", "acked_ms": 5}
    assert by_id["c-2"]["sender"] == "ana" and by_id["c-2"]["auth"] == "cognito" and by_id["c-2"]["ack"] is None
    assert by_id["c-2"]["speed"] == 90


def test_every_answer_forbids_caching(api_url):
    assert requests.get(api_url + "/devices").headers["Cache-Control"] == "no-store"
