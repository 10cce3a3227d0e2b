"""Where the engine's functions run and what they bill (cloud/local/invocations.py): a handler with an
import path runs in a worker process when there are workers, any other here; each invocation is
billed by its own duration and its function's memory, a missing function is a failure to invoke."""

from __future__ import annotations

import pytest

from cloud import costs, resources
from cloud.local.invocations import Invocations


def test_a_function_runs_here_with_a_context_like_aws_and_each_call_is_billed():
    seen = []
    runs = Invocations({"alert": lambda event, context: seen.append((event, context.function_name)) or "done"})
    assert runs.attempt("alert", {"n": 1}) == "done"
    assert runs.invoker("alert")({"n": 2}) == "done"
    assert seen == [({"n": 1}, "motorguard-alert"), ({"n": 2}, "motorguard-alert")]
    st = runs.stats()
    assert st["lambda_invocations"] == 2 and st["lambda_ms"] > 0
    # At least a millisecond each, at the alert function's memory (tests/cloud/local/test_engine.py: the rounding).
    assert st["lambda_gb_seconds"] >= 2 * costs.lambda_gb_seconds(0.001, resources.MEMORY_MB["alert"])


def test_a_function_error_raises_and_is_billed_and_a_missing_one_cannot_be_invoked():
    def broken(event, context):
        raise RuntimeError("down")

    runs = Invocations({"ingest": broken})
    with pytest.raises(RuntimeError, match="down"):
        runs.attempt("ingest", {})
    with pytest.raises(LookupError, match="no function 'nowhere'"):
        runs.invoker("nowhere")({})
    assert runs.stats()["lambda_invocations"] == 1


def test_without_an_import_path_a_function_stays_in_this_process_even_with_workers():
    here = []
    runs = Invocations({"ingest": lambda event, context: here.append(event) or {"batchItemFailures": []}}, processes=1)
    runs.start()
    try:
        assert runs.invoker("ingest")({"Records": []}) == {"batchItemFailures": []} and here == [{"Records": []}]
    finally:
        runs.close()


def test_the_local_runtime_gives_each_function_its_row_of_the_one_settings_table():
    # cloud/resources.py FUNCTION_SETTINGS is what the CDK stack deploys (tests/cloud/infra); here
    # each function's context has the same name, memory and timeout.
    from cloud.local.apigw import LambdaContext

    for logical, row in resources.FUNCTION_SETTINGS.items():
        ctx = LambdaContext(resources.function_name(logical))
        assert ctx.function_name == "motorguard-" + logical
        assert ctx.memory_limit_in_mb == row["memory_mb"]
        assert row["timeout_s"] * 1000 - 1000 < ctx.get_remaining_time_in_millis() <= row["timeout_s"] * 1000
    assert LambdaContext("someone-else").memory_limit_in_mb == 256  # not ours: the old defaults
