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
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, NotFoundError
from boto3.dynamodb.conditions import Key

import contract
from cloud.domain import aggregates, commands, devices, history, messages, pages, rejects
from cloud.lambdas.common import client, env, queue_url, table

logger = Logger(service="motorguard-api")
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
LOOKUP_THREADS = 16  # one page's latest readings are read in parallel
REJECT_SAMPLE = 50  # dead letters /rejects reads at most
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
    """The newest sample of a device (None without telemetry)."""
    batch = latest_batch(thing)
    return batch[-1] if batch else None


def latest_batch(thing):
    """The newest telemetry message's samples (empty when there is none)."""
    r = table("TELEMETRY_TABLE").query(KeyConditionExpression=Key("device").eq(thing), ScanIndexForward=False, Limit=1)
    return history.samples_of(r["Items"][0]) if r["Items"] else []


def presence_of(things) -> dict:
    """The stored status message of each thing (the motorguard_status rule of cloud/rules.py), by thing."""
    out, keys = {}, [{"device": t} for t in things]
    name = env("PRESENCE_TABLE")
    for i in range(0, len(keys), 100):  # BatchGetItem takes 100 keys
        request = {name: {"Keys": keys[i:i + 100]}}
        while request:
            got = table("PRESENCE_TABLE").meta.client.batch_get_item(RequestItems=request)
            for item in got["Responses"].get(name, []):
                out[item["device"]] = history.from_dynamo(item)
            request = got.get("UnprocessedKeys") or None
    return out


def device_view(item, batch=None, status=None):
    """devices.view of one device's row, with its latest batch read when not given."""
    if batch is None:
        batch = latest_batch(item["device"])
    return devices.view(history.from_dynamo(item), batch, status, int(time.time() * 1000))


def device_views(items) -> list:
    """device_view of each item, their latest readings read in parallel (one query each)."""
    things = [i["device"] for i in items]
    status = presence_of(things) if things else {}
    with ThreadPoolExecutor(max_workers=LOOKUP_THREADS) as pool:
        batches = list(pool.map(latest_batch, things))
    return [device_view(i, b, status.get(i["device"])) for i, b in zip(items, batches)]


def _page_start(key: str):
    """The ExclusiveStartKey a 'next' token of a table keyed by device alone names (None: first page)."""
    token = _token()
    if token is None:
        return None
    start = token.get(key)
    if not contract.is_thing_name(start):
        raise BadRequestError("'next' is not a token this API issued")
    return {"device": start}


@app.get("/devices")
def list_devices():
    """A page of devices, sorted by name within the page; 'next' gives the following page. A
    dashboard asks page after page, never for the whole fleet in one request."""
    limit = _int_param("limit", DEVICE_PAGE, 1, MAX_DEVICE_PAGE)
    kw = {"Limit": limit}
    start = _page_start("device")
    if start:
        kw["ExclusiveStartKey"] = start
    r = table("DEVICES_TABLE").scan(**kw)
    items = sorted(r["Items"], key=lambda i: i["device"])
    nxt = r.get("LastEvaluatedKey")
    return {"devices": device_views(items), "next": pages.encode({"device": nxt["device"]}) if nxt else None}


def known_device(thing):
    r = table("DEVICES_TABLE").get_item(Key={"device": _thing(thing)})
    if "Item" not in r:
        raise NotFoundError("no device %r: the fleet has no record of it (a device is known once it has sent an "
                            "event, such as BOOT); check the name" % thing)
    return r["Item"]


def remote_start_of(thing):
    """Whether the device was provisioned to accept a remote start: the thing's registry attribute
    remote_start ("true"/"false"), None when the registry does not say (then the dashboard does not
    offer Start; the device itself refuses a start it does not allow, whatever the page offers)."""
    from botocore.exceptions import ClientError

    try:
        attrs = client("iot").describe_thing(thingName=thing).get("attributes") or {}
    except ClientError:
        return None
    value = str(attrs.get("remote_start", "")).lower()
    return True if value == "true" else False if value == "false" else None


@app.get("/devices/<thing>")
def get_device(thing):
    item = known_device(thing)
    view = device_views([item])[0]
    view["remote_start"] = remote_start_of(thing)
    return view


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


@app.get("/devices/<thing>/aggregates")
def get_aggregates(thing):
    """Hourly statistics in [from, to]: the hourly job's, and for the hours it has not done yet
    (the current one and the last, before it runs) the same statistics from the raw samples."""
    _thing(thing)
    now = int(time.time() * 1000)
    to_ms = _int_param("to", now, 0)
    from_ms = _int_param("from", to_ms - 24 * aggregates.HOUR_MS, 0)
    if from_ms > to_ms:
        raise BadRequestError("'from' must not be after 'to'")
    if to_ms - from_ms > MAX_AGGREGATE_DAYS * 24 * aggregates.HOUR_MS:
        raise BadRequestError("a range of at most %d days, please" % MAX_AGGREGATE_DAYS)
    first, last = aggregates.hour_of(from_ms), aggregates.hour_of(to_ms)
    stored, kw = {}, {}
    while True:
        r = table("AGGREGATES_TABLE").query(
            KeyConditionExpression=Key("device").eq(thing) & Key("sk").between(first, last), **kw)
        for item in r["Items"]:
            stored[item["sk"]] = history.from_dynamo(item)
        if "LastEvaluatedKey" not in r:
            break
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]
    for hour_ms in range(max(aggregates.hour_start_ms(first), now - 2 * aggregates.HOUR_MS), to_ms + 1,
                         aggregates.HOUR_MS):
        hour = aggregates.hour_of(hour_ms)
        if hour not in stored:
            start = aggregates.hour_start_ms(hour)
            samples = _samples(thing, start, start + aggregates.HOUR_MS - 1)
            if samples:
                stored[hour] = dict(aggregates.stats(samples), sk=hour, device=thing)
    hours = []
    for hour in sorted(stored):
        a = stored[hour]
        hours.append({"hour": hour, "start_ms": aggregates.hour_start_ms(hour), "samples": a.get("samples", 0),
                      "temperature_c": a.get("temperature_c"), "current_a": a.get("current_a")})
    return {"device": thing, "hours": hours}


MAX_AGGREGATE_DAYS = 31


def _samples(thing, from_ms, to_ms) -> list:
    lo, hi = history.range_keys(max(0, from_ms - BATCH_SPAN_MS), to_ms)
    out, kw = [], {}
    while True:
        r = table("TELEMETRY_TABLE").query(KeyConditionExpression=Key("device").eq(thing) & Key("sk").between(lo, hi),
                                          **kw)
        for item in r["Items"]:
            out += history.samples_of(item, from_ms, to_ms)
        if "LastEvaluatedKey" not in r:
            return out
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


@app.get("/devices/<thing>/commands")
def get_commands(thing):
    """The commands sent to a device, newest first: who sent each, and the device's ack (None when
    none was recorded)."""
    _thing(thing)
    limit = _int_param("limit", 50, 1, 100)
    kw = {"Limit": limit, "ScanIndexForward": False}
    token = _token()
    if token:
        sk = token.get("sk")
        if not isinstance(sk, str) or not sk.startswith(commands.COMMAND_PREFIX):
            raise BadRequestError("'next' is not a token this API issued")
        kw["ExclusiveStartKey"] = {"device": thing, "sk": sk}
    r = table("COMMANDS_TABLE").query(
        KeyConditionExpression=Key("device").eq(thing) & Key("sk").begins_with(commands.COMMAND_PREFIX), **kw)
    sent = [history.from_dynamo(i) for i in r["Items"]]
    acks = {}
    if sent:
        name = env("COMMANDS_TABLE")
        request = {name: {"Keys": [{"device": thing, "sk": commands.ack_sk(c["id"])} for c in sent]}}
        while request:
            got = table("COMMANDS_TABLE").meta.client.batch_get_item(RequestItems=request)
            for item in got["Responses"].get(name, []):
                acks[item["sk"][len(commands.ACK_PREFIX):]] = history.from_dynamo(item)
            request = got.get("UnprocessedKeys") or None
    nxt = r.get("LastEvaluatedKey")
    return {"device": thing, "commands": [commands.view(c, acks.get(c["id"])) for c in sent],
            "next": pages.encode({"sk": nxt["sk"]}) if nxt else None}


@app.get("/alerts")
def list_alerts():
    """Devices whose FAULT is latched (it clears only at the machine), a page at a time."""
    limit = _int_param("limit", DEVICE_PAGE, 1, MAX_DEVICE_PAGE)
    kw = {"Limit": limit, "FilterExpression": "#s = :fault", "ExpressionAttributeNames": {"#s": "state"},
          "ExpressionAttributeValues": {":fault": "FAULT"}}
    start = _page_start("device")
    if start:
        kw["ExclusiveStartKey"] = start
    r = table("DEVICES_TABLE").scan(**kw)
    alerts = [{"device": i["device"], "event": "FAULT", "reason": i.get("reason") or None,
               "since_ms": history.from_dynamo(i.get("last_event_ms"))} for i in r["Items"]]
    nxt = r.get("LastEvaluatedKey")
    return {"alerts": sorted(alerts, key=lambda a: a["device"]),
            "next": pages.encode({"device": nxt["device"]}) if nxt else None}


@app.get("/rejects")
def list_rejects():
    """How many messages the dead-letter queue holds, and a sample of why (up to 'limit'). The
    sample is read without taking anything: each message stays visible to anyone else (a visibility
    timeout of 0), so the same one may come back twice; duplicates are dropped by message id."""
    limit = _int_param("limit", 20, 0, REJECT_SAMPLE)  # 0: the count alone
    sqs = client("sqs")
    url = queue_url(env("DEAD_LETTER_QUEUE_NAME"))
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                   "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    count = int(attrs.get("ApproximateNumberOfMessages", 0)) + int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
    seen = {}
    for _ in range(limit // 10 + 1 if limit else 0):
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0)
        fresh = [m for m in r.get("Messages", []) if m["MessageId"] not in seen]
        if not fresh:
            break
        for m in fresh:
            seen[m["MessageId"]] = dict(rejects.summary(m["Body"]), id=m["MessageId"])
        if len(seen) >= limit:
            break
    sample = sorted(seen.values(), key=lambda d: -(d.get("time_ms") or 0))[:limit]
    return {"count": count, "rejects": sample}


@app.get("/me")
def who_am_i():
    sender, auth = caller()
    return {"user": sender, "auth": auth}


def caller() -> tuple[str, str]:
    """Who sent this request, as the authorizer established it: the Cognito user (the dashboard's
    routes), the SigV4 caller's IAM ARN (the operators' routes), or no one (the local API's unsigned
    routes)."""
    ctx = app.current_event.raw_event.get("requestContext") or {}
    claims = (ctx.get("authorizer") or {}).get("claims") or {}
    if claims.get("cognito:username"):
        return str(claims["cognito:username"]), "cognito"
    identity = ctx.get("identity") or {}
    for field in ("userArn", "caller"):
        if identity.get(field):
            return str(identity[field]), "sigv4"
    return "unauthenticated local caller", "none"


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
    ctx = event.get("requestContext") or {}
    claims = (ctx.get("authorizer") or {}).get("claims") or {}
    if _is_dashboard_route(event.get("path") or "") and not claims.get("cognito:username"):
        return _unauthorized()
    response = app.resolve(event, context)
    # Live state and who did what: no cache of any kind may keep an answer.
    response.setdefault("headers", {})
    if isinstance(response["headers"], dict):
        response["headers"]["Cache-Control"] = "no-store"
    return response
