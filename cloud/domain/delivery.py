"""What the rules deliver to ingest, judged: a queued body or a Lambda action's event, whatever it
holds, into an Inspected verdict that never raises.

    seen = inspect_body(record.body, now_ms)      # a queued rule output (SQS record body)
    seen = inspect_event(event, now_ms)           # a rule output handed to a Lambda action

Two shapes of rule output arrive (docs/cloud.md, Rejects):
- the original payload: {"payload_b64": encode(*, 'base64'), "thing", "kind", "received_ms"}, what
  every rule of cloud/rules.py sends. The bytes the device published are the source of truth: every
  check runs on them, nothing the device sends can pass for a rule field, and a reject keeps them;
- the device's fields merged with the rule's (SELECT *, topic(2) AS thing, ...), what the rules
  sent before, still read so that a deploy loses nothing queued by the previous rules. The rule
  has already overwritten any same-named field of the payload (so those cannot be told from the
  rule's), and a reject keeps the rule output, not the payload.
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

import orjson

from cloud.domain.messages import (DEFAULT_BOUNDS, ENVELOPE_FIELDS, ORIGINAL_FIELD, Bounds, check, code_of,
                                   device_part, output_bytes, parse, reason, topic_problem)


class Inspected(NamedTuple):
    """One rule output, judged. original: the bytes a reject keeps (source says which they are)."""

    ok: bool
    reason: str | None
    message: dict | None  # the device's message; only when ok
    thing: str | None
    kind: str | None
    received_ms: int
    original: bytes
    source: str  # "original" (as published) or "rule_output" (as queued)
    raw: str | None = None  # the JSON text to store when ok


def _received(out: dict, now_ms: int) -> int:
    t = out.get("received_ms")
    return t if type(t) is int and t > 0 else now_ms


def _text(value) -> str | None:
    return value if isinstance(value, str) or value is None else str(value)[:200]


def is_envelope(out) -> bool:
    """Whether a rule output carries the original payload (and nothing of the device's besides)."""
    return isinstance(out, dict) and isinstance(out.get(ORIGINAL_FIELD), str) and out.keys() <= ENVELOPE_FIELDS


def original_of(out: dict) -> bytes | None:
    try:
        return base64.b64decode(out[ORIGINAL_FIELD], validate=True)
    except (binascii.Error, ValueError):
        return None


def inspect_payload(raw: bytes, thing, kind, received_ms: int, bounds: Bounds = DEFAULT_BOUNDS) -> Inspected:
    """The payload bytes as the device published them on devices/<thing>/<kind>."""
    def verdict(why, message=None):
        return Inspected(why is None, why, message if why is None else None, _text(thing), _text(kind), received_ms,
                         raw, "original", raw.decode() if why is None else None)

    why = topic_problem(thing, kind)
    if why:
        return verdict(why)
    value, why = parse(raw, bounds.max_bytes)
    if why:
        return verdict(why)
    ok, why = check(kind, value, thing, received_ms, bounds)
    return verdict(why, value)


def inspect_output(out, body: bytes, now_ms: int, bounds: Bounds = DEFAULT_BOUNDS) -> Inspected:
    """One rule output (parsed) and its bytes as they arrived."""
    if not isinstance(out, dict):
        return Inspected(False, reason("not_object", "the rule output is not a JSON object"), None, None, None,
                         now_ms, body, "rule_output")
    thing, kind, received = out.get("thing"), out.get("kind"), _received(out, now_ms)
    if is_envelope(out):
        raw = original_of(out)
        if raw is None:
            return Inspected(False, reason("not_json", "%s is not base64" % ORIGINAL_FIELD), None, _text(thing),
                             _text(kind), received, body, "rule_output")
        return inspect_payload(raw, thing, kind, received, bounds)

    def verdict(why, message=None):
        return Inspected(why is None, why, message if why is None else None, _text(thing), _text(kind), received,
                         body, "rule_output", None)

    why = topic_problem(thing, kind)
    if why:
        return verdict(why)
    if len(body) > bounds.max_bytes + 256:  # the rule's three fields take well under 256 bytes
        return verdict(reason("too_large", "a %d-byte rule output, over the %d-byte payload limit"
                              % (len(body), bounds.max_bytes)))
    message = device_part(out)
    if not message:  # {} published, or (an engine that passes them on) a payload that was no object
        return verdict(reason("schema", "(root): the rule output holds no device fields"))
    ok, why = check(kind, message, thing, received, bounds)
    return verdict(why, message)


def inspect_body(body, now_ms: int, bounds: Bounds = DEFAULT_BOUNDS) -> Inspected:
    """A queued rule output, as an SQS record's body. Never raises."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    try:
        # No size bound on the body itself: SQS bounds it, and an oversized original inside it
        # is only found (and kept, for the reject) by decoding it.
        out, why = parse(raw, len(raw))
        if why:
            return Inspected(False, reason(code_of(why), "the queued body: " + why.split(": ", 1)[1]), None, None,
                             None, now_ms, raw, "rule_output")
        seen = inspect_output(out, raw, now_ms, bounds)
        return seen._replace(raw=body) if seen.ok and seen.source == "rule_output" else seen
    except Exception as e:  # noqa: BLE001 - a bug here must cost one message, not the batch
        return Inspected(False, reason("internal", "%s: %s" % (type(e).__name__, e)), None, None, None, now_ms, raw,
                         "rule_output")


def inspect_event(event, now_ms: int, bounds: Bounds = DEFAULT_BOUNDS) -> Inspected:
    """A rule output handed to a Lambda action (already parsed by the runtime). Never raises."""
    try:
        return inspect_output(event, output_bytes(event), now_ms, bounds)
    except Exception as e:  # noqa: BLE001 - a bug here must cost one message, not its retries
        return Inspected(False, reason("internal", "%s: %s" % (type(e).__name__, e)), None, None, None, now_ms,
                         b"", "rule_output")


def route_of(body) -> tuple:
    """(thing, kind, received_ms or None, original bytes, source) of a queued body, whatever it
    holds: what a dead letter records of a message no function could store. Never raises."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    try:
        out = orjson.loads(raw)
    except Exception:  # noqa: BLE001 - not JSON: nothing to route by
        return None, None, None, raw, "queued_body"
    if not isinstance(out, dict):
        return None, None, None, raw, "queued_body"
    received = out.get("received_ms") if type(out.get("received_ms")) is int else None
    original = original_of(out) if is_envelope(out) else None
    if original is not None:
        return _text(out.get("thing")), _text(out.get("kind")), received, original, "original"
    return _text(out.get("thing")), _text(out.get("kind")), received, raw, "rule_output"
