"""Where the local Lambdas run: in worker processes, as AWS runs each invocation in an execution
environment of its own, so that the handlers' work is not serialized with the rules engine's behind
one interpreter lock.

    pool = LambdaProcesses(2)
    result, ms, usage = pool.invoke("cloud.lambdas.ingest.handler", "motorguard-ingest", event)
    meter.add_counts(usage); pool.close()

Each worker imports the handler once (a warm container), counts the AWS calls it makes with its own
cloud.local.meter.Meter, and returns, with the handler's result, how long it ran and what it called,
so the cost figures still see every operation. Workers start with the spawn method (no fork of a
threaded process) and inherit the environment, AWS_ENDPOINT_URL included.
"""

from __future__ import annotations

import importlib
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

_handlers = {}
_meter = None


def _handler(path: str):
    fn = _handlers.get(path)
    if fn is None:
        mod, name = path.rsplit(".", 1)
        fn = _handlers[path] = getattr(importlib.import_module(mod), name)
    return fn


def run(handler_path: str, function_name: str, event: dict):
    """In a worker: (result, milliseconds, AWS operations counted during the call)."""
    global _meter
    from cloud.local.apigw import LambdaContext

    if _meter is None:
        from cloud.local.meter import Meter

        _meter = Meter().install()
    fn = _handler(handler_path)
    before = _meter.snapshot()
    t0 = time.perf_counter()
    result = fn(event, LambdaContext(function_name))
    ms = (time.perf_counter() - t0) * 1000
    after = _meter.snapshot()
    return result, ms, {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


class LambdaProcesses:
    def __init__(self, workers: int = 2):
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def invoke(self, handler_path: str, function_name: str, event: dict, timeout: float = 60.0):
        return self._pool.submit(run, handler_path, function_name, event).result(timeout)

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)
