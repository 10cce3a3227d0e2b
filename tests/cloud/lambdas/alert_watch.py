"""What the alert tests watch and break: the pages that reach the SNS topic, the state table, the
dead-letter queue, an SNS that fails on purpose, and moto's DynamoDB made atomic as DynamoDB is."""

from __future__ import annotations

import functools
import json
import threading
import time

import boto3
from botocore.exceptions import ClientError

from cloud import resources
from cloud.lambdas import common


def drain(queue_url):
    sqs, out = boto3.client("sqs"), []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return out
        out += [json.loads(m["Body"]) for m in got]


def dead_letters():
    return drain(boto3.client("sqs").get_queue_url(QueueName=resources.DEAD_LETTER_QUEUE)["QueueUrl"])


def failure_records():
    """The on-failure destination's invocation records (the DLQ also holds rejects and error actions)."""
    return [d for d in dead_letters() if "requestContext" in d]


class Pages:
    """An SQS queue subscribed to the alerts topic: every page SNS took lands there."""

    def __init__(self):
        sqs, sns = boto3.client("sqs"), boto3.client("sns")
        self.url = sqs.create_queue(QueueName="pages-%d" % time.monotonic_ns())["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=sns.create_topic(Name=resources.ALERTS_TOPIC)["TopicArn"], Protocol="sqs", Endpoint=arn)
        self.seen = []

    def subjects(self):
        self.seen += [m["Subject"] for m in drain(self.url)]
        return list(self.seen)


def slots():
    return boto3.resource("dynamodb").Table(resources.TABLES["state"][0]).scan(ConsistentRead=True)["Items"]


class SnsTrouble:
    """Hooked into the alert Lambda's own SNS client: each Publish first waits on `gate` (when
    given), then the first `failures` of them fail with SNS's InternalError, as a publish fails
    once boto3's own retries are spent."""

    def __init__(self, failures=0, gate=None, pause_s=0.0):
        self.failures, self.gate, self.pause_s = failures, gate, pause_s
        self.calls = 0
        self.entered = threading.Event()
        self.lock = threading.Lock()
        self.client = common.client("sns")
        self.client.meta.events.register("before-call.sns.Publish", self)

    def __call__(self, **_):
        with self.lock:
            self.calls += 1
            n = self.calls
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        time.sleep(self.pause_s)
        if n <= self.failures:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "SNS unavailable (injected, call %d)" % n},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, "Publish")
        return None

    def remove(self):
        self.client.meta.events.unregister("before-call.sns.Publish", self)


def atomic_dynamodb(monkeypatch):
    """DynamoDB applies a conditional write atomically; moto's server reads the item, evaluates the
    condition and writes on a thread per request, so two racing claims could both pass. One lock
    around moto's writes gives the tests DynamoDB's behaviour."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(*args, _original=original, **kwargs):
            with lock:
                return _original(*args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, functools.wraps(original)(locked))
