"""AWS services for the local IoT Core: a moto server over real HTTP with every resource of
cloud/resources.py, so the Lambdas' ordinary boto3 clients work unchanged (AWS_ENDPOINT_URL)."""

from __future__ import annotations

import os
import socket

from cloud import resources

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_endpoint(url: str) -> None:
    """Points this process's boto3 (and so the in-process Lambdas) at url with throwaway credentials."""
    os.environ["AWS_ENDPOINT_URL"] = url
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF lines would flood a local terminal
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # rejections show in the DLQ count
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from cloud.lambdas import common
    from cloud.local import actions

    common.reset_clients()
    actions.install_sns_limits()  # the Lambdas' SNS publishes refuse what SNS refuses, engine or not


def create_resources(url: str) -> dict:
    import boto3

    kw = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "local", "aws_secret_access_key": "local"}
    ddb = boto3.client("dynamodb", **kw)
    existing = set(ddb.list_tables()["TableNames"])
    for name, pk, sk, ttl in resources.TABLES.values():
        if name in existing:
            continue
        keys = [{"AttributeName": pk, "KeyType": "HASH"}]
        attrs = [{"AttributeName": pk, "AttributeType": "S"}]
        if sk:
            keys.append({"AttributeName": sk, "KeyType": "RANGE"})
            attrs.append({"AttributeName": sk, "AttributeType": "S"})
        ddb.create_table(TableName=name, KeySchema=keys, AttributeDefinitions=attrs, BillingMode="PAY_PER_REQUEST")
        if ttl:
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl})
    boto3.client("s3", **kw).create_bucket(Bucket=resources.ARCHIVE_BUCKET)
    topic = boto3.client("sns", **kw).create_topic(Name=resources.ALERTS_TOPIC)["TopicArn"]
    dlq = boto3.client("sqs", **kw).create_queue(QueueName=resources.DEAD_LETTER_QUEUE)["QueueUrl"]
    return {"alerts_topic_arn": topic, "dead_letter_queue_url": dlq}


class MotoServer:
    """moto in server mode on 127.0.0.1: start() gives it the local cloud's resources and points
    this process's boto3 at it; start(provision=False) only serves (an empty account, this
    process's environment untouched), for a caller that brings its own."""

    def __init__(self, port: int | None = None):
        from moto.server import ThreadedMotoServer

        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self, provision: bool = True) -> "MotoServer":
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server.start()
        if provision:
            self.arns = create_resources(self.url)
            use_endpoint(self.url)
        return self

    def stop(self):
        self._server.stop()
