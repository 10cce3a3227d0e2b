"""The rules engine's rules and actions, locally (cloud/local/engine.py runs them): a rule loaded
from cloud/rules.py, the functions by logical name, a message's readable payload (or why it has
none), the AWS side of the actions (s3, sqs, sns, dynamoDBv2, through boto3 clients made once), the
error action's document as AWS IoT writes it, and the ticket that acknowledges a message once
everything it started is done.

    rule = LoadedRule(spec); targets = Targets()
    message, refused = parse_payload(payload)          # refused: None, or Refused(too_large, too_deep, ...)
    targets.run("sqs", {"queue": "dead_letter"}, body, param)
    doc = error_action_doc(rule.name, topic, clientid, payload, failures)

Targets also makes every SNS Publish of the local run refuse what SNS refuses (install_sns_limits):
moto takes a Subject with line breaks, of exactly 100 characters, or a message of 256 KiB counted in
characters rather than bytes, all of which SNS answers with InvalidParameter.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import threading
import uuid
import weakref

import orjson

from cloud import resources
from cloud import rules as rule_defs
from cloud.domain import messages, rejects
from cloud.local import sql
from cloud.local.broker_config import MESSAGE_SIZE_LIMIT

KINDS = ("lambda", "dynamoDBv2", "s3", "sns", "sqs", "republish")
MAX_PAYLOAD_BYTES = MESSAGE_SIZE_LIMIT  # AWS IoT Core's 128 KB (the local broker refuses more too)
# An error document names the original payload in base64; for one refused as too large, only its
# start: SQS takes 256 KB a message, and the start is enough to tell who sent what (the document
# also gives the whole payload's size and SHA-256, to match it with the device's own record).
REFUSED_PAYLOAD_KEPT = 4096
# How deep a payload a rule that reads its JSON may nest: a rule output is encoded with orjson,
# which refuses more than 254 levels, and Python's json (its fallback) recurses and raises
# RecursionError near 1,000. A valid MotorGuard message nests 3 deep; ingest allows 8.
MAX_JSON_DEPTH = 128


def default_functions() -> dict:
    """Logical Lambda name -> handler, imported from cloud.resources.FUNCTIONS."""
    out = {}
    for name, path in resources.FUNCTIONS.items():
        mod, fn = path.rsplit(".", 1)
        out[name] = _lazy(mod, fn)
    return out


def _lazy(mod, fn):
    cache = {}

    def call(event, context):
        if "f" not in cache:
            cache["f"] = getattr(importlib.import_module(mod), fn)
        return cache["f"](event, context)

    call.handler_path = mod + "." + fn  # what a worker process imports (cloud/local/runtime.py)
    return call


def to_json(value) -> str:
    """A rule's output as JSON. orjson: a tenth of json.dumps' time on a 30-sample batch, which the
    engine encodes for every message; json for the integers beyond 64 bits that orjson refuses."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return json.dumps(value, default=str)


class Ticket:
    """One MQTT message's outstanding work: acknowledged when the last part is done."""

    __slots__ = ("parts", "lock", "on_done")

    def __init__(self, on_done):
        self.parts = 1
        self.lock = threading.Lock()
        self.on_done = on_done

    def hold(self):
        with self.lock:
            self.parts += 1

    def release(self, *_):
        with self.lock:
            self.parts -= 1
            last = self.parts == 0
        if last:
            self.on_done()


class ActionError(Exception):
    def __init__(self, action, resource, message):
        super().__init__(message)
        self.action, self.resource, self.message = action, resource, message


class Refused:
    """A message a fired rule could not run its actions on: too large for AWS IoT (any rule), or
    for a rule that reads its JSON (LoadedRule.rule.reads_json) not JSON, not an object, or nested
    past MAX_JSON_DEPTH. It goes to the rule's error action with the reason (REFUSALS) instead."""

    __slots__ = ("reason", "detail")

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail

    def failure(self, rule_name: str) -> ActionError:
        return ActionError("RulesEngine", rule_name, "%s: %s" % (self.reason, self.detail))


class LoadedRule:
    def __init__(self, spec: dict):
        self.name = spec["name"]
        self.spec = spec
        try:
            self.rule = sql.Rule(spec["sql"])
        except sql.SqlError as e:
            raise sql.SqlError("rule %s: %s" % (self.name, e)) from None
        self.actions = [self._load_action(a) for a in spec.get("actions", [])]
        self.error_action = self._load_action(spec["error_action"]) if spec.get("error_action") else None
        self.basic_ingest = bool(spec.get("basic_ingest"))

    def _load_action(self, action: dict):
        if len(action) != 1:
            raise sql.SqlError("rule %s: an action has exactly one type, got %s" % (self.name, sorted(action)))
        kind, params = next(iter(action.items()))
        if kind not in KINDS:
            raise sql.SqlError("rule %s: action type %r is not supported locally" % (self.name, kind))
        templates = {k: sql.compile_template(v) for k, v in params.items() if isinstance(v, str) and "${" in v}
        return kind, params, templates


REFUSALS = ("too_large", "not_json", "not_object", "too_deep")


def parse_payload(payload: bytes):
    """(the message's attributes, None), or ({}, Refused) for a payload whose attributes cannot be
    read: WHERE then sees them all Undefined, and only a rule whose SELECT reads JSON is refused
    (a SELECT *, topic(2) AS thing ... needs a JSON object, and a Lambda action does not take a
    binary payload: "Working with binary payloads"); encode(*, 'base64') reads any payload."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        # AWS IoT refuses it before any rule; locally, each rule it would reach records it.
        return {}, Refused("too_large", "a payload of %d bytes, over AWS IoT's %d" % (len(payload), MAX_PAYLOAD_BYTES))
    try:
        message = orjson.loads(payload)
    except ValueError as e:  # orjson.JSONDecodeError; it refuses nesting past 1,024 itself, without recursion
        deep = "depth" in str(e)
        return {}, Refused("too_deep" if deep else "not_json", "the payload is not JSON (%s)" % str(e)[:200])
    if not isinstance(message, dict):
        return {}, Refused("not_object", "the payload is JSON but not an object")
    if nested_past(payload, message, MAX_JSON_DEPTH):
        return {}, Refused("too_deep", "the payload nests more than %d deep" % MAX_JSON_DEPTH)
    return message, None


def nested_past(payload: bytes, message, limit: int) -> bool:
    """Whether message nests deeper than limit, measured without recursion. Only a payload with
    more brackets than limit can, and counting them costs a microsecond, so an ordinary message
    (a 30-sample batch has 32) is never walked."""
    if payload.count(b"{") + payload.count(b"[") <= limit:
        return False
    depth, _ = messages.scan(message, limit)
    return depth > limit


def evaluation_error_body(topic: str, payload: bytes, error: Exception) -> str:
    """The dead letter of a message whose evaluation failed (it would fail again if redelivered), in
    the envelope every reject has (cloud/domain/rejects.py), code internal."""
    why = "internal: the rules engine could not evaluate it (%s: %s)" % (type(error).__name__, error)
    return rejects.envelope(why, "rules-engine", original=payload, source="original", extra={"topic": topic})


def error_action_doc(rule_name, topic, clientid, payload: bytes, failures, reason: str | None = None) -> dict:
    """What AWS IoT sends a rule's error action; reason (local) names why the engine refused it."""
    doc = {
        "ruleName": rule_name,
        "topic": topic,
        "cloudwatchTraceId": str(uuid.uuid4()),
        "clientId": clientid,
        "base64OriginalPayload": base64.b64encode(payload[:REFUSED_PAYLOAD_KEPT] if reason == "too_large"
                                                  else payload).decode(),
        "failures": [{"failedAction": f.action, "failedResource": f.resource, "errorMessage": f.message[:500]}
                     for f in failures],
    }
    if reason:  # the engine refused it: why, and what the whole payload was (the bytes may be only its start)
        doc["reason"] = reason
        doc["payloadBytes"] = len(payload)
        doc["payloadSha256"] = hashlib.sha256(payload).hexdigest()
    return doc


# SNS's Publish limits (its API reference): a Subject of fewer than 100 characters, no line breaks
# or control characters (and, in an older revision, ASCII only: the local check holds to the
# stricter reading); a message of at most 256 KiB of UTF-8, its attributes counted in.
SNS_SUBJECT_MAX_CHARS = 99
SNS_MESSAGE_MAX_BYTES = 262_144
_REFUSAL = "motorguard_sns_refusal"  # where a refusal waits, in the request's context, for the call
_limited_sessions = weakref.WeakSet()


def sns_publish_problem(params: dict) -> str | None:
    """Why SNS would refuse a Publish with these parameters (its error message), or None."""
    subject = params.get("Subject")
    if isinstance(subject, str):
        if not subject or len(subject) > SNS_SUBJECT_MAX_CHARS:
            return "Invalid parameter: Subject (%d characters; SNS takes 1 to %d)" % (len(subject), SNS_SUBJECT_MAX_CHARS)
        odd = next((i for i, ch in enumerate(subject) if not " " <= ch <= "~"), None)
        if odd is not None:
            return ("Invalid parameter: Subject (character %d is %r: line breaks, control characters and non-ASCII "
                    "are refused)" % (odd, subject[odd]))
        if subject[0] == " ":
            return "Invalid parameter: Subject (it begins with a space)"
    message = params.get("Message")
    if isinstance(message, str):
        if not message:
            return "Invalid parameter: Empty message"
        size = len(message.encode("utf-8", "surrogatepass"))
        for name, attr in (params.get("MessageAttributes") or {}).items():
            value = attr.get("StringValue") or attr.get("BinaryValue") or ""
            size += len(name.encode()) + len(str(attr.get("DataType", "")).encode()) + len(
                value if isinstance(value, bytes) else str(value).encode())
        if size > SNS_MESSAGE_MAX_BYTES:
            return "Invalid parameter: Message too long (%d bytes with its attributes; SNS takes %d)" % (
                size, SNS_MESSAGE_MAX_BYTES)
    return None


def _check_publish(params, context, **_):
    problem = sns_publish_problem(params)
    if problem:
        context[_REFUSAL] = problem


def _refuse_publish(context, **_):
    """Answers a refused Publish as SNS does, without sending it: the client then raises its own
    InvalidParameterException (code InvalidParameter, HTTP 400), as for AWS's answer."""
    problem = context.get(_REFUSAL)
    if not problem:
        return None
    from botocore.awsrequest import AWSResponse

    parsed = {"Error": {"Type": "Sender", "Code": "InvalidParameter", "Message": problem},
              "ResponseMetadata": {"RequestId": str(uuid.uuid4()), "HTTPStatusCode": 400}}
    return AWSResponse("local://sns-limits", 400, {}, None), parsed


def install_sns_limits(session=None) -> bool:
    """Makes every SNS Publish through session's clients (default: boto3's default session, which
    the in-process Lambdas use) refuse what SNS refuses, with SNS's error. Clients made before the
    first install do not carry the check, so it then forgets the Lambdas' cached clients
    (cloud/lambdas/common.py) for new ones. Idempotent; True when it installed."""
    import boto3

    if session is None:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
    if session in _limited_sessions:
        return False
    session.events.register("before-parameter-build.sns.Publish", _check_publish, unique_id=_REFUSAL + "-check")
    session.events.register("before-call.sns.Publish", _refuse_publish, unique_id=_REFUSAL + "-answer")
    _limited_sessions.add(session)
    from cloud.lambdas import common

    common.reset_clients()
    return True


class Targets:
    """boto3 clients and the targets the actions name (queue URL, topic ARN, table), each made or
    looked up once rather than on every message. Making one installs SNS's limits on its session
    (install_sns_limits): the engine's and the in-process Lambdas' publishes are held to them."""

    def __init__(self, session=None):
        self._session = session
        install_sns_limits(session)
        self._clients = {}
        self._targets = {}
        self._lock = threading.Lock()  # boto3 clients and resources are not created thread-safely

    def client(self, service):
        c = self._clients.get(service)
        if c is None:
            import boto3

            with self._lock:
                c = self._clients.get(service) or (self._session or boto3).client(service)
                self._clients[service] = c
        return c

    def resolve(self, service, name):
        got = self._targets.get((service, name))
        if got is None:
            if service == "sqs":
                got = self.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
            elif service == "sns":
                got = self.client("sns").create_topic(Name=name)["TopicArn"]
            else:
                import boto3

                with self._lock:
                    got = (self._session or boto3).resource("dynamodb").Table(name)
            self._targets[(service, name)] = got
        return got

    def send(self, queue_name: str, body: str) -> None:
        self.client("sqs").send_message(QueueUrl=self.resolve("sqs", queue_name), MessageBody=body)

    def run(self, kind, params, body: str, param) -> None:
        """One s3, sqs, sns or dynamoDBv2 action with the rule's output body; param(key) is the
        action's parameter with its ${...} templates filled in."""
        if kind == "s3":
            self.client("s3").put_object(Bucket=rule_defs.target(params["bucket"]), Key=param("key"),
                                         Body=body.encode())
        elif kind == "sqs":
            self.send(rule_defs.target(params["queue"]), body)
        elif kind == "sns":
            arn = self.resolve("sns", rule_defs.target(params["topic"]))
            self.client("sns").publish(TopicArn=arn, Message=body)
        elif kind == "dynamoDBv2":
            from cloud.domain.history import to_dynamo

            table = params["table"]  # a logical name of cloud/resources.py TABLES, or a physical name
            name = resources.TABLES[table][0] if table in resources.TABLES else table
            self.resolve("dynamodb", name).put_item(Item=to_dynamo(json.loads(body)))
        else:
            raise ValueError("not an AWS action: %r" % kind)
