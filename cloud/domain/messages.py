"""The verdict on a device message, in one place that never raises; the one validator of
schemas/v1 (jsonschema-rs), for the Lambdas and for the tools and tests alike.

    ok, reason = check(kind, message, thing, received_ms)      # kind: the topic's (telemetry, events)
    problems("command", cmd)                                   # the first problem or None (the API)
    errors("event", msg)                                       # every problem, as 'path: reason' lines

A verdict is ok, or a reason that starts with its code (CODES): "schema: samples/0/state: ...".
Checks, in order: the topic's identity (a valid thing name, a kind ingest stores), a JSON object
with none of the rule's fields, the schema (schemas/v1) with the nesting bound, numbers within
I-JSON's range, device = the topic's thing, seq within the key, times within the bounds.
parse() turns payload bytes into a value or a reason (too_large, not_json, too_deep).
cloud/domain/delivery.py applies both to what the rules deliver.
Schemas are checked with jsonschema-rs, compiled once per kind, about five times faster than
fastjsonschema (the validator behind Powertools') on a 30-sample batch. The topic and message
kinds, their versions and the thing-name rule are the fleet contract's (contract/__init__.py).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
from pathlib import Path
from typing import NamedTuple

import jsonschema_rs
import orjson

import contract

KINDS = contract.MESSAGE_OF_TOPIC  # topic kind -> the message (schemas/v1/<message>.schema.json) it carries
INGESTED_KINDS = contract.INGESTED_KINDS  # the topic kinds ingest stores
# The rules add these fields to what they SELECT; they are not the device's.
RULE_FIELDS = ("thing", "kind", "received_ms")
ORIGINAL_FIELD = "payload_b64"  # encode(*, 'base64') AS payload_b64: the payload as published
ENVELOPE_FIELDS = frozenset(RULE_FIELDS + (ORIGINAL_FIELD,))
CODES = ("not_json", "not_object", "too_deep", "too_large", "schema", "identity", "time", "retries_exhausted",
         "internal")
# I-JSON (RFC 7493): numbers beyond 2^53 do not survive every JSON parser (orjson itself turns
# integers past 64 bits into floats), and no MotorGuard reading comes anywhere near.
NUMBER_LIMIT = 2 ** 53
SEQ_LIMIT = 10 ** 10  # the sort key holds 10 digits of seq (history.sort_key)
SCHEMA_DEPTH = 3  # how deep a schema-valid message nests: telemetry's root, samples, a sample
BOUNDED_ELSEWHERE = ("seq", "time")  # SEQ_LIMIT and the time check bound these


class Bounds(NamedTuple):
    """What ingest accepts; the Lambda's environment may change each (ENV_BOUNDS)."""

    max_bytes: int = contract.MAX_PAYLOAD_BYTES
    max_depth: int = 8  # containers in containers; a valid message nests 3 deep (SCHEMA_DEPTH), so room to grow
    max_ahead_ms: int = 5 * 60 * 1000  # how far a device's clock may run ahead of IoT's receive time
    not_before_ms: int = 1577836800000  # 2020-01-01T00:00:00Z: older times come from an unset clock


DEFAULT_BOUNDS = Bounds()
# environment variable -> (field, how its text becomes the field's value)
ENV_BOUNDS = {
    "MAX_PAYLOAD_BYTES": ("max_bytes", int),
    "MAX_DEPTH": ("max_depth", int),
    "TIME_MAX_AHEAD_S": ("max_ahead_ms", lambda s: int(float(s) * 1000)),
    "TIME_NOT_BEFORE": ("not_before_ms", lambda s: _iso_ms(s)),
}


def _iso_ms(text: str) -> int:
    day = datetime.datetime.fromisoformat(text.strip())
    if day.tzinfo is None:
        day = day.replace(tzinfo=datetime.timezone.utc)
    return int(day.timestamp() * 1000)


def bounds_from(environ=os.environ) -> Bounds:
    """DEFAULT_BOUNDS with what environ sets; a value that does not parse keeps its default."""
    values = {}
    for name, (field, convert) in ENV_BOUNDS.items():
        text = environ.get(name)
        if text:
            try:
                values[field] = convert(text)
            except (ValueError, OverflowError):
                pass
    return DEFAULT_BOUNDS._replace(**values)


def reason(code: str, detail: str) -> str:
    return "%s: %s" % (code, " ".join(str(detail).split())[:400])


def code_of(why: str | None) -> str | None:
    return why.split(":", 1)[0] if why else None


# ------------------------------------------------------------------ schemas
def schema_dir() -> Path:
    env = os.environ.get("MOTORGUARD_SCHEMA_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in (here.parents[2], here.parents[1]):  # the repo, or a Lambda asset with schemas/ beside cloud/
        if (base / "schemas" / "v1").is_dir():
            return base / "schemas" / "v1"
    raise FileNotFoundError("schemas/v1 not found; set MOTORGUARD_SCHEMA_DIR")


@functools.lru_cache(maxsize=None)
def schema(kind: str) -> dict:
    """schemas/v1/<kind>.schema.json, for a message kind of the contract (contract.MESSAGE_KINDS)."""
    if kind not in contract.MESSAGE_KINDS:
        raise ValueError("unknown message kind %r (one of %s)" % (kind, ", ".join(contract.MESSAGE_KINDS)))
    return json.loads((schema_dir() / (kind + ".schema.json")).read_text())


@functools.lru_cache(maxsize=None)
def validator(kind: str):
    return jsonschema_rs.validator_for(schema(kind))


def device_part(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in RULE_FIELDS}


# ------------------------------------------------------------------ structure
def scan(value, max_depth: int) -> tuple[int, bool]:
    """(how deep containers nest, capped at max_depth + 1; whether a number is beyond NUMBER_LIMIT).
    A loop with its own stack: a hostile depth costs memory, never Python's recursion limit."""
    stack = [(value, 1)]
    deepest, wild = 0, False
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if depth > max_depth:
                return deepest, wild
        for child in (node.values() if type(node) is dict else node):
            t = type(child)
            if t is dict or t is list:
                stack.append((child, depth + 1))
            elif (t is int or t is float) and not -NUMBER_LIMIT <= child <= NUMBER_LIMIT:
                wild = True
    return deepest, wild


def _wild_path(value, path=()) -> str:
    """Where the first out-of-range number is (called only on values scan() found shallow)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        if isinstance(child, (dict, list)):
            found = _wild_path(child, path + (key,))
            if found:
                return found
        elif type(child) in (int, float) and not -NUMBER_LIMIT <= child <= NUMBER_LIMIT:
            return "/".join(str(p) for p in path + (key,))
    return ""


def structure_problem(message, max_depth: int) -> str | None:
    """too_deep past max_depth, or a number beyond NUMBER_LIMIT (with its path); else None."""
    depth, wild = scan(message, max_depth)
    if depth > max_depth:
        return reason("too_deep", "values nest more than %d deep" % max_depth)
    if wild:
        return reason("schema", "%s: a number beyond +-2^53 (I-JSON, RFC 7493)" % _wild_path(message))
    return None


def _numbers_without_maximum(properties: dict) -> tuple:
    return tuple(k for k, p in properties.items() if k not in BOUNDED_ELSEWHERE and "maximum" not in p and (
        {"number", "integer"} & set(p.get("type") if isinstance(p.get("type"), list) else [p.get("type")])))


@functools.lru_cache(maxsize=None)
def unbounded_fields(kind: str) -> tuple[tuple, tuple]:
    """(top-level fields, sample fields) whose numbers schemas/v1/<kind> leaves without a maximum."""
    props = schema(kind)["properties"]
    sample = props.get("samples", {}).get("items", {}).get("properties", {})
    return _numbers_without_maximum(props), _numbers_without_maximum(sample)


def _wild_field(kind: str, message: dict) -> str | None:
    """Where a schema-valid message has a number beyond NUMBER_LIMIT, or None. Only the numbers
    the schema leaves unbounded are looked at (every message pays this; a full scan() is 4x)."""
    top, per_sample = unbounded_fields(kind)
    for key in top:
        v = message.get(key)
        if v is not None and not -NUMBER_LIMIT <= v <= NUMBER_LIMIT:
            return key
    samples = message.get("samples") or ()
    readings = [s.get(key) for key in per_sample for s in samples]
    readings = [x for x in readings if x is not None]
    if not readings or -NUMBER_LIMIT <= min(readings) and max(readings) <= NUMBER_LIMIT:
        return None
    return _wild_path(samples, ("samples",))


def shape_problem(kind: str, message: dict, max_depth: int) -> str | None:
    """The schema's verdict, with too_deep for a message nested past max_depth. The schema is
    checked first: a valid message is at most SCHEMA_DEPTH deep, so the depth is measured only
    for a message that failed it (jsonschema-rs refuses depth past ~255 with a ValueError, which
    schema_problem turns into a reason; the measure names it too_deep)."""
    why = schema_problem(kind, message)
    if why is None and max_depth >= SCHEMA_DEPTH:
        return None
    depth, _ = scan(message, max_depth)
    if depth > max_depth:
        return reason("too_deep", "values nest more than %d deep" % max_depth)
    return why


# ------------------------------------------------------------------ parsing
class _Constant(Exception):
    pass


def _refuse_constant(name):
    raise _Constant(name)


def _names_a_constant(raw: bytes) -> bool:
    """Whether the JSON fails only for NaN/Infinity (Python's json would take them; RFC 8259 does not)."""
    try:
        json.loads(raw, parse_constant=_refuse_constant)
    except _Constant:
        return True
    except (ValueError, RecursionError, TypeError):
        return False
    return False


def parse(raw: bytes, max_bytes: int = DEFAULT_BOUNDS.max_bytes):
    """(value, None), or (None, reason) for a payload that is too large, empty or not strict JSON.
    orjson refuses NaN, Infinity, invalid UTF-8, lone surrogates and nesting past 1024."""
    if len(raw) > max_bytes:
        return None, reason("too_large", "%d bytes, over the %d-byte limit" % (len(raw), max_bytes))
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as e:
        text = str(e)
    if not raw.strip():
        return None, reason("not_json", "empty payload")
    if "depth" in text or "recursion" in text:
        return None, reason("too_deep", "nested past the parser's limit (%s)" % text)
    if _names_a_constant(raw):
        return None, reason("not_json", "NaN or Infinity is not a JSON number (RFC 8259)")
    return None, reason("not_json", text)


# ------------------------------------------------------------------ checks
def topic_problem(thing, kind) -> str | None:
    """The topic is the authenticated identity (devices/<thing>/<kind>, the policy allows no other)."""
    if not isinstance(thing, str) or not thing:
        return reason("identity", "no thing in the topic (%s/<thing>/%s)" % (contract.TOPIC_PREFIX, kind))
    if not contract.is_thing_name(thing):
        return reason("identity", "invalid thing name %r (1-128 of a-z A-Z 0-9 : _ -)" % thing[:140])
    if kind not in INGESTED_KINDS:
        return reason("identity", "topic kind %r is neither telemetry nor events" % str(kind)[:40])
    return None


def schema_problem(kind: str, message) -> str | None:
    """None when message matches schemas/v1/<kind>, else 'schema: path: problem'. Safe on any
    value: one the validator cannot take (nested past ~255 levels, say) is a reason too."""
    try:
        validator(kind).validate(message)
    except jsonschema_rs.ValidationError as e:
        where = "/".join(str(p) for p in e.instance_path) or "(root)"
        return reason("schema", "%s: %s" % (where, e.message))
    except Exception as e:  # noqa: BLE001 - a value the validator cannot take is a reject, not a crash
        return reason("schema", "cannot be validated (%s: %s)" % (type(e).__name__, e))
    return None


def _when(ms) -> str:
    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return "%d ms" % ms


def time_problem(kind: str, message: dict, received_ms: int, bounds: Bounds) -> str | None:
    """Times a device's clock cannot have produced: too far ahead of IoT's receive time, or before
    any plausible clock (a board that never synchronized counts from 1970 or its build date)."""
    times = [s["time"] for s in message["samples"]] if kind == contract.TELEMETRY else [message["time"]]
    latest, earliest = max(times), min(times)
    if latest > received_ms + bounds.max_ahead_ms:
        return reason("time", "%s is %d s ahead of the receive time %s (at most %d s)" % (
            _when(latest), (latest - received_ms) // 1000, _when(received_ms), bounds.max_ahead_ms // 1000))
    if earliest < bounds.not_before_ms:
        return reason("time", "%s is before %s" % (_when(earliest), _when(bounds.not_before_ms)))
    return None


def check(kind: str, message, thing, received_ms: int, bounds: Bounds = DEFAULT_BOUNDS) -> tuple[bool, str | None]:
    """(True, None) when ingest may store message, the device's own fields, published on
    devices/<thing>/<kind> and received at received_ms; else (False, reason). Never raises."""
    try:
        why = _problem(kind, message, thing, received_ms, bounds)
    except Exception as e:  # noqa: BLE001 - the verdict must not fail; the DLQ keeps the message
        why = reason("internal", "%s: %s" % (type(e).__name__, e))
    return why is None, why


def _problem(kind, message, thing, received_ms, bounds) -> str | None:
    why = topic_problem(thing, kind)
    if why:
        return why
    if not isinstance(message, dict):
        return reason("not_object", "the payload is a JSON %s, not an object" % _json_type(message))
    reserved = [k for k in ENVELOPE_FIELDS if k in message]
    if reserved:
        return reason("identity", "the payload sets %s, which the rule sets" % ", ".join(sorted(reserved)))
    why = shape_problem(KINDS[kind], message, bounds.max_depth)
    if why:
        return why
    wild = _wild_field(KINDS[kind], message)
    if wild:
        return reason("schema", "%s: a number beyond +-2^53 (I-JSON, RFC 7493)" % wild)
    if message["device"] != thing:
        return reason("identity", "device %r published on %r's topic" % (message["device"], thing))
    if message["seq"] >= SEQ_LIMIT:
        return reason("schema", "seq: %d does not fit the key's 10 digits" % message["seq"])
    return time_problem(kind, message, received_ms, bounds)


def _json_type(value) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def problems(kind: str, message) -> str | None:
    """None when the message is valid against schemas/v1/<kind>, else the first problem, as
    'path: reason' (one line). Never raises (the API and the alert Lambda use it)."""
    if not isinstance(message, dict):
        return "(root): not a JSON object"
    why = shape_problem(kind, message, DEFAULT_BOUNDS.max_depth)
    return why.split(": ", 1)[1] if why else None


def errors(kind: str, message) -> list[str]:
    """Every problem of a message against schemas/v1/<kind>, as 'path: reason' lines, by path (empty
    when valid): for the firmware's tests and the tools. The nesting bound applies first, so the
    validator never recurses into a hostile depth; an unknown kind raises ValueError."""
    schema_validator = validator(kind)
    if isinstance(message, (dict, list)):
        bad = structure_problem(message, DEFAULT_BOUNDS.max_depth)
        if bad:
            return ["(root): " + bad]
    found = sorted(schema_validator.iter_errors(message), key=_path_order)
    return ["%s: %s" % ("/".join(str(p) for p in e.instance_path) or "(root)", e.message) for e in found]


def _path_order(error) -> list:
    return [(isinstance(p, str), p) for p in error.instance_path]


def validate(kind: str, message):
    """The message, when valid against schemas/v1/<kind>; else ValueError naming every problem."""
    found = errors(kind, message)
    if found:
        raise ValueError("invalid %s message: %s" % (kind, "; ".join(found)))
    return message


# ------------------------------------------------------------------ rule outputs
def output_bytes(out) -> bytes:
    """A rule output handed over as a Python value, as JSON bytes (what a reject keeps)."""
    try:
        return orjson.dumps(out)
    except TypeError:
        try:
            return json.dumps(out, default=str).encode("utf-8", "surrogatepass")
        except (ValueError, TypeError, RecursionError):
            return b""
