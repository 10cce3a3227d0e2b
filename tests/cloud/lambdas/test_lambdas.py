"""The Lambda handlers against moto in server mode (real HTTP): what they store, reject, send."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import requests

from cloud import resources
from cloud.domain import aggregates, history
from cloud.lambdas import aggregate, alert, api, ingest
from cloud.local.apigw import ApiServer, LambdaContext

from messages import as_original, as_rule_output, event, telemetry


def ctx(name="test"):
    return LambdaContext(name)


def items(table):
    return boto3.resource("dynamodb").Table(resources.TABLES[table][0]).scan()["Items"]


def dlq_messages():
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=resources.DEAD_LETTER_QUEUE)["QueueUrl"]
    out = []
    while True:
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not r.get("Messages"):
            return out
        out += [json.loads(m["Body"]) for m in r["Messages"]]


# ------------------------------------------------------------------ ingest
def test_ingest_stores_each_batch_once(aws):
    msg = telemetry(seq=7)
    first = ingest.handler(as_rule_output(msg, "telemetry"), ctx())
    again = ingest.handler(as_rule_output(msg, "telemetry"), ctx())  # MQTT QoS 1 may deliver twice
    assert first["status"] == "stored" and again["status"] == "duplicate"
    rows = items("telemetry")
    assert len(rows) == 1
    row = rows[0]
    assert row["sk"] == history.sort_key(msg["samples"][0]["time"], msg["boot"], 7)
    assert history.samples_of(row) == msg["samples"]
    assert len(row["payload"].value) <= 1024, "a 30-sample batch should fit one DynamoDB write unit"
    assert int(row["expires_at"]) == pytest.approx(time.time() + 7 * 86400, abs=60)


def test_a_history_item_is_its_key_its_payload_and_its_ttl():
    out = as_rule_output(telemetry(seq=4, n=4, temp=30.0), "telemetry")  # 30.0, 30.1, 30.2, then 31.0
    out["samples"][3]["temperature_c"] = 31.0
    raw = json.dumps(out, separators=(",", ":"))
    item, kept = history.telemetry_item(out, 7, raw=raw, now_s=1000)
    assert set(item) == {"device", "sk", "payload", "expires_at"}
    assert item["expires_at"] == 1000 + 7 * 86400 and kept == len(out["samples"])
    assert gzip.decompress(item["payload"]).decode() == raw, "stored as received: no second encoding"
    assert history.first_ms(item) == out["samples"][0]["time"]
    filtered, kept = history.telemetry_item(out, 7, deadband_temp=0.5, raw=raw)
    assert kept == 2 and [s["temperature_c"] for s in history.samples_of(filtered)] == [30.0, 31.0]
    assert history.unpack(filtered["payload"])["seq"] == 4 and filtered["sk"] == item["sk"]


def test_ingest_rejects_invalid_messages_to_the_dead_letter_queue(aws):
    bad = telemetry()
    del bad["seq"]
    r = ingest.handler(as_rule_output(bad, "telemetry"), ctx())
    assert r["status"] == "rejected" and "seq" in r["reason"]
    spoofed = as_rule_output(telemetry(device="m2"), "telemetry")
    spoofed["thing"] = "m1"
    assert ingest.handler(spoofed, ctx())["status"] == "rejected"
    dead = dlq_messages()
    assert len(dead) == 2 and all(d["rejectedBy"] == "ingest" and d["reason"] for d in dead)
    assert [d["code"] for d in dead] == ["schema", "identity"]
    assert "seq" in dead[0]["reason"] and dead[1]["reason"] == "identity: device 'm2' published on 'm1''s topic"
    kept = json.loads(base64.b64decode(dead[0]["payload"]["base64"]))  # a rule output: what the rule delivered
    assert dead[0]["payload"]["source"] == "rule_output" and kept["device"] == "m1" and "seq" not in kept
    assert dead[1]["topic"] == "devices/m1/telemetry" and dead[1]["receivedMs"] == spoofed["received_ms"]
    assert items("telemetry") == []


def sqs_event(*bodies):
    from cloud.local.esm import EventSourceMapping, Message

    return EventSourceMapping("motorguard-telemetry-queue", None).event([Message(b, None, 0) for b in bodies])


def test_ingest_drains_a_queue_batch_once_per_message_and_rejects_the_bad(aws):
    t0 = int(time.time() * 1000) - 60 * 30000  # the last half hour: times ahead of the receive time are rejected
    good = [telemetry(device="m%d" % (i % 3), seq=i, t0=t0 + i * 30000) for i in range(60)]
    bad = telemetry(device="m9")
    bad["samples"][0]["state"] = "DANCING"
    bodies = [json.dumps(as_original(g, "telemetry")) for g in good]  # what the telemetry rule queues
    bodies += [bodies[5], json.dumps(as_original(bad, "telemetry")), "{not json"]  # a duplicate and two rejects
    r = ingest.handler(sqs_event(*bodies), ctx())
    assert r == {"batchItemFailures": []}
    again = ingest.handler(sqs_event(*bodies[:10]), ctx())  # SQS delivers at least once
    assert again == {"batchItemFailures": []}
    rows = items("telemetry")
    assert len(rows) == 60
    stored = [history.unpack(row["payload"]) for row in rows]
    assert sorted((m["device"], m["seq"]) for m in stored) == sorted((g["device"], g["seq"]) for g in good)
    assert all(m == good[m["seq"]] for m in stored), "each payload is the device's message as published"
    dead = dlq_messages()
    assert sorted(d["reason"] for d in dead) == [
        "not_json: the queued body: unexpected character, expected a string key: line 1 column 2 (char 1)",
        'schema: samples/0/state: "DANCING" is not one of "STOPPED", "RUNNING" or "FAULT"']
    kept = sorted(base64.b64decode(d["payload"]["base64"]) for d in dead)
    assert kept == sorted([b"{not json", json.dumps(bad).encode()])
    assert sorted(d["payload"]["source"] for d in dead) == ["original", "rule_output"]


def test_ingest_reports_what_dynamodb_would_not_take_as_batch_item_failures(aws, monkeypatch):
    """DynamoDB hands throttled puts back as UnprocessedItems, which moto never does: a stand-in
    client at that edge, the rest real."""
    from cloud.lambdas import common

    real = common.plain_dynamodb()
    refused = {"m1"}
    calls = []

    class Throttling:
        def batch_write_item(self, RequestItems):
            (name, reqs), = RequestItems.items()
            calls.append(len(reqs))
            take = [r for r in reqs if r["PutRequest"]["Item"]["device"]["S"] not in refused]
            if take:
                real.batch_write_item(RequestItems={name: take})
            back = [r for r in reqs if r["PutRequest"]["Item"]["device"]["S"] in refused]
            return {"UnprocessedItems": {name: back} if back else {}}

    monkeypatch.setattr(ingest, "plain_dynamodb", lambda: Throttling())
    monkeypatch.setattr(ingest.time, "sleep", lambda s: None)
    t0 = int(time.time() * 1000)
    msgs = [as_rule_output(telemetry(device="m%d" % (i % 2), seq=i, t0=t0), "telemetry") for i in range(30)]
    event = sqs_event(*[json.dumps(m) for m in msgs])
    r = ingest.handler(event, ctx())
    failed = {f["itemIdentifier"] for f in r["batchItemFailures"]}
    wanted = {rec["messageId"] for rec, m in zip(event["Records"], msgs) if m["device"] == "m1"}
    assert failed == wanted and len(failed) == 15
    assert calls == [25, 5] + [15] * (ingest.WRITE_ATTEMPTS - 1), "25 at most a call, the refused retried"
    assert sorted(history.unpack(row["payload"])["seq"] for row in items("telemetry")) == list(range(0, 30, 2))


def test_a_queue_batch_whose_table_is_missing_fails_whole(aws, monkeypatch):
    monkeypatch.setenv("TELEMETRY_TABLE", "no-such-table")
    with pytest.raises(Exception, match="ResourceNotFound|non-existent|not found"):
        ingest.handler(sqs_event(json.dumps(as_rule_output(telemetry(), "telemetry"))), ctx())


def test_the_handler_runs_in_a_worker_process_and_its_calls_are_counted(aws):
    from cloud.local.runtime import LambdaProcesses

    t0 = int(time.time() * 1000)
    bodies = [json.dumps(as_rule_output(telemetry(seq=i, t0=t0), "telemetry")) for i in range(40)]
    pool = LambdaProcesses(1)
    try:
        result, ms, usage = pool.invoke(resources.FUNCTIONS["ingest"], "motorguard-ingest", sqs_event(*bodies))
    finally:
        pool.close()
    assert result == {"batchItemFailures": []} and ms > 0
    assert usage["dynamodb_wru"] == 40, usage  # each item is under 1 KB: one write unit
    assert len(items("telemetry")) == 40


def test_deadband_and_ttl_settings(aws, monkeypatch):
    monkeypatch.setenv("DEADBAND_TEMP_C", "0.5")
    monkeypatch.setenv("DEADBAND_CURRENT_A", "0.5")
    monkeypatch.setenv("HISTORY_TTL_DAYS", "1")
    msg = telemetry(n=30, temp=30.0)  # +0.1 C per sample: every 5th sample crosses 0.5 C
    ingest.handler(as_rule_output(msg, "telemetry"), ctx())
    row = items("telemetry")[0]
    kept = history.samples_of(row)
    assert [s["temperature_c"] for s in kept] == [30.0, 30.5, 31.0, 31.5, 32.0, 32.5]
    assert int(row["expires_at"]) == pytest.approx(time.time() + 86400, abs=60)


def test_events_are_stored_once_and_move_latest_state_forward_only(aws):
    t = int(time.time() * 1000)
    started = event(kind="STARTED", seq=1, t=t)
    fault = event(kind="FAULT", seq=2, t=t + 1000)
    ingest.handler(as_original(fault, "events"), ctx())  # the events rule's output
    ingest.handler(as_original(started, "events"), ctx())  # arrives late
    ingest.handler(as_rule_output(fault, "events"), ctx())  # a duplicate, in the rule output of before
    assert len(items("events")) == 2
    dev = items("devices")
    assert len(dev) == 1 and dev[0]["state"] == "FAULT" and dev[0]["reason"] == "overtemp_overcurrent"


# ------------------------------------------------------------------ alert
class Receiver:
    """A webhook receiver standing in for Telegram and Discord (the true edge)."""

    def __init__(self):
        self.posts = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers["Content-Length"])
                outer.posts.append((self.path, json.loads(self.rfile.read(n))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def sns_subscriber_queue():
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    url = sqs.create_queue(QueueName="alert-watch")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name=resources.ALERTS_TOPIC)["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return url


def test_alert_sends_once_per_window_to_sns_telegram_and_discord(aws, receiver, monkeypatch):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:secret-token")
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "42")
    monkeypatch.setenv("TELEGRAM_API_URL", receiver.url)
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", receiver.url + "/discord")
    watch = sns_subscriber_queue()
    first = alert.handler(as_original(event(kind="FAULT"), "events"), ctx())
    second = alert.handler(as_original(event(kind="FAULT", seq=3), "events"), ctx())  # again within the window
    assert first["status"] == "sent" and second["status"] == "suppressed"
    assert first["webhooks"] == {"telegram": True, "discord": True}
    paths = [p for p, _ in receiver.posts]
    assert paths == ["/bot123:secret-token/sendMessage", "/discord"]
    text = receiver.posts[0][1]["text"]
    for words in ("m1", "FAULT", "motor hot and drawing high current", "41.5 C", "2.20 A", "UTC"):
        assert words in text
    msgs = boto3.client("sqs").receive_message(QueueUrl=watch, MaxNumberOfMessages=10)["Messages"]
    assert len(msgs) == 1 and "MotorGuard FAULT on m1" in json.loads(msgs[0]["Body"])["Subject"]
    other = alert.handler(as_original(event(kind="FAULT", reason="overtemp"), "events"), ctx())
    assert other["status"] == "sent"  # a different reason is a different alert


def test_alert_window_expires(aws, monkeypatch):
    monkeypatch.setenv("ALERT_WINDOW_S", "1")
    e = as_original(event(kind="ESTOP"), "events")
    assert alert.handler(e, ctx())["status"] == "sent"
    time.sleep(2.1)
    assert alert.handler(e, ctx())["status"] == "sent"


# ------------------------------------------------------------------ api through real HTTP
@pytest.fixture
def api_url(aws):
    srv = ApiServer().start()
    yield srv.url
    srv.stop()


def seed(n_batches=4, n=30):
    t0 = int(time.time() * 1000) - 3600 * 1000
    ingest.handler(as_rule_output(event(kind="STARTED", seq=0, t=t0 - 10), "events"), ctx())
    for k in range(n_batches):
        ingest.handler(as_rule_output(telemetry(seq=k, n=n, t0=t0 + k * n * 1000), "telemetry"), ctx())
    return t0


def test_api_devices_and_history_pages(api_url):
    t0 = seed()
    devices = requests.get(api_url + "/devices").json()["devices"]
    assert [d["device"] for d in devices] == ["m1"] and devices[0]["state"] == "RUNNING"
    assert devices[0]["latest_sample"]["time"] == t0 + 119 * 1000
    assert requests.get(api_url + "/devices/m1").json()["last_event"] == "STARTED"
    got, nxt, pages_seen = [], None, 0
    while True:
        params = {"from": t0, "to": t0 + 200_000, "limit": 50}
        if nxt:
            params["next"] = nxt
        page = requests.get(api_url + "/devices/m1/telemetry", params=params).json()
        got += page["samples"]
        pages_seen += 1
        nxt = page["next"]
        if not nxt:
            break
    assert pages_seen == 3 and len(got) == 120
    assert [s["time"] for s in got] == [t0 + i * 1000 for i in range(120)]
    window = requests.get(api_url + "/devices/m1/telemetry", params={"from": t0 + 45_000, "to": t0 + 49_000}).json()
    assert [s["time"] for s in window["samples"]] == [t0 + i * 1000 for i in range(45, 50)]
    ev = requests.get(api_url + "/devices/m1/events", params={"from": t0 - 60_000, "to": t0}).json()
    assert [e["event"] for e in ev["events"]] == ["STARTED"]


@pytest.mark.parametrize("path, params, status, words", [
    ("/devices/nobody", {}, 404, "no device"),
    ("/devices/bad name", {}, 400, "invalid thing name"),
    ("/devices/m1/telemetry", {"limit": "lots"}, 400, "'limit' must be an integer"),
    ("/devices/m1/telemetry", {"limit": "0"}, 400, "between"),
    ("/devices/m1/telemetry", {"from": "10", "to": "5"}, 400, "'from' must not be after 'to'"),
    ("/devices/m1/telemetry", {"next": "!!notatoken"}, 400, "not a token"),
    ("/nowhere", {}, 404, ""),
])
def test_api_bad_requests(api_url, path, params, status, words):
    r = requests.get(api_url + path, params=params)
    assert r.status_code == status
    assert words in r.text


def test_api_command_validation(api_url, monkeypatch):
    seed()  # a device the fleet knows (a command for an unknown one is a 404: test_api_commands.py)
    sent = []
    monkeypatch.setattr(api, "publish_command", lambda thing, payload: sent.append((thing, json.loads(payload))))
    r = requests.post(api_url + "/devices/m1/commands", json={"cmd": "set_speed", "speed": 90})
    assert r.status_code == 202 and sent[0][0] == "m1" and sent[0][1]["speed"] == 90 and sent[0][1]["id"]
    assert requests.post(api_url + "/devices/m1/commands", json={"cmd": "launch"}).status_code == 400
    assert requests.post(api_url + "/devices/m1/commands", data="not json").status_code == 400
    assert requests.post(api_url + "/devices/m1/commands", json=["stop"]).status_code == 400
    assert len(sent) == 1


# ------------------------------------------------------------------ aggregate
def test_aggregate_stats_archive_and_rerun(aws):
    hour = "2026-11-20T10"
    start = aggregates.hour_start_ms(hour)
    ingest.handler(as_rule_output(event(kind="BOOT", seq=0, t=start - 5000, state="STOPPED"), "events"), ctx())
    for k in range(4):  # 2 minutes inside the hour, one batch in the next hour
        t0 = start + k * 30_000 if k < 3 else start + 3600 * 1000
        ingest.handler(as_rule_output(telemetry(seq=k, t0=t0, temp=30.0 + k, current=0.5 + k), "telemetry"), ctx())
    r = aggregate.handler({"hour": hour}, ctx())
    res = r["results"][0]
    assert r["devices"] == 1 and res["samples"] == 90
    assert res["temperature_c"] == {"min": 30.0, "max": 34.9, "mean": pytest.approx(32.45, abs=1e-3)}
    assert res["current_a"] == {"min": 0.5, "max": 2.5, "mean": 1.5}
    s3 = boto3.client("s3")
    raw = s3.get_object(Bucket=resources.ARCHIVE_BUCKET, Key="raw/m1/2026/11/20/10.jsonl")["Body"].read().decode()
    assert [json.loads(line)["seq"] for line in raw.splitlines()] == [0, 1, 2]
    agg = json.loads(s3.get_object(Bucket=resources.ARCHIVE_BUCKET, Key="aggregates/m1/2026/11/20/10.json")["Body"].read())
    assert agg["samples"] == 90
    again = aggregate.handler({"hour": hour}, ctx())
    assert again["results"] == r["results"]
    assert len(items("aggregates")) == 1
