"""The local API (cloud/local/apigw.py) and its one seam with the api handler: while the server runs,
the handler's commands go to the local broker as the API's service identity (cloud/local/publish.py),
and once it stops the handler is as it ships, publishing through iot-data. The handler itself
never reaches for local code."""

from __future__ import annotations

import json
import threading

import requests

from cloud.lambdas import api
from cloud.local.apigw import ApiServer

from devices import Publisher


def test_the_handler_ships_with_iot_data_as_its_publisher(monkeypatch):
    sent = []
    monkeypatch.setattr(api, "client", lambda service: type("IotData", (), {
        "publish": staticmethod(lambda **kw: sent.append((service, kw)))})())
    assert api.publisher is api.iot_publish
    api.publish_command("m1", '{"cmd": "stop"}')
    assert sent == [("iot-data", {"topic": "devices/m1/cmd", "qos": 1, "payload": b'{"cmd": "stop"}'})]


def test_while_the_local_api_runs_a_command_reaches_the_device_through_the_local_broker(aws, broker, monkeypatch):
    monkeypatch.delenv("MOTORGUARD_LOCAL_BROKER_DIR", raising=False)
    device = Publisher(broker, "m1")  # the device may subscribe to its own command topic
    got, arrived, subscribed = [], threading.Event(), threading.Event()
    device.client.on_message = lambda c, u, m: (got.append((m.topic, json.loads(m.payload))), arrived.set())
    device.client.on_subscribe = lambda *a: subscribed.set()
    device.client.subscribe("devices/m1/cmd", qos=1)
    assert subscribed.wait(5), "no SUBACK"
    import boto3

    from cloud import resources

    boto3.resource("dynamodb").Table(resources.TABLES["devices"][0]).put_item(Item={"device": "m1", "state": "STOPPED"})
    srv = ApiServer(broker_dir=str(broker.state_dir)).start()
    try:
        assert api.publisher is not api.iot_publish
        r = requests.post(srv.url + "/devices/m1/commands", json={"cmd": "start", "id": "local-1"})
        assert r.status_code == 202 and r.json()["topic"] == "devices/m1/cmd"
        assert arrived.wait(5), "no command on the device's topic"
        (topic, cmd), = got
        assert topic == "devices/m1/cmd" and cmd["id"] == "local-1" and cmd["v"] == 2 and cmd["cmd"] == "start"
    finally:
        srv.stop()
        device.close()
    assert api.publisher is api.iot_publish, "the handler is as it ships again"


def test_without_a_broker_the_local_api_leaves_the_publisher_alone(aws, monkeypatch):
    monkeypatch.delenv("MOTORGUARD_LOCAL_BROKER_DIR", raising=False)
    srv = ApiServer().start()
    try:
        assert api.publisher is api.iot_publish
    finally:
        srv.stop()


class Verifier:
    """A stand-in for cloud/local/cognito.py TokenVerifier: takes one token."""

    def claims(self, token):
        from cloud.local.cognito import InvalidToken

        if token != "good-token":
            raise InvalidToken("not the good token")
        return {"cognito:username": "ana", "token_use": "id"}


def test_the_dashboard_routes_reach_the_handler_only_with_a_token_the_verifier_takes(aws):
    reached = []  # the events of /api requests that got to the handler

    def handler(event, context):
        if event["path"].startswith("/api"):
            reached.append(event)
        return {"statusCode": 200, "body": "{}"}

    for verifier in (None, Verifier()):
        srv = ApiServer(handler=handler, verifier=verifier).start()
        try:
            for headers in ({}, {"Authorization": "bad"}, {"Authorization": "Bearer bad"}):
                r = requests.get(srv.url + "/api/devices", headers=headers)
                assert r.status_code == 401 and r.json() == {"message": "Unauthorized"}
            assert reached == [], "a refused request never reaches the handler"
            r = requests.get(srv.url + "/api/devices", headers={"Authorization": "Bearer good-token"})
            assert r.status_code == (200 if verifier else 401)
            assert requests.get(srv.url + "/devices").status_code == 200  # the other routes: as before
        finally:
            srv.stop()
        if verifier:
            (event,) = reached
            assert event["requestContext"]["authorizer"] == {"claims": {"cognito:username": "ana", "token_use": "id"}}


def test_the_handler_itself_refuses_a_dashboard_route_without_claims(aws):
    from cloud.local.apigw import LambdaContext, proxy_event

    r = api.handler(proxy_event("GET", "/api/devices", {}, b""), LambdaContext("motorguard-api"))
    assert r["statusCode"] == 401
