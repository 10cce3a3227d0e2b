"""make fuzz: seeded, mutated device payloads through ingest against a moto server, counting what
must never happen. One bad message must never cost a good one; every reject has a reason.

    python -m cloud.tools.fuzz [--payloads 10000] [--seed 1] [--engine-sample 300] [--batch 50]

Each payload (cloud/tools/fuzz_payloads.py: byte flips, truncation, deep nesting, type swaps, NaN, huge
numbers, far-future and pre-epoch times, other device names, the rule's own fields, bad topics,
oversize) reaches the real ingest handler in-process, as SQS batches of queued rule outputs: most
carry the original payload, built here (60%) or by the local engine's own evaluation of the
shipped rules (25%, cloud/rules.py: encode(*, 'base64') AS payload_b64, ...); the rest are the
merged output of the rules before (SELECT *, topic(2) AS thing, ...: LEGACY_SQL), which ingest
still reads; some events come as a Lambda action's event. --engine-sample payloads go through the
whole local engine instead (the shipped rules, the event source mapping, ingest). Then the tables
and the dead-letter queue are read back:
- crashes: an exception out of the handler, or a reject with the code "internal";
- silent_drops: neither stored nor in the DLQ;
- wrongly_stored: stored though the oracle rejects it, stored under another device, or not as sent;
- wrongly_rejected: rejected though the oracle accepts it (it is in the DLQ, so not lost);
- bad_rejects: a DLQ envelope without a known code, or whose bytes are not the message's.
Prints `fuzz_payloads=N crashes=... seed=S` lines and exits CHECK_FAILED (8) if any of those counts
is not 0 (contract/exit_codes.py; --help lists every code).
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import random
import sys
import time

import contract
from cloud.domain import delivery, history, messages
from cloud.tools.fuzz_payloads import RESERVED, Case, decode, judge, make_case, oracle
from cloud.tools.fuzz_tables import drain_dead_letters, key_of, lenient, stored_items
from contract import exit_codes

FAILURES = ("crashes", "silent_drops", "wrongly_stored", "wrongly_rejected", "bad_rejects")
CODES = (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.CHECK_FAILED, exit_codes.SETUP_FAILED)
INGEST_RULES = (contract.RULE_TELEMETRY, contract.RULE_EVENTS)  # the rules whose outputs ingest stores
RULE_FIELDS = RESERVED[:3]  # thing, kind, received_ms: what the rules of before overwrote
# The telemetry and events rules before they sent the payload as published (cloud/rules.py).
LEGACY_SQL = "SELECT *, topic(2) AS thing, topic(3) AS kind, timestamp() AS received_ms FROM '%s'"


class Record:
    """One payload on its way: how it was delivered and what the oracle expects."""

    def __init__(self, case: Case, path: str, body: str | None, expected: bool, overwritten=False):
        self.case, self.path, self.body = case, path, body  # path: queue, direct, or why it never got there
        self.expected, self.overwritten = expected, overwritten
        self.id = None  # how its dead letter is found: the SQS message id, or the payload's sha256
        self.crashed = False


# ------------------------------------------------------------------ the two rule outputs
def envelope_body(case: Case, now_ms: int) -> str:
    """The rule with the original payload: encode(*, 'base64') AS payload_b64, topic(2), topic(3), timestamp()."""
    return json.dumps({"payload_b64": base64.b64encode(case.raw).decode(), "thing": case.thing, "kind": case.kind,
                       "received_ms": now_ms})


def projected_body(engine, case: Case) -> tuple[str | None, int | None, str | None]:
    """What a rule makes of the payload, by the local engine's own evaluation and encoding: (body,
    its received_ms, None); or (None, None, why) when the engine itself turns the payload away (then
    its error action keeps it: the engine sample checks that end to end), why "no_rule" for a topic
    no rule reads."""
    from cloud.local.engine import to_json

    fired = engine.evaluate(case.topic, case.raw)
    outs = [out for r, out, _, _ in fired if r.name in INGEST_RULES]
    if not outs:
        return None, None, "no_rule"
    if not isinstance(outs[0], dict):  # refused: too large, or (the rules of before) no JSON object
        return None, None, "engine_" + str(getattr(outs[0], "reason", "refused"))
    try:
        return to_json(outs[0]), outs[0]["received_ms"], None
    except (ValueError, TypeError, RecursionError) as e:  # the action fails: the error action keeps it
        return None, None, "engine_" + type(e).__name__


def legacy_engine():
    """The rules engine with the rules of before (LEGACY_SQL), evaluated only."""
    from cloud import rules
    from cloud.local.engine import Engine

    legacy = [dict(rules.rule(name), sql=LEGACY_SQL % flt) for name, flt in (
        (contract.RULE_TELEMETRY, rules.TELEMETRY_FILTER), (contract.RULE_EVENTS, rules.EVENTS_FILTER))]
    return Engine(None, rules=legacy, event_sources={})


def merged_expectation(case: Case, now_ms: int) -> tuple[bool, bool]:
    """(must be stored, only because the rule overwrote the payload's own rule fields)."""
    value = decode(case.raw)
    if isinstance(value, dict) and set(value) <= messages.ENVELOPE_FIELDS and isinstance(value.get("payload_b64"), str):
        inner = delivery.original_of(value)  # a device sending the envelope itself: judged on what it holds
        return (inner is not None and oracle(case.thing, case.kind, inner, now_ms)), False
    if isinstance(value, dict) and any(k in value for k in RULE_FIELDS):
        cleaned = {k: v for k, v in value.items() if k not in RULE_FIELDS}
        return judge(case.thing, case.kind, cleaned, now_ms), True
    return judge(case.thing, case.kind, value, now_ms), False


# ------------------------------------------------------------------ in-process ingest
def build(n: int, seed: int, shipped, legacy) -> list[Record]:
    """n records: the payload by the envelope built here, by the shipped rules, or by the rules of
    before (shipped and legacy: engines that only evaluate)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        now = int(time.time() * 1000)
        case = make_case(rng, i, now)
        path = "direct" if case.kind == contract.EVENTS and rng.random() < 0.5 else "queue"  # the events rule's way
        way = rng.random()
        if way < 0.6:
            out.append(Record(case, path, envelope_body(case, now), oracle(case.thing, case.kind, case.raw, now)))
            continue
        body, received, turned_away = projected_body(shipped if way < 0.85 else legacy, case)
        received = received or now
        expected, overwritten = (oracle(case.thing, case.kind, case.raw, received), False) if way < 0.85 else \
            merged_expectation(case, received)
        out.append(Record(case, turned_away, None, expected) if body is None else
                   Record(case, path, body, expected, overwritten))
    return out


def feed(records: list[Record], batch: int, counts: collections.Counter, letters: list) -> None:
    """Every record through the handler; the DLQ is drained after each call into letters (moto's
    SQS takes longer per call the more messages a queue holds)."""
    from cloud import resources
    from cloud.lambdas import ingest
    from cloud.local.apigw import LambdaContext
    from cloud.local.esm import EventSourceMapping, Message

    ctx = LambdaContext(resources.function_name("ingest"))
    queued = [r for r in records if r.path == "queue"]
    shaper = EventSourceMapping("motorguard-telemetry-queue", None)
    for i in range(0, len(queued), batch):
        chunk = queued[i:i + batch]
        msgs = [Message(r.body, None, 0) for r in chunk]
        for r, m in zip(chunk, msgs):
            m.receive_count, r.id = 1, m.id
        try:
            result = ingest.handler(shaper.event(msgs), ctx)
        except Exception:  # noqa: BLE001 - what the fuzz is here to count
            for r in chunk:
                r.crashed = True
            continue
        counts["transient_failures"] += len(result.get("batchItemFailures", []))
        letters += drain_dead_letters()
    direct = [r for r in records if r.path == "direct"]
    for n, r in enumerate(direct):
        # A Lambda action's reject names no message id: its letter is found by the bytes it keeps.
        r.id = hashlib.sha256(kept_bytes(r, "original" if is_envelope(r) else "rule_output")).hexdigest()
        try:
            ingest.handler(json.loads(r.body), ctx)
        except Exception:  # noqa: BLE001
            r.crashed = True
        if n % 20 == 19 or n == len(direct) - 1:
            letters += drain_dead_letters()


def stored_as_sent(r: Record, item: dict) -> bool:
    kept = messages.device_part(history.unpack(item["payload"])) if r.case.kind == contract.TELEMETRY else None
    sent = lenient(r.case.raw)
    if r.case.kind == contract.EVENTS:
        return item["event"] == sent["event"] and int(item["time"]) == sent["time"]
    return kept == {k: v for k, v in sent.items() if k not in RULE_FIELDS}


def judge_all(records, letters: dict, tables: dict, counts: collections.Counter, codes: collections.Counter):
    """Each record into exactly one outcome; every stored item accounted for."""
    accounted = set()
    for r in records:
        if r.crashed:
            counts["crashes"] += 1
            continue
        if r.path == "no_rule":  # a topic no rule reads (devices/a/b/...): the policy refuses it first
            counts["wrongly_rejected" if r.expected else "not_routed"] += 1
            continue
        if r.path not in ("queue", "direct"):  # the engine turned it away before ingest
            counts["wrongly_rejected" if r.expected else "rejected"] += 1
            codes[r.path] += 1
            continue
        value = lenient(r.case.raw)
        key = key_of(r.case.kind, value) if isinstance(value, dict) else None
        item = tables.get(r.case.kind, {}).get(key) if key else None
        found = letters.get(r.id)
        letter = found.pop() if found else None
        if key and item is not None:
            accounted.add((r.case.kind, key))
        if letter is not None:
            codes[letter.get("code")] += 1
            if letter.get("code") == "internal":
                counts["crashes"] += 1
            elif not letter_keeps(letter, r):
                counts["bad_rejects"] += 1
        if item is not None and letter is None:
            ok = r.expected and key[0] == r.case.thing and stored_as_sent(r, item)
            counts["stored" if ok else "wrongly_stored"] += 1
            counts["reserved_overwritten"] += ok and r.overwritten
        elif letter is not None:
            counts["wrongly_stored" if item is not None and not r.expected else
                   "wrongly_rejected" if r.expected else "rejected"] += 1
        else:
            counts["silent_drops"] += 1
    stray = [k for kind, items in tables.items() for k in items if (kind, k) not in accounted]
    counts["wrongly_stored"] += len(stray)
    counts["bad_rejects"] += sum(len(left) for left in letters.values())  # a second letter, or nobody's


def letter_keeps(letter: dict, r: Record) -> bool:
    """A reason with a known code, and the bytes: the payload as published, or the queued body."""
    p = letter.get("payload") or {}
    whole = kept_bytes(r, p.get("source"))
    kept = base64.b64decode(p.get("base64", ""))
    return (letter.get("code") in messages.CODES and p.get("sha256") == hashlib.sha256(whole).hexdigest()
            and whole.startswith(kept) and (p.get("truncated") or kept == whole))


def is_envelope(r: Record) -> bool:
    return r.body.startswith('{"payload_b64"')


def kept_bytes(r: Record, source) -> bytes:
    """What a reject of r must keep: the payload as published, or the rule output as it arrived."""
    if source == "original":
        return r.case.raw
    return r.body.encode() if r.path == "queue" else messages.output_bytes(json.loads(r.body))


def latest_from_the_future(now_ms: int) -> int:
    items = stored_items("devices").values()
    return sum(1 for i in items if int(i.get("last_event_ms", 0)) > now_ms + 300_000)


# ------------------------------------------------------------------ the whole run
def run(payloads: int = 10000, seed: int = 1, batch: int = 50, engine_sample: int = 0) -> dict:
    """Counts of one run against the moto server boto3 points at (AWS_ENDPOINT_URL)."""
    from cloud.local.engine import Engine

    counts, codes, labels = collections.Counter(), collections.Counter(), collections.Counter()
    t0 = time.monotonic()
    records = build(payloads, seed, Engine(None, event_sources={}), legacy_engine())  # evaluated only
    drained = []
    feed(records, batch, counts, drained)
    letters = collections.defaultdict(list)
    for d in drained:
        letters[d.get("messageId") or d.get("payload", {}).get("sha256")].append(d)
    tables = {"telemetry": stored_items("telemetry"), "events": stored_items("events")}
    judge_all(records, letters, tables, counts, codes)
    counts["wrongly_stored"] += latest_from_the_future(int(time.time() * 1000))
    labels.update(r.case.label for r in records)
    counts["fuzz_payloads"] = len(records)
    counts["format_original"] = sum(1 for r in records if r.body and is_envelope(r))
    if engine_sample:
        from cloud.tools.fuzz_engine import run_engine_sample

        counts.update({"engine_" + k: v for k, v in run_engine_sample(engine_sample, seed).items()})
    counts["seconds"] = round(time.monotonic() - t0, 1)
    return {"counts": counts, "codes": codes, "labels": labels}


def failed(counts) -> bool:
    return any(counts.get(k, 0) or counts.get("engine_" + k, 0) for k in FAILURES) or counts.get("transient_failures")


def report(result: dict, seed: int) -> str:
    c = result["counts"]
    first = ["fuzz_payloads=%d" % c["fuzz_payloads"]] + ["%s=%d" % (k, c[k]) for k in FAILURES[:3]] + [
        "stored=%d" % c["stored"], "rejected=%d" % c["rejected"], "seed=%d" % seed]
    second = ["%s=%s" % (k, c[k]) for k in ("wrongly_rejected", "bad_rejects", "transient_failures",
                                              "reserved_overwritten", "not_routed", "format_original", "seconds")]
    lines = [" ".join(first), "fuzz_detail " + " ".join(second)]
    if c.get("engine_payloads"):
        lines.append("fuzz_engine " + " ".join("%s=%d" % (k[7:], v) for k, v in sorted(c.items())
                                                if k.startswith("engine_")))
    lines.append("fuzz_reject_codes " + " ".join("%s=%d" % kv for kv in sorted(result["codes"].items(), key=str)))
    lines.append("fuzz_mutations " + " ".join("%s=%d" % kv for kv in sorted(result["labels"].items())))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloud.tools.fuzz", description=__doc__, epilog=exit_codes.epilog(CODES),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--payloads", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=50, help="records per SQS batch (at most 100 in AWS)")
    ap.add_argument("--engine-sample", type=int, default=300, help="payloads through the whole local engine")
    a = ap.parse_args(argv)
    if a.payloads < 1 or a.batch < 1 or a.engine_sample < 0:
        ap.error("--payloads and --batch must be at least 1, --engine-sample at least 0")  # exits BAD_INPUT
    from cloud.local import moto_env

    try:
        server = moto_env.MotoServer().start()
    except Exception as e:  # noqa: BLE001 - whatever stops moto from serving: the fuzz cannot run
        print("fuzz: the moto server did not start (%s: %s)" % (type(e).__name__, e), file=sys.stderr)
        return exit_codes.SETUP_FAILED
    try:
        result = run(a.payloads, a.seed, a.batch, a.engine_sample)
    finally:
        server.stop()
    print(report(result, a.seed))
    return exit_codes.CHECK_FAILED if failed(result["counts"]) else exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
