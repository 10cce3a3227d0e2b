"""What the cloud side costs per device and month, from operations counted in a local run.

The local IoT Core counts what AWS would bill for (messages in 5 KB steps, rule
triggers and actions, Lambda requests and GB-seconds, DynamoDB write and read units,
S3 requests, SNS and SQS requests); `monthly_cost` scales those counts from the run's
length and fleet size to one device for a 30-day month and prices them with the
table below.
"""

from __future__ import annotations

import math

# AWS list prices, us-east-1, in USD. Read from the AWS pricing pages as published in
# 2025 (IoT Core, Lambda, DynamoDB, S3, SQS, SNS pricing pages); re-check before relying on them.
PRICES_DATE = "2025 (us-east-1 list prices, recorded 2026-11-23)"
PRICES = {
    "iot_message_5kb": 1.00 / 1e6,  # messaging, per message, metered in 5 KB steps
    "iot_connection_minute": 0.08 / 1e6,
    "iot_rule_triggered": 0.15 / 1e6,
    "iot_rule_action": 0.15 / 1e6,
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second": 0.0000166667,  # x86
    "dynamodb_wru": 0.625 / 1e6,  # on-demand, one write of up to 1 KB
    "dynamodb_rru": 0.125 / 1e6,  # on-demand, one strongly consistent read of up to 4 KB
    "dynamodb_gb_month": 0.25,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
    "s3_gb_month": 0.023,
    "sqs_request": 0.40 / 1e6,
    "sns_publish": 0.50 / 1e6,
    "apigw_rest_call": 3.50 / 1e6,
}

MONTH_S = 30 * 24 * 3600
KB = 1024


def message_units(payload_bytes: int) -> int:
    """IoT Core meters messages in 5 KB steps: a 6 KB message is billed as two."""
    return max(1, math.ceil(payload_bytes / (5 * KB)))


def write_units(item_bytes: int) -> int:
    return max(1, math.ceil(item_bytes / KB))


def read_units(item_bytes: int) -> int:
    return max(1, math.ceil(item_bytes / (4 * KB)))


def lambda_gb_seconds(duration_ms: float, memory_mb: int) -> float:
    """Lambda bills duration rounded up to the millisecond, times configured memory."""
    return math.ceil(duration_ms) / 1000.0 * memory_mb / 1024.0


def new_counts() -> dict:
    return {key: 0 for key in PRICES if not key.endswith("gb_month")} | {
        "dynamodb_bytes_stored": 0,
        "s3_bytes_stored": 0,
    }


def monthly_cost(counts: dict, devices: int, run_seconds: float, basic_ingest: bool = True) -> dict:
    """Per device-month cost, item by item, from counts of a run of `run_seconds` with `devices` devices.

    counts: keys of new_counts(); iot_message_5kb counts every inbound message's 5 KB units
    (Basic Ingest messages are counted as `iot_basic_ingest_5kb` and carry no messaging charge).
    Storage is priced at its steady state: the bytes one month of the run's rate would hold
    (history expires after its TTL, so DynamoDB storage is the TTL's worth).
    """
    if devices <= 0 or run_seconds <= 0:
        raise ValueError("devices and run_seconds must be positive")
    scale = MONTH_S / run_seconds / devices
    lines = {}
    for key, price in PRICES.items():
        if key.endswith("gb_month"):
            continue
        n = counts.get(key, 0)
        lines[key] = n * scale * price
    ttl_days = counts.get("ttl_days", 7)
    ddb_gb = counts.get("dynamodb_bytes_stored", 0) * scale * (ttl_days / 30.0) / 1e9
    s3_gb = counts.get("s3_bytes_stored", 0) * scale / 1e9  # one month's worth of archive
    lines["dynamodb_gb_month"] = ddb_gb * PRICES["dynamodb_gb_month"]
    lines["s3_gb_month"] = s3_gb * PRICES["s3_gb_month"]
    total = sum(lines.values())
    return {"usd_per_device_month": total, "lines": lines, "prices_date": PRICES_DATE,
            "basic_ingest": basic_ingest}
