"""The fuzz target (cloud/tools/fuzz.py, `make fuzz` runs 10,000) in a short run: mutated payloads through
ingest against moto and a sample through the whole local engine; nothing crashes, nothing is
dropped without a reason, nothing invalid is stored. And the harness itself catches both faults."""

from __future__ import annotations

import os

from cloud.tools import fuzz
from cloud.domain import messages
from cloud.tools.fuzz_payloads import MUTATORS
from cloud.lambdas import ingest

SEED = int(os.environ.get("FUZZ_SEED", "20261201"))


def test_five_hundred_mutated_payloads_crash_nothing_drop_nothing_store_nothing_wrong(aws):
    result = fuzz.run(payloads=500, seed=SEED, batch=50, engine_sample=30)
    c, text = result["counts"], fuzz.report(result, SEED)
    assert not fuzz.failed(c), text
    assert c["fuzz_payloads"] == 500 and c["engine_payloads"] == 30, text
    assert c["stored"] > 100 and c["rejected"] > 250 and c["engine_stored"] + c["engine_rejected"] == 30, text
    assert set(result["labels"]) >= {name for _, name, _ in MUTATORS} - {"oversize"}, text  # 1 in 99 is oversize
    assert {"not_json", "not_object", "too_deep", "schema", "identity", "time"} <= set(result["codes"]), text
    assert text.splitlines()[0].startswith("fuzz_payloads=500 crashes=0 silent_drops=0 wrongly_stored=0 stored=")


def test_the_harness_counts_a_reject_that_never_reaches_the_dlq_as_a_silent_drop(aws, monkeypatch):
    monkeypatch.setattr(ingest, "send_dead_letter", lambda *a, **k: None)
    c = fuzz.run(payloads=120, seed=SEED, batch=40)["counts"]
    assert c["silent_drops"] > 20 and c["rejected"] == c["fuzz_payloads"] - c["stored"] - c["silent_drops"] - \
        c["not_routed"] - c["wrongly_stored"] - c["wrongly_rejected"] and fuzz.failed(c)


def test_the_harness_counts_an_invalid_message_stored_as_wrongly_stored(aws, monkeypatch):
    monkeypatch.setattr(messages, "time_problem", lambda *a: None)  # time trusted again
    c = fuzz.run(payloads=300, seed=SEED, batch=50)["counts"]
    assert c["wrongly_stored"] > 0 and fuzz.failed(c)
