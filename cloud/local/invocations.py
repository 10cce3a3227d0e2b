"""Where the rules engine's Lambda functions run, and what each invocation bills
(cloud/local/engine.py hands its functions to one Invocations).

    runs = Invocations(functions, processes=2, meter=meter).start()
    runs.attempt("alert", event)       # one attempt of an asynchronous invoke, in this process
    invoke = runs.invoker("ingest")    # a queue-fed function's invoke (a worker process if there are any)
    runs.stats(); runs.close()         # lambda_invocations, lambda_ms, lambda_gb_seconds

functions: logical name -> handler(event, context), each called with a context like AWS's. A queue-fed
function whose handler names its import path (handler_path: cloud/local/actions.py default_functions)
runs in a worker process when processes > 0 (cloud/local/runtime.py), whose AWS calls then reach the
meter; every other call runs here. Lambda bills each invocation's own duration, rounded up to the
millisecond, times the function's memory (cloud/resources.py MEMORY_MB): so is each counted here.
"""

from __future__ import annotations

import threading
import time

from cloud import costs, resources
from cloud.local.apigw import LambdaContext


class Invocations:
    def __init__(self, functions: dict, processes: int = 0, meter=None):
        """processes: worker processes for queue-fed functions (0: in this process); meter: a
        cloud.local.meter.Meter told of the AWS calls the workers make."""
        self.functions = functions
        self.processes = processes
        self.meter = meter
        self._pool = None
        self._lock = threading.Lock()
        self._stats = {"lambda_invocations": 0, "lambda_ms": 0.0, "lambda_gb_seconds": 0.0}

    def start(self) -> "Invocations":
        if self.processes:
            from cloud.local.runtime import LambdaProcesses

            self._pool = LambdaProcesses(self.processes)
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def attempt(self, logical: str, event: dict):
        """One attempt of an asynchronous invoke (cloud/local/async_invoke.py): raises on a function error."""
        t0 = time.perf_counter()
        try:
            return self.functions[logical](event, LambdaContext(resources.function_name(logical)))
        finally:
            self.bill(logical, (time.perf_counter() - t0) * 1000)

    def invoker(self, logical: str):
        """invoke(event) for a queue-fed function (cloud/local/esm.py calls it with each batch)."""
        name = resources.function_name(logical)

        def invoke(event):
            fn = self.functions.get(logical)
            if fn is None:
                raise LookupError("no function %r" % logical)
            path = getattr(fn, "handler_path", None)
            t0 = time.perf_counter()
            ran_ms = None  # the function's own time (billed), without the hand-over to a worker
            try:
                if self._pool is not None and path:
                    result, ran_ms, usage = self._pool.invoke(path, name, event)
                    if self.meter is not None:
                        self.meter.add_counts(usage)
                    return result
                return fn(event, LambdaContext(name))
            finally:
                self.bill(logical, ran_ms if ran_ms is not None else (time.perf_counter() - t0) * 1000)

        return invoke

    def bill(self, logical: str, ms: float) -> None:
        with self._lock:
            self._stats["lambda_invocations"] += 1
            self._stats["lambda_ms"] += ms
            self._stats["lambda_gb_seconds"] += costs.lambda_gb_seconds(ms, resources.MEMORY_MB.get(logical, 128))

    def stats(self) -> dict:
        with self._lock:
            return dict(self._stats)
