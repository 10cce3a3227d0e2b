"""POST /devices/{thing}/commands: the API is the sender, so every command it publishes carries
the version 2 fields the device insists on (v, id, issued_at from the API's clock), and nothing
the device would refuse leaves the API."""

from __future__ import annotations

import json
import pathlib
import time

import boto3
import jsonschema
import pytest
import requests

from cloud import resources
from cloud.lambdas import api
from cloud.local.apigw import ApiServer

V2 = json.loads((pathlib.Path(__file__).resolve().parents[3] / "schemas" / "v1" / "command.schema.json").read_text())


@pytest.fixture
def sent(aws, monkeypatch):
    out = []
    monkeypatch.setattr(api, "publish_command", lambda thing, payload: out.append((thing, json.loads(payload))))
    return out


@pytest.fixture
def api_url(aws):
    # m1 is a device the fleet knows (it has sent an event): commands to others are a 404.
    boto3.resource("dynamodb").Table(resources.TABLES["devices"][0]).put_item(Item={"device": "m1", "state": "STOPPED"})
    srv = ApiServer().start()
    yield srv.url
    srv.stop()


def test_the_api_fills_in_version_id_and_issue_time(api_url, sent):
    before = int(time.time() * 1000)
    r = requests.post(api_url + "/devices/m1/commands", json={"cmd": "start"})
    after = int(time.time() * 1000)
    assert r.status_code == 202
    thing, cmd = sent[0]
    assert thing == "m1" and cmd["v"] == 2 and cmd["id"] == r.json()["id"]
    assert before <= cmd["issued_at"] <= after and r.json()["issued_at"] == cmd["issued_at"]
    jsonschema.validate(cmd, V2)


def test_a_command_for_a_device_the_fleet_does_not_know_is_a_404_and_is_not_sent(api_url, sent):
    r = requests.post(api_url + "/devices/m404/commands", json={"cmd": "stop"})
    assert r.status_code == 404, r.text
    assert "no device 'm404'" in r.json()["message"] and "check the name" in r.json()["message"]
    assert sent == []
    # A bad command stays a 400 whatever the device: the body is judged first.
    assert requests.post(api_url + "/devices/m404/commands", json={"cmd": "launch"}).status_code == 400


def test_a_caller_cannot_choose_the_issue_time_or_version(api_url, sent):
    for body in ({"cmd": "start", "issued_at": 4000000000000}, {"cmd": "start", "v": 2}, {"cmd": "stop", "v": 1}):
        r = requests.post(api_url + "/devices/m1/commands", json=body)
        assert r.status_code == 400 and "set by the API" in r.text, r.text
    assert sent == []


@pytest.mark.parametrize("body", [
    {"cmd": "set_speed", "speed": 500},  # beyond the device's bound: refused here, never clamped there
    {"cmd": "set_speed", "speed": 0},
    {"cmd": "set_speed", "speed": 12.5},
    {"cmd": "set_speed", "speed": True},
    {"cmd": "set_speed"},
    {"cmd": "start", "speed": 60},
    {"cmd": "start", "id": "x" * 65},
    {"cmd": "start", "id": "has space"},
    {"cmd": "reboot"},
])
def test_what_a_device_would_refuse_never_leaves_the_api(api_url, sent, body):
    r = requests.post(api_url + "/devices/m1/commands", json=body)
    assert r.status_code == 400 and "invalid command" in r.text, r.text
    assert sent == []


def test_the_device_and_the_schema_agree_on_every_bound():
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "firmware"))
    from motorguard import commands

    props = V2["properties"]
    assert props["v"]["const"] == commands.VERSION
    assert props["speed"]["minimum"] == commands.MIN_SPEED and props["speed"]["maximum"] == commands.MAX_SPEED
    assert props["issued_at"]["minimum"] == commands.MIN_ISSUED_MS
    assert props["issued_at"]["maximum"] == commands.MAX_ISSUED_MS
    assert props["id"]["pattern"] == "^[A-Za-z0-9._:-]{1,%d}$" % commands.MAX_ID
    assert set(props) == set(commands.FIELDS) and set(props["cmd"]["enum"]) == set(commands.CODES)
    assert set(V2["required"]) == {"v", "id", "issued_at", "cmd"}
