"""AWS may hand an asynchronously invoked function the same event twice, even at once; the local
invoker does so on request (duplicates=N), each copy a full invocation with its own retries."""

from __future__ import annotations

import threading

from cloud.local.async_invoke import AsyncInvoker

from waiting import wait_for


def test_a_duplicate_runs_at_the_same_time_as_the_first_delivery():
    meet = threading.Barrier(2, timeout=5)  # passes only if both deliveries run at once
    seen, lock, done = [], threading.Lock(), []

    def run_once(logical, ev):
        meet.wait()
        with lock:
            seen.append((threading.current_thread().name, ev))

    inv = AsyncInvoker(run_once, lambda rec: None, duplicates=1)
    try:
        inv.submit("alert", "motorguard-alert", '{"n": 1}', lambda: done.append(1))
        wait_for(lambda: len(seen) == 2, what="both deliveries")
        assert [ev for _, ev in seen] == [{"n": 1}, {"n": 1}]
        assert len({name for name, _ in seen}) == 2, "on two threads"
        assert done == [1], "only the original acknowledges its message"
        assert inv.stats["invoked"] == 1
    finally:
        inv.stop()


def test_a_failing_duplicate_is_retried_and_recorded_on_its_own():
    records, calls, lock = [], [], threading.Lock()

    def run_once(logical, ev):
        with lock:
            calls.append(threading.current_thread().name)
        raise RuntimeError("down")

    inv = AsyncInvoker(run_once, records.append, retry_attempts=1, retry_delay_s=0.05, duplicates=1)
    try:
        inv.submit("alert", "motorguard-alert", '{"n": 2}', lambda: None)
        wait_for(lambda: len(records) == 2, what="a failure record for each delivery")
        assert len(calls) == 4, "each delivery: a first attempt and one retry"
        assert len({r["requestContext"]["requestId"] for r in records}) == 2
    finally:
        inv.stop()


def test_by_default_an_event_runs_once():
    calls = []
    inv = AsyncInvoker(lambda logical, ev: calls.append(ev), lambda rec: None)
    inv.submit("alert", "motorguard-alert", "{}", lambda: None)
    assert calls == [{}] and inv.duplicates == 0
    inv.stop()
