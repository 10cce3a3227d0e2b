"""What the api Lambda reads: its DynamoDB tables, the IoT registry and the dead-letter queue, each
read paged the way its route pages it.

Apart from the routes (cloud/lambdas/api.py) so that each route stays a thin handler: it parses the
request, calls one of these with values it has checked, and shapes the answer. Nothing here knows
of HTTP. What a row means is cloud/domain's (history, devices, commands, aggregates, rejects), which
these hand the rows to.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from boto3.dynamodb.conditions import Key

from cloud.domain import aggregates, commands, devices, history, rejects
from cloud.lambdas.common import client, env, queue_url, table

LOOKUP_THREADS = 16  # one page's latest readings are read in parallel
BATCH_SPAN_MS = 15 * 60 * 1000  # a batch's samples may start this long before its first one is in range
# The devices whose FAULT is latched (it clears only at the machine), as a filter of the devices' scan.
FAULTED = {"FilterExpression": "#s = :fault", "ExpressionAttributeNames": {"#s": "state"},
           "ExpressionAttributeValues": {":fault": "FAULT"}}


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


def devices_page(limit: int, start: dict | None, **conditions) -> tuple[list, dict | None]:
    """One page of the devices table (a scan, with conditions such as FAULTED), sorted by name within
    the page, and the key the next page starts after (None: this was the last)."""
    kw = dict(conditions, Limit=limit)
    if start:
        kw["ExclusiveStartKey"] = start
    r = table("DEVICES_TABLE").scan(**kw)
    return sorted(r["Items"], key=lambda i: i["device"]), r.get("LastEvaluatedKey")


def device_row(thing: str) -> dict | None:
    """The device's row in the devices table (None: the fleet has no record of it)."""
    return table("DEVICES_TABLE").get_item(Key={"device": thing}).get("Item")


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


def telemetry_page(thing: str, from_ms: int, to_ms: int, limit: int, token: dict | None) -> tuple[list, dict | None]:
    """Up to limit samples of [from_ms, to_ms], oldest first, from where token (a page's resume
    point) says; and the resume point of the next page (None: there is none). A page may end inside
    a stored batch, so the point names the batch (sk) and the sample in it (i)."""
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
                    return out, {"sk": item["sk"], "i": i}
                out.append(samples[i])
        if "LastEvaluatedKey" not in r:
            return out, None
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def samples_between(thing, from_ms, to_ms) -> list:
    """Every sample of [from_ms, to_ms], unpaged: for an hour the hourly job has not done yet."""
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


def events_page(thing: str, from_ms: int, to_ms: int, limit: int, token: dict | None) -> tuple[list, dict | None]:
    """Up to limit events of [from_ms, to_ms], oldest first, after the one token names; and the key
    the next page starts after (None: this was the last)."""
    lo, hi = history.range_keys(from_ms, to_ms)
    kw = {"Limit": limit}
    if token:
        kw["ExclusiveStartKey"] = {"device": thing, "sk": str(token.get("sk"))}
    r = table("EVENTS_TABLE").query(KeyConditionExpression=Key("device").eq(thing) & Key("sk").between(lo, hi), **kw)
    return [history.from_dynamo(i) for i in r["Items"]], r.get("LastEvaluatedKey")


def hourly_stats(thing: str, from_ms: int, to_ms: int, now_ms: int) -> list:
    """Hourly statistics in [from_ms, to_ms]: the hourly job's, and for the hours it has not done yet
    (the current one and the last, before it runs) the same statistics from the raw samples."""
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
    for hour_ms in range(max(aggregates.hour_start_ms(first), now_ms - 2 * aggregates.HOUR_MS), to_ms + 1,
                         aggregates.HOUR_MS):
        hour = aggregates.hour_of(hour_ms)
        if hour not in stored:
            start = aggregates.hour_start_ms(hour)
            samples = samples_between(thing, start, start + aggregates.HOUR_MS - 1)
            if samples:
                stored[hour] = dict(aggregates.stats(samples), sk=hour, device=thing)
    hours = []
    for hour in sorted(stored):
        a = stored[hour]
        hours.append({"hour": hour, "start_ms": aggregates.hour_start_ms(hour), "samples": a.get("samples", 0),
                      "temperature_c": a.get("temperature_c"), "current_a": a.get("current_a")})
    return hours


def commands_page(thing: str, limit: int, after_sk: str | None) -> tuple[list, dict | None]:
    """Up to limit commands sent to the device, newest first, after the one after_sk names, each
    with its ack (commands.view); and the key the next page starts after (None: this was the last)."""
    kw = {"Limit": limit, "ScanIndexForward": False}
    if after_sk is not None:
        kw["ExclusiveStartKey"] = {"device": thing, "sk": after_sk}
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
    return [commands.view(c, acks.get(c["id"])) for c in sent], r.get("LastEvaluatedKey")


def dead_letters(limit: int) -> tuple[int, list]:
    """How many messages the dead-letter queue holds, and a sample of up to limit of them (newest
    first, each rejects.summary). Read without taking anything: each message stays visible to
    anyone else (a visibility timeout of 0), so the same one may come back twice; duplicates are
    dropped by message id."""
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
    return count, sorted(seen.values(), key=lambda d: -(d.get("time_ms") or 0))[:limit]
