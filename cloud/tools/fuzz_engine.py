"""The engine sample of `make fuzz` (cloud/tools/fuzz.py): mutated payloads through the whole local
rules engine as it ships (cloud/local/engine.py: the rules of cloud/rules.py, the telemetry queue's
event source mapping, the real Lambdas in-process), without the broker (Engine.process takes a
message as the broker would hand it over). Each payload is published by a thing of its own, so
what the DLQ and the tables hold is told apart by the topic's thing.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import random
import threading
import time

from cloud.tools.fuzz_payloads import make_case, oracle
from cloud.tools.fuzz_tables import drain_dead_letters, key_of, lenient, stored_items


def _sample(n: int, seed: int, now_ms: int) -> list:
    rng, out, i = random.Random(seed + 7919), [], 0
    while len(out) < n:
        case = make_case(rng, i, now_ms, things=("fe-%d" % i,))
        i += 1
        if case.label != "topic":  # those re-use names: the in-process run covers them
            out.append(case)
    return out


def _letters_by_thing(letters) -> dict:
    """Ingest's envelopes carry the thing; the rules' error actions, the topic."""
    out = collections.defaultdict(list)
    for d in letters:
        thing = d.get("thing") if "rejectedBy" in d else (d.get("topic") or "").split("/")[1:2]
        out[thing if isinstance(thing, str) else (thing[0] if thing else None)].append(d)
    return out


def _has_reason(letter: dict, raw: bytes) -> bool:
    if "rejectedBy" in letter:
        return bool(letter.get("code")) and letter.get("code") != "internal"
    kept = base64.b64decode(letter.get("base64OriginalPayload", ""))  # the start only, of one too large
    whole = letter.get("payloadBytes") == len(raw) and letter.get("payloadSha256") == hashlib.sha256(raw).hexdigest()
    return bool(letter.get("failures")) and raw.startswith(kept) and whole and (
        kept == raw or letter.get("reason") == "too_large")


def run_engine_sample(n: int, seed: int) -> collections.Counter:
    from cloud.local.engine import Engine

    now = int(time.time() * 1000)
    cases = _sample(n, seed, now)
    before = {k: set(stored_items(k)) for k in ("telemetry", "events")}
    engine = Engine(None, retry_delay_s=0.05)
    for esm in engine.esms.values():  # start() would also connect to a broker
        esm.start()
    counts = collections.Counter(payloads=len(cases))
    pending = threading.Semaphore(0)
    try:
        for case in cases:
            try:
                engine.process(case.topic, case.raw, done=pending.release)
            except Exception:  # noqa: BLE001 - the engine counts these itself; here they are crashes
                counts["crashes"] += 1
                pending.release()
        for _ in cases:
            if not pending.acquire(timeout=60):
                counts["crashes"] += 1  # never finished: its MQTT message would never be acknowledged
    finally:
        for esm in engine.esms.values():
            esm.stop()
    letters = _letters_by_thing(drain_dead_letters())
    tables = {k: {key: v for key, v in stored_items(k).items() if key not in before[k]} for k in before}
    accounted = set()
    for case in cases:
        expected = oracle(case.thing, case.kind, case.raw, now)  # the rules send the payload as published
        value = lenient(case.raw)
        key = key_of(case.kind, value) if isinstance(value, dict) else None
        stored = key is not None and key in tables.get(case.kind, {})
        accounted.add((case.kind, key))
        mine = letters.get(case.thing, [])
        if stored and not mine:
            ok = expected and key[0] == case.thing
            counts["stored" if ok else "wrongly_stored"] += 1
        elif mine:
            counts["bad_rejects"] += not any(_has_reason(d, case.raw) for d in mine)
            counts["wrongly_stored" if stored and not expected else
                   "wrongly_rejected" if expected else "rejected"] += 1
        else:
            counts["silent_drops"] += 1
    counts["wrongly_stored"] += sum(1 for kind, items in tables.items() for k in items if (kind, k) not in accounted)
    st = engine.stats()
    counts["error_actions"] = st["error_actions"]
    counts["evaluation_errors"] = st["evaluation_errors"]
    return counts
