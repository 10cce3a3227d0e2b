"""api: the REST API behind API Gateway (proxy integration).

    GET  /devices?limit=&next=                 devices with their latest state and reading, a page at a time
    GET  /devices/{thing}                      one device
    GET  /devices/{thing}/telemetry?from=&to=&limit=&next=   samples in a time range (ms), paged
    GET  /devices/{thing}/events?from=&to=&limit=&next=      events, newest last, paged
    GET  /devices/{thing}/aggregates?from=&to=               hourly min/max/mean (for ranges of days)
    GET  /devices/{thing}/commands?limit=&next=              commands sent, newest first, who sent each, its ack
    POST /devices/{thing}/commands             {"cmd": "start"|"stop"|"set_speed", "speed": n, "id": opt} -> 202
                                               (the API adds v=2 and issued_at: docs/commands.md); 404 for a
                                               device the fleet does not know
    GET  /alerts?limit=&next=                  devices whose FAULT is latched
    GET  /rejects?limit=                       how many messages the dead-letter queue holds, and why (a sample)
    GET  /me                                   who the API takes the caller for

Every route is served twice: at the root with IAM authentication (SigV4, operators), and under
/api with a Cognito user pool authorizer (the dashboard, through CloudFront). The caller recorded
with a command is the authorizer's: the Cognito user, or the SigV4 caller's IAM ARN.

Commands go to devices/{thing}/cmd through `publisher`: iot-data in AWS. A runtime that has no
iot-data puts a publisher of its own there before it serves requests; this module knows of none.

The routes here parse a request, call cloud/lambdas/api_reads.py (the tables, the registry and the
dead-letter queue) or cloud/domain (what a row or a request means), and shape the answer.
"""

from __future__ import annotations

import json
import time
import uuid

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, NotFoundError

import contract
from cloud import resources
from cloud.domain import aggregates, callers, commands, history, messages, pages
from cloud.lambdas import api_reads
from cloud.lambdas.common import client, table

logger = Logger(service=resources.function_name("api"))
# The dashboard's routes: the same API under /api, where API Gateway's Cognito authorizer (and,
# locally, cloud/local/apigw.py in its place) has checked the user's token.
DASHBOARD_PREFIX = "/api"
app = APIGatewayRestResolver(strip_prefixes=[DASHBOARD_PREFIX])

COMMAND = contract.MESSAGE_OF_TOPIC[contract.CMD]  # the message devices/<thing>/cmd carries: "command"
COMMAND_VERSION = contract.MESSAGE_VERSIONS[COMMAND]  # 2: the device refuses commands without v, id, issued_at
MAX_LIMIT = 5000
DEFAULT_LIMIT = 500
DEVICE_PAGE = 100  # devices a page of /devices holds by default (at most MAX_DEVICE_PAGE)
MAX_DEVICE_PAGE = 500
REJECT_SAMPLE = 50  # dead letters /rejects reads at most
MAX_AGGREGATE_DAYS = 31


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


def _page_start(key: str):
    """The ExclusiveStartKey a 'next' token of a table keyed by device alone names (None: first page)."""
    token = _token()
    if token is None:
        return None
    start = token.get(key)
    if not contract.is_thing_name(start):
        raise BadRequestError("'next' is not a token this API issued")
    return {"device": start}


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


def _next(last_key, *fields):
    """The 'next' token of a page: the fields of the key the following page starts after (None: none)."""
    return pages.encode({f: last_key[f] for f in fields}) if last_key else None


@app.get("/devices")
def list_devices():
    """A page of devices, sorted by name within the page; 'next' gives the following page. A
    dashboard asks page after page, never for the whole fleet in one request."""
    limit = _int_param("limit", DEVICE_PAGE, 1, MAX_DEVICE_PAGE)
    items, nxt = api_reads.devices_page(limit, _page_start("device"))
    return {"devices": api_reads.device_views(items), "next": _next(nxt, "device")}


def known_device(thing):
    item = api_reads.device_row(_thing(thing))
    if item is None:
        raise NotFoundError("no device %r: the fleet has no record of it (a device is known once it has sent an "
                            "event, such as BOOT); check the name" % thing)
    return item


@app.get("/devices/<thing>")
def get_device(thing):
    item = known_device(thing)
    view = api_reads.device_views([item])[0]
    view["remote_start"] = api_reads.remote_start_of(thing)
    return view


@app.get("/devices/<thing>/telemetry")
def get_telemetry(thing):
    _thing(thing)
    from_ms, to_ms = _range()
    limit = _int_param("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    samples, resume = api_reads.telemetry_page(thing, from_ms, to_ms, limit, _token())
    return {"device": thing, "samples": samples, "next": _next(resume, "sk", "i")}


@app.get("/devices/<thing>/events")
def get_events(thing):
    _thing(thing)
    from_ms, to_ms = _range()
    limit = _int_param("limit", 100, 1, 1000)
    events, nxt = api_reads.events_page(thing, from_ms, to_ms, limit, _token())
    return {"device": thing, "events": events, "next": _next(nxt, "sk")}


@app.get("/devices/<thing>/aggregates")
def get_aggregates(thing):
    """Hourly statistics in [from, to] (api_reads.hourly_stats), at most MAX_AGGREGATE_DAYS of them."""
    _thing(thing)
    now = int(time.time() * 1000)
    to_ms = _int_param("to", now, 0)
    from_ms = _int_param("from", to_ms - 24 * aggregates.HOUR_MS, 0)
    if from_ms > to_ms:
        raise BadRequestError("'from' must not be after 'to'")
    if to_ms - from_ms > MAX_AGGREGATE_DAYS * 24 * aggregates.HOUR_MS:
        raise BadRequestError("a range of at most %d days, please" % MAX_AGGREGATE_DAYS)
    return {"device": thing, "hours": api_reads.hourly_stats(thing, from_ms, to_ms, now)}


@app.get("/devices/<thing>/commands")
def get_commands(thing):
    """The commands sent to a device, newest first: who sent each, and the device's ack (None when
    none was recorded)."""
    _thing(thing)
    limit = _int_param("limit", 50, 1, 100)
    token = _token()
    after = None
    if token:
        after = token.get("sk")
        if not isinstance(after, str) or not after.startswith(commands.COMMAND_PREFIX):
            raise BadRequestError("'next' is not a token this API issued")
    sent, nxt = api_reads.commands_page(thing, limit, after)
    return {"device": thing, "commands": sent, "next": _next(nxt, "sk")}


@app.get("/alerts")
def list_alerts():
    """Devices whose FAULT is latched (it clears only at the machine), a page at a time."""
    limit = _int_param("limit", DEVICE_PAGE, 1, MAX_DEVICE_PAGE)
    items, nxt = api_reads.devices_page(limit, _page_start("device"), **api_reads.FAULTED)
    # In the page's order: by device name.
    alerts = [{"device": i["device"], "event": "FAULT", "reason": i.get("reason") or None,
               "since_ms": history.from_dynamo(i.get("last_event_ms"))} for i in items]
    return {"alerts": alerts, "next": _next(nxt, "device")}


@app.get("/rejects")
def list_rejects():
    """How many messages the dead-letter queue holds, and a sample of why (up to 'limit'; 0: the
    count alone), read without taking any (api_reads.dead_letters)."""
    count, sample = api_reads.dead_letters(_int_param("limit", 20, 0, REJECT_SAMPLE))
    return {"count": count, "rejects": sample}


@app.get("/me")
def who_am_i():
    sender, auth = caller()
    return {"user": sender, "auth": auth}


def caller() -> tuple[str, str]:
    """Who sent this request, as the authorizer established it (cloud/domain/callers.py)."""
    return callers.caller_of(app.current_event.raw_event.get("requestContext") or {})


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
    known_device(thing)  # after the body: a bad command is a 400 whatever the device
    sender, auth = caller()
    publish_command(thing, json.dumps(cmd))
    # Recorded once it is out: a record of a command that never left would be a lie in the audit.
    table("COMMANDS_TABLE").put_item(Item=history.to_dynamo(commands.command_item(thing, cmd, sender, auth)))
    return Response(status_code=202, content_type="application/json",
                    body=json.dumps({"id": cmd["id"], "issued_at": cmd["issued_at"],
                                     "topic": contract.topic(thing, contract.CMD), "status": "sent",
                                     "sender": sender}))


def _unauthorized():
    return {"statusCode": 401, "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
            "body": json.dumps({"message": "Unauthorized"})}


def _is_dashboard_route(path: str) -> bool:
    return path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/")


@logger.inject_lambda_context
def handler(event, context):
    # The dashboard's routes only ever arrive with the authorizer's claims (API Gateway's Cognito
    # authorizer; locally cloud/local/apigw.py): without them, refuse rather than serve as no one.
    signed_in = callers.signed_in(event.get("requestContext") or {})
    if _is_dashboard_route(event.get("path") or "") and not signed_in:
        return _unauthorized()
    response = app.resolve(event, context)
    # Live state and who did what: no cache of any kind may keep an answer.
    response.setdefault("headers", {})
    if isinstance(response["headers"], dict):
        response["headers"]["Cache-Control"] = "no-store"
    return response
