"""api: the REST API behind API Gateway (proxy integration).

    GET  /devices                              every device with its latest state and reading
    GET  /devices/{thing}                      one device
    GET  /devices/{thing}/telemetry?from=&to=&limit=&next=   samples in a time range (ms), paged
    GET  /devices/{thing}/events?from=&to=&limit=&next=      events, newest last, paged
    POST /devices/{thing}/commands             {"cmd": "start"|"stop"|"set_speed", "speed": n, "id": opt} -> 202
                                               (the API adds v=2 and issued_at: docs/commands.md)

Commands go to devices/{thing}/cmd through `publisher`: iot-data in AWS. A runtime that has no
iot-data puts a publisher of its own there before it serves requests; this module knows of none.
"""

from __future__ import annotations

import json
import time
import uuid

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, NotFoundError
from boto3.dynamodb.conditions import Key

import contract
from cloud.domain import history, messages, pages
from cloud.lambdas.common import client, table

logger = Logger(service="motorguard-api")
app = APIGatewayRestResolver()

COMMAND = contract.MESSAGE_OF_TOPIC[contract.CMD]  # the message devices/<thing>/cmd carries: "command"
COMMAND_VERSION = contract.MESSAGE_VERSIONS[COMMAND]  # 2: the device refuses commands without v, id, issued_at
MAX_LIMIT = 5000
DEFAULT_LIMIT = 500
BATCH_SPAN_MS = 15 * 60 * 1000  # a batch's samples may start this long before its first one is in range


def _int_param(name, default, lo=None, hi=None):
    raw = app.current_event.get_query_string_value(name, None)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestError("'%s' must be an integer, got %r" % (name, raw)) from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BadRequestError("'%s' must be between %s and %s" % (name, lo, hi))
    return value


def _thing(thing):
    if not contract.is_thing_name(thing):
        raise BadRequestError("invalid thing name %r" % thing)
    return thing


def latest_telemetry(thing):
    r = table("TELEMETRY_TABLE").query(KeyConditionExpression=Key("device").eq(thing), ScanIndexForward=False, Limit=1)
    if not r["Items"]:
        return None
    samples = history.samples_of(r["Items"][0])
    return samples[-1] if samples else None


def device_view(item):
    d = history.from_dynamo(item)
    d["latest_sample"] = latest_telemetry(d["device"])
    return d


@app.get("/devices")
def list_devices():
    items, kw = [], {}
    while True:
        r = table("DEVICES_TABLE").scan(**kw)
        items += r["Items"]
        if "LastEvaluatedKey" not in r:
            break
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]
    return {"devices": [device_view(i) for i in sorted(items, key=lambda i: i["device"])]}


@app.get("/devices/<thing>")
def get_device(thing):
    r = table("DEVICES_TABLE").get_item(Key={"device": _thing(thing)})
    if "Item" not in r:
        raise NotFoundError("no device %r" % thing)
    return device_view(r["Item"])


def _range():
    now = int(time.time() * 1000)
    to_ms = _int_param("to", now, 0)
    from_ms = _int_param("from", to_ms - 3600 * 1000, 0)
    if from_ms > to_ms:
        raise BadRequestError("'from' must not be after 'to'")
    return from_ms, to_ms


def _token():
    raw = app.current_event.get_query_string_value("next", None)
    if not raw:
        return None
    try:
        return pages.decode(raw)
    except pages.BadToken as e:
        raise BadRequestError(str(e)) from None


@app.get("/devices/<thing>/telemetry")
def get_telemetry(thing):
    _thing(thing)
    from_ms, to_ms = _range()
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    token = _token()
    lo, hi = history.range_keys(max(0, from_ms - BATCH_SPAN_MS), to_ms)
    skip = 0
    if token:
        lo, skip = token.get("sk", lo), int(token.get("i", 0))
    out, kw = [], {}
    while True:
        r = table("TELEMETRY_TABLE").query(KeyConditionExpression=Key("device").eq(thing) & Key("sk").between(lo, hi),
                                          **kw)
        for item in r["Items"]:
            samples = history.samples_of(item, from_ms, to_ms)
            start = skip if item["sk"] == lo else 0
            for i in range(start, len(samples)):
                if len(out) == limit:
                    return {"device": thing, "samples": out,
                            "next": pages.encode({"sk": item["sk"], "i": i})}
                out.append(samples[i])
        if "LastEvaluatedKey" not in r:
            return {"device": thing, "samples": out, "next": None}
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


@app.get("/devices/<thing>/events")
def get_events(thing):
    _thing(thing)
    from_ms, to_ms = _range()
    limit = _int_param("limit", 100, 1, 1000)
    token = _token()
    lo, hi = history.range_keys(from_ms, to_ms)
    kw = {"Limit": limit}
    if token:
        kw["ExclusiveStartKey"] = {"device": thing, "sk": str(token.get("sk"))}
    r = table("EVENTS_TABLE").query(KeyConditionExpression=Key("device").eq(thing) & Key("sk").between(lo, hi), **kw)
    nxt = r.get("LastEvaluatedKey")
    return {"device": thing, "events": [history.from_dynamo(i) for i in r["Items"]],
            "next": pages.encode({"sk": nxt["sk"]}) if nxt else None}


def iot_publish(topic: str, payload: str) -> None:
    """AWS IoT's data plane (iot-data Publish, QoS 1), with the function's role."""
    client("iot-data").publish(topic=topic, qos=1, payload=payload.encode())


# Where commands go: publisher(topic, payload). iot-data, unless a runtime without it sets another.
publisher = iot_publish


def publish_command(thing: str, payload: str) -> None:
    publisher(contract.topic(thing, contract.CMD), payload)


@app.post("/devices/<thing>/commands")
def post_command(thing):
    _thing(thing)
    try:
        body = app.current_event.json_body
    except ValueError:
        raise BadRequestError("the body must be JSON, e.g. {\"cmd\": \"stop\"}") from None
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object, e.g. {\"cmd\": \"stop\"}")
    cmd = dict(body)
    for field in ("v", "issued_at"):
        if field in cmd:
            # The API is the sender: the version and the issue time are its own, never a caller's
            # (a caller's clock could make an old command look fresh to the device).
            raise BadRequestError("'%s' is set by the API; send only cmd, id and speed" % field)
    cmd.setdefault("id", uuid.uuid4().hex[:12])
    cmd["v"] = COMMAND_VERSION
    cmd["issued_at"] = int(time.time() * 1000)
    problem = messages.problems(COMMAND, cmd)
    if problem:
        raise BadRequestError("invalid command: %s" % problem)
    publish_command(thing, json.dumps(cmd))
    return Response(status_code=202, content_type="application/json",
                    body=json.dumps({"id": cmd["id"], "issued_at": cmd["issued_at"],
                                     "topic": contract.topic(thing, contract.CMD), "status": "sent"}))


@logger.inject_lambda_context
def handler(event, context):
    return app.resolve(event, context)
