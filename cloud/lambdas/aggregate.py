"""aggregate: every hour, per device, min/max/mean of temperature and current (S3 and DynamoDB), and
the hour's telemetry messages archived to S3 as one object (raw/<device>/<YYYY>/<MM>/<DD>/<HH>.jsonl).

One archive object per device-hour instead of one per message: S3 bills per PUT. Re-running an hour
rewrites the same keys. The scheduled event may carry {"hour": "YYYY-MM-DDTHH"}; by default the
previous hour.
"""

from __future__ import annotations

import json
import time

from aws_lambda_powertools import Logger, Metrics
from boto3.dynamodb.conditions import Key

from cloud import resources
from cloud.domain import aggregates, history, messages
from cloud.lambdas.common import add_metric, client, env, table

logger = Logger(service=resources.function_name("aggregate"))
metrics = Metrics(namespace=resources.METRICS_NAMESPACE, service="aggregate")


def devices() -> list[str]:
    names, kw = set(), {"ProjectionExpression": "device"}
    while True:
        r = table("DEVICES_TABLE").scan(**kw)
        names.update(i["device"] for i in r["Items"])
        if "LastEvaluatedKey" not in r:
            return sorted(names)
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def hour_items(device: str, start_ms: int) -> list[dict]:
    lo, hi = history.range_keys(start_ms - 15 * 60 * 1000, start_ms + aggregates.HOUR_MS - 1)
    items, kw = [], {}
    while True:
        r = table("TELEMETRY_TABLE").query(KeyConditionExpression=Key("device").eq(device) & Key("sk").between(lo, hi),
                                          **kw)
        items += r["Items"]
        if "LastEvaluatedKey" not in r:
            return items
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


def aggregate_device(device: str, hour: str) -> dict | None:
    start = aggregates.hour_start_ms(hour)
    end = start + aggregates.HOUR_MS - 1
    items = hour_items(device, start)
    samples = [s for item in items for s in history.samples_of(item, start, end)]
    if not samples:
        return None
    result = {"device": device, "hour": hour, **aggregates.stats(samples)}
    s3 = client("s3")
    bucket = env("ARCHIVE_BUCKET")
    s3.put_object(Bucket=bucket, Key=aggregates.aggregate_key(device, hour), Body=json.dumps(result).encode(),
                  ContentType="application/json")
    payloads = [messages.device_part(history.unpack(i["payload"])) for i in items
                if aggregates.hour_of(history.first_ms(i)) == hour]
    if payloads:
        s3.put_object(Bucket=bucket, Key=aggregates.archive_key(device, hour), Body=aggregates.archive_body(payloads),
                      ContentType="application/x-ndjson")
    table("AGGREGATES_TABLE").put_item(Item=history.to_dynamo(dict(result, sk=hour)))
    return result


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context
def handler(event, context):
    hour = (event or {}).get("hour") or aggregates.previous_hour(int(time.time() * 1000))
    done = [r for r in (aggregate_device(d, hour) for d in devices()) if r]
    add_metric(metrics, "DeviceHoursAggregated", len(done))
    return {"hour": hour, "devices": len(done), "results": done}
