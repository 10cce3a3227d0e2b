"""Does an AWS IoT Core policy allow an action? Decided the way AWS IoT Core documents it.

    decision = evaluate(policy.document(), "iot:Publish", "devices/motor-1/status",
                        Context(thing="motor-1", client_id="motor-1", retain=True))
    decision.allowed, decision.reason

What it follows, each point from the AWS IoT Core developer guide (section named) and tested beside it
in tests/provisioning/test_policy_eval.py:
- "AWS IoT Core policy actions": iot:Connect acts on `client/<clientId>`; iot:Publish, iot:RetainPublish
  and iot:Receive on `topic/<topic>`; iot:Subscribe on `topicfilter/<filter>`. A retained publish needs
  both iot:Publish and iot:RetainPublish ("Retained message policy examples"); so does a retained Will,
  which is checked when the client connects.
- "AWS IoT Core policy elements" / IAM's evaluation logic: a request is denied unless a statement
  allows it, and an explicit Deny wins over any Allow. Action and Resource take one string or a list;
  `*` and `?` are wildcards in both (in a resource, `*` crosses `/`).
- "Using wildcard characters in MQTT and AWS IoT Core policies": the MQTT wildcards `+` and `#` are
  plain characters in a policy resource: a filter resource `devices/+/cmd` allows subscribing to that
  exact filter, not to `devices/a/cmd`.
- "Policy variables": `${iot:Connection.Thing.ThingName}`, `${iot:ClientId}`,
  `${iot:Connection.Thing.IsAttached}` and the escapes `${*}`, `${?}`, `${$}`. A variable that has no
  value in this connection (no thing attached) leaves its statement out: the resource cannot match.
- Conditions ("Connect policy examples", "Thing policy examples"): Bool, StringEquals, StringNotEquals,
  StringLike, StringNotLike, with the set qualifiers ForAllValues: / ForAnyValue: (used with
  iot:ConnectAttributes: PersistentConnect for a session that is not clean, LastWill for a Will) and
  the IfExists suffix. ForAllValues over an empty set is true, as in IAM. An operator or key this
  module does not know raises PolicyError rather than guessing: an unknown condition must never read
  as "allowed".
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

ACTIONS = ("iot:Connect", "iot:Publish", "iot:RetainPublish", "iot:Subscribe", "iot:Receive")
RESOURCE_TYPE = {"iot:Connect": "client", "iot:Publish": "topic", "iot:RetainPublish": "topic",
                 "iot:Receive": "topic", "iot:Subscribe": "topicfilter"}
PERSISTENT_CONNECT = "PersistentConnect"
LAST_WILL = "LastWill"


class PolicyError(ValueError):
    """The document is not one this evaluator can decide (malformed, or an element it does not know)."""


@dataclass(frozen=True)
class Context:
    """What AWS IoT Core knows about the connection: the thing its certificate is attached to (None when
    no thing is), the client id it connected with, and, for a CONNECT, its connect attributes."""

    thing: str | None
    client_id: str
    region: str = "us-east-1"
    account: str = "123456789012"
    connect_attributes: frozenset = field(default_factory=frozenset)

    def variables(self) -> dict:
        v = {"iot:ClientId": self.client_id, "iot:Connection.Thing.IsAttached": "true" if self.thing else "false"}
        if self.thing:
            v["iot:Connection.Thing.ThingName"] = self.thing
        return v

    def condition_values(self, key: str):
        """The request's values for a condition key: a list, or None when the key has no value here."""
        if key == "iot:ConnectAttributes":
            return sorted(self.connect_attributes)
        value = self.variables().get(key)
        return None if value is None else [value]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # which statement decided, or why none did: fit for a log line and a test message

    def __bool__(self):
        return self.allowed


def arn(action: str, name: str, ctx: Context) -> str:
    """The resource ARN a request names: arn:aws:iot:<region>:<account>:<client|topic|topicfilter>/<name>."""
    if action not in RESOURCE_TYPE:
        raise PolicyError("unknown action %r (one of %s)" % (action, ", ".join(ACTIONS)))
    return "arn:aws:iot:%s:%s:%s/%s" % (ctx.region, ctx.account, RESOURCE_TYPE[action], name)


def evaluate(documents, action: str, name: str, ctx: Context) -> Decision:
    """Is `action` on resource `name` (a client id, topic or topic filter) allowed by the policy
    documents (one dict or a list: every policy attached to the certificate counts)?"""
    docs = [documents] if isinstance(documents, dict) else list(documents)
    resource = arn(action, name, ctx)
    allow = None
    for d, doc in enumerate(docs):
        for s, st in enumerate(_statements(doc)):
            label = st.get("Sid") or "statement %d of policy %d" % (s + 1, d + 1)
            if not _matches(st, action, resource, ctx):
                continue
            if st["Effect"] == "Deny":
                return Decision(False, "explicitly denied by %s" % label)
            allow = allow or label
    if allow:
        return Decision(True, "allowed by %s" % allow)
    return Decision(False, "no statement allows %s on %s" % (action, resource))


def evaluate_all(documents, requests, ctx: Context) -> Decision:
    """Every (action, name) of one MQTT packet must be allowed (a retained publish is two)."""
    for action, name in requests:
        d = evaluate(documents, action, name, ctx)
        if not d:
            return d
    return Decision(True, "; ".join(evaluate(documents, a, n, ctx).reason for a, n in requests))


def connect_requests(client_id: str, will_topic: str | None = None, will_retain: bool = False) -> list:
    """What a CONNECT asks for: iot:Connect, and for a Will the right to publish it (and retain it)."""
    reqs = [("iot:Connect", client_id)]
    if will_topic is not None:
        reqs.append(("iot:Publish", will_topic))
        if will_retain:
            reqs.append(("iot:RetainPublish", will_topic))
    return reqs


def publish_requests(topic: str, retain: bool) -> list:
    return [("iot:Publish", topic)] + ([("iot:RetainPublish", topic)] if retain else [])


def connect_attributes(clean_session: bool, has_will: bool) -> frozenset:
    attrs = set()
    if not clean_session:
        attrs.add(PERSISTENT_CONNECT)
    if has_will:
        attrs.add(LAST_WILL)
    return frozenset(attrs)


# ------------------------------------------------------------------ the document

def check_document(doc) -> None:
    """Raises PolicyError when the document is malformed or uses an element this module cannot decide."""
    for st in _statements(doc):
        _conditions_hold(st.get("Condition", {}), Context(thing="x", client_id="x"))

def _statements(doc) -> list:
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise PolicyError("a policy document is a JSON object with a Statement")
    sts = doc["Statement"]
    sts = [sts] if isinstance(sts, dict) else sts
    if not isinstance(sts, list) or not sts:
        raise PolicyError("Statement must be an object or a non-empty list of objects")
    for st in sts:
        if not isinstance(st, dict):
            raise PolicyError("every statement must be an object")
        unknown = set(st) - {"Sid", "Effect", "Action", "Resource", "Condition"}
        if unknown:
            raise PolicyError("statement element(s) %s are not evaluated here (AWS IoT policies use Effect, "
                              "Action, Resource, Condition)" % ", ".join(sorted(unknown)))
        if st.get("Effect") not in ("Allow", "Deny"):
            raise PolicyError("Effect must be Allow or Deny, not %r" % (st.get("Effect"),))
        for key in ("Action", "Resource"):
            if not _strings(st.get(key)):
                raise PolicyError("%s must be a string or a list of strings" % key)
    return sts


def _strings(value) -> list:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return []


def _matches(st, action, resource, ctx) -> bool:
    if not any(_glob(pattern, action, fold_case=True) for pattern in _strings(st["Action"])):
        return False
    if not any(_resource_matches(pattern, resource, ctx) for pattern in _strings(st["Resource"])):
        return False
    return _conditions_hold(st.get("Condition", {}), ctx)


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_ESCAPES = {"*": "\x00", "?": "\x01", "$": "$"}  # ${*} and ${?} are the literal characters


def _resource_matches(pattern: str, resource: str, ctx: Context) -> bool:
    values = ctx.variables()
    missing = []

    def substitute(m):
        name = m.group(1)
        if name in _ESCAPES:
            return _ESCAPES[name]
        if name not in values:
            missing.append(name)
            return ""
        return values[name].replace("*", "\x00").replace("?", "\x01")  # a value is never a wildcard

    text = _VARIABLE.sub(substitute, pattern)
    return not missing and _glob(text, resource)


def _glob(pattern: str, text: str, fold_case: bool = False) -> bool:
    """IAM wildcards: * any run of characters (slashes too), ? one character; nothing else special
    (so the MQTT wildcards + and # are plain). \\x00 and \\x01 stand for literal * and ?."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    rx = rx.replace("\x00", r"\*").replace("\x01", r"\?")
    return re.fullmatch(rx, text, re.DOTALL | (re.IGNORECASE if fold_case else 0)) is not None


_OPERATORS = {
    "StringEquals": lambda actual, wanted: actual == wanted,
    "StringNotEquals": lambda actual, wanted: actual != wanted,
    "StringLike": lambda actual, wanted: fnmatch.fnmatchcase(actual, wanted.replace("[", "[[]")),
    "StringNotLike": lambda actual, wanted: not fnmatch.fnmatchcase(actual, wanted.replace("[", "[[]")),
    "Bool": lambda actual, wanted: actual.lower() == wanted.lower(),
}
_NEGATED = ("StringNotEquals", "StringNotLike")
_KNOWN_KEYS = ("iot:ClientId", "iot:Connection.Thing.ThingName", "iot:Connection.Thing.IsAttached",
               "iot:ConnectAttributes")


def _conditions_hold(conditions, ctx: Context) -> bool:
    if not isinstance(conditions, dict):
        raise PolicyError("Condition must be an object of operators")
    for op, keys in conditions.items():
        qualifier, _, base = op.rpartition(":")
        if_exists = base.endswith("IfExists")
        base = base[: -len("IfExists")] if if_exists else base
        if base not in _OPERATORS or qualifier not in ("", "ForAllValues", "ForAnyValue"):
            raise PolicyError("condition operator %r is not evaluated here" % op)
        if not isinstance(keys, dict):
            raise PolicyError("condition %s must map keys to values" % op)
        for key, wanted in keys.items():
            if key not in _KNOWN_KEYS:
                raise PolicyError("condition key %r is not evaluated here (known: %s)" % (key, ", ".join(_KNOWN_KEYS)))
            wanted = _strings(wanted) if not isinstance(wanted, bool) else [str(wanted).lower()]
            if not wanted:
                raise PolicyError("condition %s %s needs a string or a list of strings" % (op, key))
            if not _condition_holds(qualifier, base, if_exists, ctx.condition_values(key), wanted):
                return False
    return True


def _condition_holds(qualifier, base, if_exists, actual, wanted) -> bool:
    test = _OPERATORS[base]

    def one(value):
        # A negated operator holds when the value matches none of the listed ones; the others when any.
        return all(test(value, w) for w in wanted) if base in _NEGATED else any(test(value, w) for w in wanted)

    if qualifier == "ForAllValues":
        return all(one(v) for v in (actual or []))  # vacuously true for no values, as in IAM
    if actual is None or (qualifier == "" and not actual):
        return if_exists  # the key is absent: only ...IfExists holds
    if qualifier == "ForAnyValue":
        return any(one(v) for v in actual)
    return one(actual[0]) if len(actual) == 1 else any(one(v) for v in actual)
