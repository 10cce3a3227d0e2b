"""A Lambda event source mapping for an SQS queue, locally: what the telemetry rule sends to its queue
reaches the consuming Lambda in batches, as AWS forms them.

    esm = EventSourceMapping("telemetry", invoke, batch_size=100, window_s=1, dead_letter=send_to_dlq)
    esm.start(); esm.add(body, done); ...; esm.stop()

AWS's behaviour kept: a batch goes out when batch_size messages wait or the oldest has waited
window_s; the function gets an SQS event (Records with messageId, receiptHandle, body, attributes,
md5OfBody, eventSource, eventSourceARN, awsRegion); a raise fails the whole batch, a partial batch
response ({"batchItemFailures": [{"itemIdentifier": id}]}) only those messages; a failed message is
delivered again (ApproximateReceiveCount + 1) after a delay, and after max_receive_count deliveries
it moves to the dead-letter queue (redrive).
Not AWS's: SQS redrives the body unchanged, which says nothing of why; here the dead letter is the
envelope every reject has (cloud/domain/rejects.py: reason retries_exhausted, topic, receive time,
the original bytes), and wrap_dead_letters=False sends the bare body as SQS does. In AWS, ingest
itself dead-letters what fails on its last delivery (cloud/lambdas/ingest.py give_up), so only a
batch whose invocation failed outright reaches the DLQ bare.
Latency: a partial batch goes out here once its oldest message has waited window_s. AWS's pollers
long-poll the queue, and on a queue with very little traffic Lambda may wait up to 20 s before
invoking, even with a shorter batching window (the Lambda developer guide, "Using Lambda with Amazon
SQS"). low_traffic_wait_s models that worst case: with a window, a partial batch then waits
max(window_s, low_traffic_wait_s) (aws_worst_case() sets AWS_LOW_TRAFFIC_WAIT_S, 20 s); a full batch
still goes at once. It is off by default, so that tests and the demo do not wait 20 s a batch.
Local differences: the queue lives in this process, not in moto (moto's SQS stores a few hundred
messages a second, a tenth of what the fleet sends), and the retry delay is retry_delay_s, not the
queue's visibility timeout. Nothing is lost for that: done(message) is called only once the message
is stored or dead-lettered, and the engine acknowledges the MQTT message then, so until that moment
the broker's persistent session still holds it.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
import uuid

from cloud.domain import rejects

REGION = "us-east-1"
ACCOUNT = "000000000000"
# The longest Lambda may hold the messages of a quiet queue before invoking (SQS's longest long poll).
AWS_LOW_TRAFFIC_WAIT_S = 20.0


def partial_batch_wait(window_s: float, low_traffic_wait_s: float | None) -> float:
    """How long a batch that is not full waits for more messages: the batching window, or AWS's
    low-traffic worst case when it is modelled and longer. Without a window there is no such wait:
    a long poll returns as soon as a message is there."""
    if window_s <= 0:
        return window_s
    return max(window_s, low_traffic_wait_s or 0.0)


class Message:
    __slots__ = ("id", "body", "done", "receive_count", "sent_ms", "first_receive_ms", "ready_at")

    def __init__(self, body: str, done, now: float):
        self.id = str(uuid.uuid4())
        self.body = body
        self.done = done
        self.receive_count = 0
        self.sent_ms = int(time.time() * 1000)
        self.first_receive_ms = 0
        self.ready_at = now


class EventSourceMapping:
    def __init__(self, queue_name: str, invoke, batch_size: int = 10, window_s: float = 0.0,
                 max_receive_count: int = 5, dead_letter=None, concurrency: int = 2, capacity: int = 1000,
                 retry_delay_s: float = 1.0, on_batch=None, wrap_dead_letters: bool = True,
                 dead_letter_max_bytes: int = rejects.SQS_MAX_BYTES, low_traffic_wait_s: float | None = None):
        """invoke(event) -> result runs the function; dead_letter(body) sends to the redrive target
        (the envelope of rejects.for_redrive, at most dead_letter_max_bytes, unless
        wrap_dead_letters is false); capacity bounds the messages held (waiting or in a running
        batch): add() blocks beyond it; on_batch(size, receives) is told of each batch (the meter
        counts SQS requests with it); low_traffic_wait_s: how long a partial batch may wait in AWS
        on a quiet queue when there is a batching window (None: window_s alone; see aws_worst_case)."""
        self.queue_name = queue_name
        self.arn = "arn:aws:sqs:%s:%s:%s" % (REGION, ACCOUNT, queue_name)
        self.invoke = invoke
        self.batch_size = batch_size
        self.window_s = window_s
        self.max_receive_count = max_receive_count
        self.dead_letter = dead_letter
        self.concurrency = concurrency
        self.capacity = max(capacity, batch_size)
        self.retry_delay_s = retry_delay_s
        self.on_batch = on_batch
        self.wrap_dead_letters = wrap_dead_letters
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.low_traffic_wait_s = low_traffic_wait_s
        self._waiting = collections.deque()
        self._retries = []
        self._held = 0
        self._cond = threading.Condition()
        self._running = False
        self._threads = []
        self.stats = {"sent": 0, "batches": 0, "delivered": 0, "failed_deliveries": 0, "redriven": 0,
                      "redrive_failed": 0}

    def start(self) -> "EventSourceMapping":
        self._running = True
        for i in range(self.concurrency):
            t = threading.Thread(target=self._poll, name="esm-%s-%d" % (self.queue_name, i), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0):
        with self._cond:
            self._running = False
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def add(self, body: str, done=None) -> bool:
        """Queues one message (SendMessage); blocks while capacity messages are held. False once stopped."""
        with self._cond:
            while self._running and self._held >= self.capacity:
                self._cond.wait(0.5)
            if not self._running:
                return False
            self._held += 1
            self.stats["sent"] += 1
            self._waiting.append(Message(body, done, time.monotonic()))
            if len(self._waiting) == 1 or len(self._waiting) >= self.batch_size:
                self._cond.notify()
        return True

    def aws_worst_case(self, on: bool = True) -> "EventSourceMapping":
        """Partial batches wait as long as AWS may make them wait on a quiet queue (20 s), or, with
        on=False, the batching window alone again. For latency figures: a bench sets it on the
        running mapping (Engine.esms[queue])."""
        with self._cond:
            self.low_traffic_wait_s = AWS_LOW_TRAFFIC_WAIT_S if on else None
            self._cond.notify_all()
        return self

    def held(self) -> int:
        with self._cond:
            return self._held

    # ------------------------------------------------------------ polling
    def _take(self):
        """The next batch, once it is full or its oldest message has waited its partial batch's
        wait (partial_batch_wait); None when stopped."""
        with self._cond:
            while self._running:
                now = time.monotonic()
                wait = partial_batch_wait(self.window_s, self.low_traffic_wait_s)
                if self._retries:
                    due = [m for m in self._retries if m.ready_at <= now]
                    if due:
                        self._retries = [m for m in self._retries if m.ready_at > now]
                        self._waiting.extendleft(reversed(due))
                if len(self._waiting) >= self.batch_size or (
                        self._waiting and now - self._waiting[0].ready_at >= wait):
                    n = min(self.batch_size, len(self._waiting))
                    return [self._waiting.popleft() for _ in range(n)]
                wake = []
                if self._waiting:
                    wake.append(self._waiting[0].ready_at + wait - now)
                if self._retries:
                    wake.append(min(m.ready_at for m in self._retries) - now)
                self._cond.wait(max(0.001, min(wake)) if wake else None)
            return None

    def _poll(self):
        while True:
            batch = self._take()
            if batch is None:
                return
            now_ms = int(time.time() * 1000)
            for m in batch:
                m.receive_count += 1
                m.first_receive_ms = m.first_receive_ms or now_ms
            with self._cond:
                self.stats["batches"] += 1
            if self.on_batch:
                self.on_batch(len(batch), -(-len(batch) // 10))  # ReceiveMessage returns at most 10
            failed = self._failed_ids(batch)
            finished, again = [], []
            for m in batch:
                if m.id not in failed:
                    finished.append(m)
                elif m.receive_count >= self.max_receive_count and self._redrive(m):
                    finished.append(m)
                else:  # delivered again later (a failed redrive too: nothing is let go unstored)
                    m.ready_at = time.monotonic() + self.retry_delay_s
                    again.append(m)
            with self._cond:
                self.stats["delivered"] += len(batch) - len(failed)
                self.stats["failed_deliveries"] += len(failed)
                self._held -= len(finished)
                self._retries.extend(again)
                self._cond.notify_all()
            for m in finished:
                if m.done is not None:
                    m.done(m)

    def _failed_ids(self, batch) -> set:
        try:
            result = self.invoke(self.event(batch))
        except Exception:  # noqa: BLE001 - AWS: a function error fails every message of the batch
            return {m.id for m in batch}
        if isinstance(result, dict) and result.get("batchItemFailures"):
            ids = {m.id for m in batch}
            named = {f.get("itemIdentifier") for f in result["batchItemFailures"]}
            # AWS: an identifier that is not in the batch (or empty) fails the whole batch.
            return ids if not named <= ids else named
        return set()

    def _redrive(self, m: Message) -> bool:
        try:
            if self.dead_letter is None:
                raise RuntimeError("no dead-letter queue")
            self.dead_letter(self.dead_letter_body(m))
        except Exception:  # noqa: BLE001 - counted, and the message stays queued
            with self._cond:
                self.stats["redrive_failed"] += 1
            return False
        with self._cond:
            self.stats["redriven"] += 1
        return True

    def dead_letter_body(self, m: Message) -> str:
        if not self.wrap_dead_letters:
            return m.body
        return rejects.for_redrive(m.body, m.receive_count, m.id, self.queue_name, int(time.time() * 1000),
                                   self.dead_letter_max_bytes)

    def event(self, batch) -> dict:
        return {"Records": [{
            "messageId": m.id,
            "receiptHandle": "local-%s-%d" % (m.id, m.receive_count),
            "body": m.body,
            "attributes": {"ApproximateReceiveCount": str(m.receive_count), "SentTimestamp": str(m.sent_ms),
                           "SenderId": "AROAIOTRULES:motorguard", "ApproximateFirstReceiveTimestamp": str(m.first_receive_ms)},
            "messageAttributes": {},
            "md5OfBody": hashlib.md5(m.body.encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.arn,
            "awsRegion": REGION,
        } for m in batch]}
