"""What the handlers share: boto3 clients (AWS_ENDPOINT_URL makes them reach moto locally) and settings."""

from __future__ import annotations

import functools
import os

import boto3
from botocore.exceptions import ClientError

from cloud import resources


def env(name: str) -> str:
    return os.environ.get(name) or resources.ENV[name]


@functools.lru_cache(maxsize=None)
def client(service: str):
    return boto3.client(service)


@functools.lru_cache(maxsize=None)
def table(env_name: str):
    return boto3.resource("dynamodb").Table(env(env_name))


@functools.lru_cache(maxsize=None)
def plain_dynamodb():
    """A low-level DynamoDB client (attribute values, not Python values) without botocore's per-call
    parameter validation: for requests this code builds, not for input, where the validation (about
    a tenth of a millisecond an item) buys nothing."""
    from botocore.config import Config

    return boto3.client("dynamodb", config=Config(parameter_validation=False))


@functools.lru_cache(maxsize=None)
def queue_url(name: str) -> str:
    return client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


@functools.lru_cache(maxsize=None)
def topic_arn(name: str) -> str:
    return client("sns").create_topic(Name=name)["TopicArn"]  # idempotent: returns the existing ARN


def reset_clients():
    """Tests and the local core switch endpoints: forget cached clients."""
    client.cache_clear()
    table.cache_clear()
    plain_dynamodb.cache_clear()
    queue_url.cache_clear()
    topic_arn.cache_clear()


def written(write, **request) -> bool:
    """One DynamoDB write with a ConditionExpression (put_item, update_item, ...): True when it was
    written, False when the condition failed (the item is already there, or newer); anything else
    raises."""
    try:
        write(**request)
        return True
    except ClientError as e:
        if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def setting(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def add_metric(metrics, name: str, value: float = 1) -> None:
    """Powertools keeps metrics in memory (and prints them once 100 pile up) even when
    POWERTOOLS_METRICS_DISABLED is set: record nothing then (local runs)."""
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
