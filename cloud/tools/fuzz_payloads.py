"""Mutated device payloads for `make fuzz` (cloud/tools/fuzz.py), and the oracle that says which of them
ingest must store.

    rng = random.Random(seed)
    case = make_case(rng, i, now_ms)        # Case(label, thing, kind, raw bytes, ...)
    oracle(case.thing, case.kind, case.raw, now_ms)   # True: must be stored; False: must be rejected

The oracle is written apart from cloud/domain/messages.py on purpose, on other parsers and
validators (Python's json, the jsonschema package on the same schema files, a recursive depth
count), so that a mistake in one is a disagreement the fuzz counts rather than the same mistake
twice. It encodes the rules of docs/cloud.md (Rejects): strict JSON (RFC 8259: no NaN/Infinity),
an object, at most 8 deep, numbers within +-2^53, the schema, none of the rule's fields, device =
the topic's thing (a valid thing name: the contract's rule, as the topic kinds ingest stores),
seq within the key's 10 digits, times within the bounds.
"""

from __future__ import annotations

import functools
import json
import random
import re
from typing import NamedTuple

import jsonschema

import contract
from cloud.domain import messages

BOOT = re.compile(r"[0-9a-f]{8}\Z")  # Python's '$' would also match before a final newline
RESERVED = ("thing", "kind", "received_ms", "payload_b64")
MAX_BYTES, MAX_DEPTH, AHEAD_MS, NOT_BEFORE_MS = 128 * 1024, 8, 300_000, 1577836800000
LIMIT = 2 ** 53
EVENTS = {"BOOT": "STOPPED", "STARTED": "RUNNING", "STOPPED": "STOPPED", "ESTOP": "STOPPED", "FAULT": "FAULT",
          "FAULT_CLEARED": "STOPPED"}
REASONS = ["temp_sensor_implausible", "current_sensor_implausible", "overtemp", "overcurrent",
           "overtemp_overcurrent", "watchdog"]


class Case(NamedTuple):
    label: str  # the mutation applied
    thing: str  # topic(2)
    kind: str  # topic(3)
    raw: bytes  # the payload as published

    @property
    def topic(self) -> str:
        """devices/<thing>/<kind>, whatever they hold (contract.topic takes only the contract's kinds)."""
        return "%s/%s/%s" % (contract.TOPIC_PREFIX, self.thing, self.kind)


# ------------------------------------------------------------------ valid messages
def head(rng: random.Random, thing: str, i: int) -> dict:
    return {"v": 1, "device": thing, "boot": "%08x" % (i & 0xFFFFFFFF), "fw": "0.%d.%d" % (rng.randrange(9), i % 7),
            "uptime_s": rng.randrange(10 ** 6), "heap_free": rng.randrange(120000), "rssi": -rng.randrange(128),
            "seq": i, "dropped": rng.choice([0, 0, 0, rng.randrange(900)])}


def telemetry(rng: random.Random, thing: str, i: int, now_ms: int) -> dict:
    n = rng.choice([1, 5, 30, 30, 30, rng.randrange(1, 31)])
    t0 = now_ms - rng.randrange(3_600_000)
    samples = [{"time": t0 + k * 1000, "temperature_c": rng.choice([None, round(rng.uniform(-20, 90), 1)]),
                "current_a": rng.choice([None, round(rng.uniform(0, 5), 2)]), "position": round(rng.uniform(0, 180), 1),
                "speed": rng.randrange(1001), "state": rng.choice(["STOPPED", "RUNNING", "FAULT"])} for k in range(n)]
    return dict(head(rng, thing, i), samples=samples)


def event(rng: random.Random, thing: str, i: int, now_ms: int) -> dict:
    name = rng.choice(sorted(EVENTS))
    msg = dict(head(rng, thing, i), time=now_ms - rng.randrange(3_600_000), event=name, state=EVENTS[name],
               temperature_c=round(rng.uniform(10, 60), 1), current_a=rng.choice([None, 1.25]))
    if name == "FAULT" or rng.random() < 0.2:
        msg["reason"] = rng.choice(REASONS)
    return msg


# ------------------------------------------------------------------ mutations
def _text(msg) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode()


def _times(msg: dict, kind: str, delta_ms: int) -> dict:
    if kind == "telemetry":
        return dict(msg, samples=[dict(s, time=s["time"] + delta_ms) for s in msg["samples"]])
    return dict(msg, time=msg["time"] + delta_ms)


def _some_container(rng, msg, kind):
    return rng.choice(msg["samples"]) if kind == "telemetry" and rng.random() < 0.5 else msg


def m_valid(rng, thing, kind, msg, now):
    return thing, kind, _text(msg)


def m_edge(rng, thing, kind, msg, now):
    """Valid at a bound: just inside the clock skew, at 2020-01-01, at 2^53, 600 samples."""
    pick = rng.randrange(4)
    if pick == 0:
        latest = max(s["time"] for s in msg["samples"]) if kind == "telemetry" else msg["time"]
        msg = _times(msg, kind, now + AHEAD_MS - 5_000 - latest)
    elif pick == 1:
        earliest = min(s["time"] for s in msg["samples"]) if kind == "telemetry" else msg["time"]
        msg = _times(msg, kind, NOT_BEFORE_MS - earliest)
    elif pick == 2:
        msg = dict(msg, uptime_s=LIMIT)
    elif kind == "telemetry":
        s = msg["samples"][0]
        msg = dict(msg, samples=[dict(s, time=s["time"] - 600_000 + k * 1000) for k in range(600)])
    return thing, kind, _text(msg)


def m_bytes(rng, thing, kind, msg, now):
    raw = bytearray(_text(msg))
    how = rng.randrange(3)
    if how == 0:  # flips
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    elif how == 1:  # truncation
        del raw[rng.randrange(len(raw)):]
    else:  # junk in
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw) + 1):0] = rng.choice([b"{", b"]", b'"', b",", b":", b"\\", b"\x00", b"\xff",
                                                             b"NaN", b"-", b"1e999", b" ", b"\\ud800", b"\xed\xa0\x80"])
    return thing, kind, bytes(raw)


def m_deep(rng, thing, kind, msg, now):
    depth = rng.choice([rng.randint(4, 10), 50, 300, 1000, 1100, 5000])
    opener, closer = (b"[", b"]") if rng.random() < 0.5 else (b'{"a":', b"}")
    nest = opener * depth + b"1" + closer * depth
    if rng.random() < 0.3:
        return thing, kind, nest
    target = _some_container(rng, msg, kind)
    target[rng.choice(sorted(target))] = "@@"
    return thing, kind, _text(msg).replace(b'"@@"', nest, 1)


def m_types(rng, thing, kind, msg, now):
    target = _some_container(rng, msg, kind)
    target[rng.choice(sorted(target))] = rng.choice(
        [None, True, 0, -1, 1.5, "", "x" * 40, [], {}, [1, 2], {"a": 1}, "1700000000000"])
    return thing, kind, _text(msg)


def m_drop(rng, thing, kind, msg, now):
    target = _some_container(rng, msg, kind)
    del target[rng.choice(sorted(target))]
    return thing, kind, _text(msg)


def m_nan(rng, thing, kind, msg, now):
    _some_container(rng, msg, kind)["temperature_c" if rng.random() < 0.5 else "current_a"] = "@@"
    return thing, kind, _text(msg).replace(b'"@@"', rng.choice([b"NaN", b"Infinity", b"-Infinity"]), 1)


def m_huge(rng, thing, kind, msg, now):
    token = rng.choice([b"1e400", b"1e300", b"-1e300", str(10 ** 30).encode(), str(2 ** 64).encode(),
                        str(-2 ** 63 - 1).encode(), str(LIMIT + 1).encode(), b"9" * 400])
    if kind == "telemetry" and rng.random() < 0.5:
        msg["samples"][0][rng.choice(["temperature_c", "current_a", "time"])] = "@@"
    else:
        msg[rng.choice(["uptime_s", "heap_free", "dropped", "seq", "rssi"])] = "@@"
    return thing, kind, _text(msg).replace(b'"@@"', token, 1)


def m_time(rng, thing, kind, msg, now):
    latest = max(s["time"] for s in msg["samples"]) if kind == "telemetry" else msg["time"]
    delta = rng.choice([10 * 365 * 86_400_000, 86_400_000, AHEAD_MS + 60_000 + (now - latest),
                        NOT_BEFORE_MS - 86_400_000 - latest, 1_000_000_000_000 - latest])
    return thing, kind, _text(_times(msg, kind, delta))


def m_device(rng, thing, kind, msg, now):
    other = rng.choice(["fz-other", thing + "x", thing.upper(), thing + "\n", "", " " + thing, thing[:-1] or "a"])
    return thing, kind, _text(dict(msg, device=other))


def m_reserved(rng, thing, kind, msg, now):
    key = rng.choice(RESERVED)
    value = {"thing": thing, "kind": kind, "received_ms": now, "payload_b64": "e30="}[key]
    return thing, kind, _text(dict(msg, **{key: rng.choice([value, "fz-other", 1])}))


def m_topic(rng, thing, kind, msg, now):
    if rng.random() < 0.7:
        bad = rng.choice(["", "bad name", "x" * 129, "caf\u00e9", "a/b", "+", "m1\n"])
        return bad, kind, _text(dict(msg, device=bad))
    return thing, rng.choice(["status", "ack", "telemetryx", "", "cmd"]), _text(msg)


def m_shape(rng, thing, kind, msg, now):
    return thing, kind, rng.choice([b"", b"   ", b"\n", b"[]", b"[1,2]", b"42", b'"text"', b"null", b"true",
                                    b"{}", b"\xef\xbb\xbf" + _text(msg), b"plain text", b"\x00\x01\x02"])


def m_oversize(rng, thing, kind, msg, now):
    return thing, kind, _text(dict(msg, fw="0.1.0", pad="x" * rng.choice([MAX_BYTES, 200_000, 400_000])))


MUTATORS = [  # (weight, name, function)
    (20, "valid", m_valid), (6, "valid_edge", m_edge), (12, "bytes", m_bytes), (6, "deep", m_deep),
    (8, "type_swap", m_types), (5, "drop_key", m_drop), (4, "nan", m_nan), (6, "huge_number", m_huge),
    (7, "time", m_time), (7, "other_device", m_device), (6, "reserved", m_reserved), (6, "topic", m_topic),
    (5, "shape", m_shape), (1, "oversize", m_oversize),
]


def make_case(rng: random.Random, i: int, now_ms: int, things=("fz-1", "fz-2", "fz:3", "FZ_4")) -> Case:
    thing = things[i % len(things)]
    kind = contract.TELEMETRY if rng.random() < 0.8 else contract.EVENTS
    msg = (telemetry if kind == contract.TELEMETRY else event)(rng, thing, i, now_ms)
    weights = [w for w, _, _ in MUTATORS]
    _, label, mutate = rng.choices(MUTATORS, weights)[0]
    thing, kind, raw = mutate(rng, thing, kind, msg, now_ms)
    return Case(label, thing, kind, raw)


# ------------------------------------------------------------------ the oracle
class _Constant(Exception):
    pass


def _refuse(name):
    raise _Constant(name)


def _depth(value, limit: int, level: int = 1) -> int:
    """Container nesting, counting stops past limit (so the recursion stays short)."""
    if level > limit:
        return level
    children = value.values() if isinstance(value, dict) else value
    return max([level] + [_depth(c, limit, level + 1) for c in children if isinstance(c, (dict, list))])


def _plain(value) -> bool:
    """Numbers within +-2^53, strings of valid Unicode (no lone surrogates)."""
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, (int, float)):
        return -LIMIT <= value <= LIMIT
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def decode(raw: bytes):
    """The payload as strict JSON (RFC 8259), or None."""
    if len(raw) > MAX_BYTES:
        return None
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):
            return None
        return json.loads(text, parse_constant=_refuse)
    except (ValueError, RecursionError, _Constant):
        return None


@functools.lru_cache(maxsize=None)
def schema_validator(kind: str):
    """The jsonschema package's validator of schemas/v1/<kind> (the files ingest validates against)."""
    schema = messages.schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def judge(thing, kind, value, received_ms: int) -> bool:
    """Whether an already-decoded payload value must be stored."""
    if not contract.is_thing_name(thing) or kind not in contract.INGESTED_KINDS:
        return False
    if not isinstance(value, dict) or any(k in value for k in RESERVED):
        return False
    if _depth(value, MAX_DEPTH) > MAX_DEPTH or not _plain(value):
        return False
    if any(True for _ in schema_validator(contract.MESSAGE_OF_TOPIC[kind]).iter_errors(value)):
        return False
    if value["device"] != thing or not BOOT.match(value["boot"]) or value["seq"] >= 10 ** 10:
        return False
    times = [s["time"] for s in value["samples"]] if kind == "telemetry" else [value["time"]]
    return max(times) <= received_ms + AHEAD_MS and min(times) >= NOT_BEFORE_MS


def oracle(thing, kind, raw: bytes, received_ms: int) -> bool:
    return judge(thing, kind, decode(raw), received_ms)
