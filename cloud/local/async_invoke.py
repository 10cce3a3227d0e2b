"""Lambda's asynchronous invocation, locally: how an IoT rule's Lambda action runs its function.

    invoker = AsyncInvoker(run_once, send_record, retry_attempts=2, retry_delay_s=60)
    invoker.submit("alert", body, done)   # done() once the event succeeded or its record is kept
    invoker.stop()

AWS's behaviour kept: the rule's action succeeds once the event is accepted, so a function error
never reaches the rule's error action; a failed attempt is made again retry_delay_s later and then
2 x retry_delay_s later (AWS: 1 and 2 minutes), retry_attempts times (AWS's default, 2); then the
on-failure destination gets Lambda's invocation record: requestContext (condition RetriesExhausted,
approximateInvokeCount), requestPayload (the event), responseContext and responsePayload (the
error). Each attempt gets the event decoded afresh, as each of AWS's does.
Local differences: the first attempt runs at once on the caller's thread, so the alert path costs
what the function costs; retries wait on a thread of this process, not in AWS's durable queue. So
that a restart meanwhile loses nothing, done() is called only once the event succeeded or its record
reached the destination: the engine acknowledges the MQTT message then, and until then the broker
still holds it (and delivers it again after a restart).
At least once: AWS's queue of asynchronous events may hand a function the same event more than
once, even when the first run succeeded, and the two runs may overlap. Locally each event runs once
unless duplicates=N: then N copies of it start at the same moment as the first attempt, each on a
thread of its own, as separate invocations with their own retries and failure records (done() stays
the original's). It is how the tests hold a function's de-duplication to concurrent deliveries.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import itertools
import json
import sys
import threading
import time
import traceback
import uuid

from cloud.local.esm import ACCOUNT, REGION


def function_arn(name: str) -> str:
    return "arn:aws:lambda:%s:%s:function:%s" % (REGION, ACCOUNT, name)


def failure_record(name: str, event, error: BaseException, attempts: int, request_id: str) -> dict:
    """The record Lambda sends an on-failure destination once an event's retries are exhausted."""
    return {
        "version": "1.0",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {"requestId": request_id, "functionArn": function_arn(name) + ":$LATEST",
                           "condition": "RetriesExhausted", "approximateInvokeCount": attempts},
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": type(error).__name__, "errorMessage": str(error)[:1000],
                            "requestId": request_id,
                            "stackTrace": traceback.format_exception(type(error), error, error.__traceback__)[-5:]},
    }


def _nothing() -> None:
    """A duplicate delivery's done(): only the original event acknowledges its MQTT message."""


class Job:
    __slots__ = ("logical", "name", "body", "done", "attempts", "request_id")

    def __init__(self, logical, name, body, done):
        self.logical, self.name, self.body, self.done = logical, name, body, done
        self.attempts = 0
        self.request_id = str(uuid.uuid4())


class AsyncInvoker:
    def __init__(self, run_once, send_record, retry_attempts: int = 2, retry_delay_s: float = 60.0,
                 duplicates: int = 0):
        """run_once(logical, event) runs the function once and raises on a function error;
        send_record(record) puts a failure record into the on-failure destination; duplicates:
        extra concurrent deliveries of every event (AWS's at-least-once; 0 by default)."""
        self.run_once = run_once
        self.send_record = send_record
        self.retry_attempts = retry_attempts
        self.retry_delay_s = retry_delay_s
        self.duplicates = duplicates
        self._due = []  # (time, n, job): the retries waiting
        self._n = itertools.count()
        self._cond = threading.Condition()
        self._thread = None
        self._stopped = False
        self.stats = {"invoked": 0, "retried": 0, "failed": 0, "record_failed": 0}

    def submit(self, logical: str, name: str, body: str, done) -> None:
        """Accepts one event (a JSON text) for the function; its first attempt runs now (and its
        duplicates, if any, at the same moment on threads of their own)."""
        self._count("invoked")
        copies = [threading.Thread(target=self._attempt, args=(Job(logical, name, body, _nothing),),
                                   name="lambda-async-duplicate", daemon=True) for _ in range(self.duplicates)]
        for t in copies:
            t.start()
        self._attempt(Job(logical, name, body, done))

    def waiting(self) -> int:
        with self._cond:
            return len(self._due)

    def stop(self, timeout: float = 5.0) -> None:
        # Waiting retries are left unfinished: their MQTT messages were never acknowledged.
        with self._cond:
            self._stopped = True
            self._due.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _attempt(self, job: Job) -> None:
        job.attempts += 1
        try:
            self.run_once(job.logical, json.loads(job.body))
        except Exception as e:  # noqa: BLE001 - a function error: retried, then recorded
            if job.attempts <= self.retry_attempts:
                self._schedule(job, self.retry_delay_s * job.attempts)
            else:
                self._fail(job, e)
            return
        job.done()

    def _fail(self, job: Job, error: Exception) -> None:
        record = failure_record(job.name, json.loads(job.body), error, job.attempts, job.request_id)
        try:
            self.send_record(record)
        except Exception as e:  # noqa: BLE001 - AWS counts DestinationDeliveryFailures; the broker keeps it
            self._count("record_failed")
            print("async invoke: no failure record for %s (%s: %s); the MQTT message stays unacknowledged"
                  % (job.name, type(e).__name__, e), file=sys.stderr)
            return
        self._count("failed")
        job.done()

    def _schedule(self, job: Job, delay: float) -> None:
        self._count("retried")
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._n), job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._retry_loop, name="lambda-async-retries", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _retry_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._due or self._due[0][0] > time.monotonic()):
                    self._cond.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._stopped:
                    return
                _, _, job = heapq.heappop(self._due)
            self._attempt(job)

    def _count(self, key: str) -> None:
        with self._cond:
            self.stats[key] += 1
