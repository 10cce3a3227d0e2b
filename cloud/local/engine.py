"""The local rules engine: the rules of cloud/rules.py, evaluated with AWS IoT's SQL semantics
(the package cloud/local/sql/) on what devices publish to the local broker, with the same actions.

    engine = Engine(broker).start()      # broker: cloud.local.broker.LocalBroker
    ...; engine.stats(); engine.stop()

    python -m cloud.local.engine --broker-dir DIR --endpoint-url URL

It subscribes with a service identity of its own (contract.ENGINE_IDENTITY) to every
rule's topic filter (and to the Basic Ingest topics $aws/rules/<rule>/... of rules that allow it).
Nothing is lost silently:
- the subscription is a persistent session (clean_session false) and the broker's queue limits are
  set on purpose (cloud/local/broker_config.py), so a burst waits in the broker rather than being dropped;
- each message is acknowledged (PUBACK) only after every action of every matching rule has run or
  its failure has gone to the rule's error action (or the function's failure destination); until
  then the broker holds it for us;
- the work queue is bounded: when the workers fall behind, the MQTT reader waits, the broker's
  in-flight window fills, and the broker queues (back-pressure, never drops).

Actions (cloud/local/actions.py): lambda, dynamoDBv2, s3, sns, sqs, republish. A lambda action is
an asynchronous invoke, as in AWS (cloud/local/async_invoke.py): the handler runs in-process with the
SELECT output and a context like AWS's; a function error never reaches the rule's error action (a
failure to invoke does): the event is tried twice more, then its invocation record goes to the
function's on-failure destination (cloud/resources.py ASYNC_FAILURE_QUEUE). An sqs action whose
queue feeds a Lambda (cloud/resources.py EVENT_SOURCES) goes to a local event source mapping
(cloud/local/esm.py) that invokes it in batches, in worker processes when lambda_processes > 0
(cloud/local/invocations.py runs and bills every function), and the message is acknowledged once its
batch is stored; a message whose rules only feed such queues is handled on the MQTT thread, with no
hand-over to a worker.
A payload over AWS IoT's 128 KB runs no action: each rule on its topic sends it to its error action
(too_large, with its size and SHA-256); so does, for a rule whose SELECT reads the JSON, one not JSON,
not an object or nested past actions.MAX_JSON_DEPTH (not_json, not_object, too_deep): encode(*, ...)
reads any payload. A message whose evaluation fails goes to the dead-letter queue (code internal).
Nothing makes the engine stop. clientid() is "": MQTT 3.1.1 does not tell a subscriber who published.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time

import contract
from contract import ENGINE_IDENTITY, exit_codes
from cloud import resources
from cloud import rules as rule_defs
from cloud.local import sql
from cloud.local.actions import (REFUSALS, ActionError, LoadedRule, Refused, Targets, Ticket,  # noqa: F401
                                  default_functions, error_action_doc, evaluation_error_body, parse_payload, to_json)
from cloud.local.async_invoke import AsyncInvoker
from cloud.local.broker_config import MAX_INFLIGHT_MESSAGES
from cloud.local.esm import EventSourceMapping
from cloud.local.invocations import Invocations

BASIC_INGEST = contract.BASIC_INGEST_PREFIX  # + <rule>/<topic>


class Engine:
    def __init__(self, broker, functions=None, rules=None, workers: int = 4, queue_size: int = 2000,
                 client_id: str = ENGINE_IDENTITY, boto_session=None, lambda_processes: int = 0,
                 meter=None, event_sources=None, retry_delay_s: float = 1.0, async_retry_delay_s: float = 1.0):
        """lambda_processes: worker processes for queue-fed Lambdas (0: in this process); meter: a
        cloud.local.meter.Meter told of the operations made out of its sight (worker processes, the
        local queues); event_sources: as cloud/resources.py EVENT_SOURCES (the default);
        retry_delay_s: a queued message's redelivery delay; async_retry_delay_s: the wait before an
        asynchronous invoke's first retry, and twice it before the second (AWS: 1 and 2 minutes)."""
        self.broker = broker
        self.runs = Invocations(functions if functions is not None else default_functions(), lambda_processes, meter)
        self.functions = self.runs.functions
        self.rules = [LoadedRule(r) for r in (rules if rules is not None else rule_defs.RULES)]
        self.workers = workers
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.client_id = client_id  # the broker makes it the certificate's name, ENGINE_IDENTITY
        self.targets = Targets(boto_session)
        self.invoker = AsyncInvoker(self.runs.attempt, self._send_failure_record, resources.ASYNC_RETRY_ATTEMPTS,
                                    async_retry_delay_s)
        self._lock = threading.Lock()
        self._stats = {"received": 0, "acked": 0, "no_rule": 0, "fired": {}, "actions_ok": 0, "actions_failed": 0,
                       "error_actions": 0, "error_action_failed": 0,
                       "lambda_invocations": 0, "lambda_ms": 0.0, "lambda_gb_seconds": 0.0,  # stats() has self.runs'
                       "bytes_in": 0, "message_units_5kb": 0, "basic_ingest": 0,
                       "evaluation_errors": 0, **dict.fromkeys(REFUSALS, 0)}  # refused messages, by reason
        self._threads = []
        self._running = False
        self.client = None
        self.on_fired = None  # optional callback(rule_name, output, topic)
        self.meter = meter
        self.lambda_processes = lambda_processes
        self.esms = {}
        sources = resources.EVENT_SOURCES if event_sources is None else event_sources
        queues = {self._queue_name(a) for r in self.rules for a in r.actions if a[0] == "sqs"}
        for src in sources.values():
            if src["queue"] in queues:
                self.esms[src["queue"]] = EventSourceMapping(
                    src["queue"], self.runs.invoker(src["function"]), batch_size=src["batch_size"],
                    window_s=src["window_s"], max_receive_count=src["max_receive_count"],
                    dead_letter=self._send_to_dead_letter, capacity=MAX_INFLIGHT_MESSAGES,
                    retry_delay_s=retry_delay_s, on_batch=self._count_batch,
                    concurrency=max(2, lambda_processes))  # a batch in flight for each worker

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "Engine":
        self._running = True
        if self.esms:
            self.runs.start()  # the worker processes, if any: only queue-fed functions run there
        for esm in self.esms.values():
            esm.start()
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name="rules-worker-%d" % i, daemon=True)
            t.start()
            self._threads.append(t)
        def setup(c):
            self.client = c  # before the connect: a persistent session's messages come at once, and are acked on it
            c.max_inflight_messages_set(100)
            c.reconnect_delay_set(0.1, 0.5)  # the rules must be back as soon as the broker is

        try:
            self.client = self.broker.service_client(
                self.client_id, ENGINE_IDENTITY, lambda: [(f, 1) for f in self.filters()], self._on_message,
                setup=setup, clean_session=False, manual_ack=True)
        except ConnectionError as e:
            self.stop()
            raise ConnectionError("rules engine: %s" % e) from None
        return self

    def stop(self):
        self._running = False
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        for esm in self.esms.values():
            esm.stop()  # what waits in it is unacknowledged: the broker delivers it again
        self.invoker.stop()  # so are the events waiting for a retry
        self.runs.close()
        for _ in self._threads:
            try:
                self.queue.put_nowait(None)
            except queue.Full:
                pass
        for t in self._threads:
            t.join(5)

    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected()

    def filters(self) -> list[str]:
        out = []
        for r in self.rules:
            if r.rule.topic_filter not in out:
                out.append(r.rule.topic_filter)
            if r.basic_ingest:
                out.append(BASIC_INGEST + r.name + "/#")
        return out

    def _on_message(self, client, userdata, msg):
        ticket = Ticket(lambda: self._ack(msg))
        try:
            fired = self.evaluate(msg.topic, msg.payload)
        except Exception as e:  # noqa: BLE001 - the MQTT thread must live on; a message that breaks
            self._evaluation_failed(msg.topic, msg.payload, e)  # evaluation would break it again if
            return ticket.release()  # redelivered: recorded in the dead-letter queue, acknowledged
        if all(self._deferred(action) and not isinstance(out, Refused) for r, out, _, _ in fired
               for action in r.actions):
            self.run(fired, ticket)  # only queue-fed actions: cheap, and their back-pressure is the queue's
        else:
            # Blocks when the workers are behind: the broker then holds what is not yet acknowledged.
            self.queue.put((fired, ticket))

    def _ack(self, msg):
        try:
            self.client.ack(msg.mid, msg.qos)
            with self._lock:
                self._stats["acked"] += 1
        except Exception:  # noqa: BLE001 - a lost connection: the broker redelivers it
            pass

    def _work(self):
        while True:
            job = self.queue.get()
            if job is None:
                return
            self.run(*job)

    # ------------------------------------------------------------ evaluation
    def process(self, topic: str, payload: bytes, clientid: str = "", done=None) -> int:
        """Runs every matching rule on one message; returns how many fired. done() is called once
        every action finished (queue-fed ones when their batch did)."""
        fired = self.evaluate(topic, payload, clientid)
        self.run(fired, Ticket(done or (lambda: None)))
        return len(fired)

    def evaluate(self, topic: str, payload: bytes, clientid: str = "") -> list:
        """The rules that fire on one message: (rule, SELECT output or Refused, context, raw payload) each."""
        now_ms = int(time.time() * 1000)
        with self._lock:
            self._stats["received"] += 1
            self._stats["bytes_in"] += len(payload)
            self._stats["message_units_5kb"] += max(1, -(-len(payload) // 5120))
        real_topic = topic
        if topic.startswith(BASIC_INGEST):
            name, _, real_topic = topic[len(BASIC_INGEST):].partition("/")
            candidates = [r for r in self.rules if r.name == name and r.basic_ingest]
            with self._lock:
                self._stats["basic_ingest"] += 1
        else:
            candidates = [r for r in self.rules if r.rule.matches(real_topic)]
        message, refused = parse_payload(payload)
        too_large = refused is not None and refused.reason == "too_large"
        fired = []
        for r in candidates:
            ctx = sql.Context(message, real_topic, clientid, now_ms, payload)
            # WHERE runs on what could be read (an unreadable payload's attributes are Undefined, as
            # in AWS); a payload too large to read reaches every rule on its topic.
            if r.rule.where is not None and not too_large and sql.eval_expr(r.rule.where, ctx) is not True:
                continue
            # A SELECT of functions only (encode(*, 'base64') ...) reads any payload AWS IoT accepts.
            refuse = refused if too_large or (refused is not None and r.rule.reads_json) else None
            fired.append((r, refuse or sql.project(r.rule.select, ctx), ctx, payload))
        with self._lock:
            if any(isinstance(out, Refused) for _, out, _, _ in fired):
                self._stats[refused.reason] += 1
            for r, _, _, _ in fired:
                self._stats["fired"][r.name] = self._stats["fired"].get(r.name, 0) + 1
            if not fired:
                self._stats["no_rule"] += 1
        return fired

    def run(self, fired: list, ticket: Ticket) -> None:
        """Runs the actions of each fired rule (failures to its error action); ticket.release() when all are done."""
        try:
            for r, out, ctx, payload in fired:
                if isinstance(out, Refused):
                    self._error_action(r, ctx.topic, ctx.clientid, payload, [out.failure(r.name)], ctx, out.reason)
                    continue
                failures = []
                for action in r.actions:
                    try:
                        self._run_action(action, out, ctx, ticket)
                        with self._lock:
                            self._stats["actions_ok"] += 1
                    except ActionError as e:
                        failures.append(e)
                    except Exception as e:  # noqa: BLE001 - any failure goes to the error action
                        failures.append(ActionError(action[0], str(action[1]), "%s: %s" % (type(e).__name__, e)))
                if failures:
                    with self._lock:
                        self._stats["actions_failed"] += len(failures)
                    self._error_action(r, ctx.topic, ctx.clientid, payload, failures, ctx)
                if self.on_fired:
                    self.on_fired(r.name, out, ctx.topic)
        finally:
            ticket.release()

    def _deferred(self, action) -> bool:
        return action[0] == "sqs" and self._queue_name(action) in self.esms

    def _queue_name(self, action) -> str:
        return rule_defs.target(action[1]["queue"])

    def _param(self, action, key, ctx):
        _, params, templates = action
        return templates[key](ctx) if key in templates else params.get(key)

    def _run_action(self, action, out, ctx, ticket=None):
        kind, params, _ = action
        body = to_json(out)
        if ticket is not None and self._deferred(action):
            ticket.hold()
            if not self.esms[self._queue_name(action)].add(body, ticket.release):
                raise ActionError("SqsAction", self._queue_name(action), "the local queue is stopping")
            return
        if kind == "lambda":
            name = params["function"]
            if name not in self.functions:  # a failure to invoke: the one a rule's error action sees
                raise ActionError("LambdaAction", name, "no function %r" % name)
            if ticket is not None:
                ticket.hold()  # released once the event succeeded or its failure record is kept
            self.invoker.submit(name, resources.function_name(name), body,
                                ticket.release if ticket is not None else (lambda: None))
        elif kind == "republish":
            info = self.client.publish(self._param(action, "topic", ctx), body, qos=int(params.get("qos", 0)))
            if int(params.get("qos", 0)):
                info.wait_for_publish(5)
        else:
            self.targets.run(kind, params, body, lambda key: self._param(action, key, ctx))

    def _error_action(self, r, topic, clientid, payload, failures, ctx, reason=None):
        if r.error_action is None:
            return
        doc = error_action_doc(r.name, topic, clientid, payload, failures, reason)
        try:
            self._run_action(r.error_action, doc, ctx)
            with self._lock:
                self._stats["error_actions"] += 1
        except Exception:  # noqa: BLE001 - counted: the demo and the benchmark show it
            with self._lock:
                self._stats["error_action_failed"] += 1

    def _evaluation_failed(self, topic, payload: bytes, error: Exception):
        with self._lock:
            self._stats["evaluation_errors"] += 1
        try:
            self._send_to_dead_letter(evaluation_error_body(topic, payload, error))
        except Exception:  # noqa: BLE001 - counted
            with self._lock:
                self._stats["error_action_failed"] += 1

    # ------------------------------------------------------------ Lambdas and queues
    def _send_failure_record(self, record: dict):
        """An asynchronous invoke's failure, to the function's on-failure destination."""
        self.targets.send(resources.ASYNC_FAILURE_QUEUE, to_json(record))

    def _count_batch(self, size: int, receives: int):
        # What SQS would bill: each SendMessage, and per batch the ReceiveMessage calls (10 messages
        # at most each) and as many DeleteMessageBatch calls.
        if self.meter is not None:
            self.meter.add_counts({"sqs_request": size + 2 * receives})

    def _send_to_dead_letter(self, body: str):
        self.targets.send(resources.DEAD_LETTER_QUEUE, body)

    def stats(self) -> dict:
        with self._lock:
            s = json.loads(json.dumps(self._stats))
        s.update(self.runs.stats())
        s["queued"] = self.queue.qsize()
        s["async"] = dict(self.invoker.stats, waiting=self.invoker.waiting())
        s["queues"] = {name: dict(esm.stats, held=esm.held()) for name, esm in self.esms.items()}
        return s


CODES = (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.SETUP_FAILED)  # what `python -m cloud.local.engine` exits with


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloud.local.engine", description=__doc__,
                                 epilog=exit_codes.epilog(CODES), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker-dir", required=True, help="the local broker's state dir (provision home/broker)")
    ap.add_argument("--port", type=int, help="the broker's port (default: the one it last used)")
    ap.add_argument("--endpoint-url", help="moto server URL for the AWS services")
    a = ap.parse_args(argv)
    from cloud.local.broker import BrokerError, LocalBroker

    if a.endpoint_url:
        from cloud.local.moto_env import use_endpoint

        use_endpoint(a.endpoint_url)
    try:
        engine = Engine(LocalBroker.from_state_dir(a.broker_dir, a.port)).start()
    except (BrokerError, OSError) as e:  # no broker state there, or no broker listening (ConnectionError)
        print("rules engine: %s" % e, file=sys.stderr)
        return exit_codes.SETUP_FAILED
    print("rules engine on %s:%d: %s" % (engine.broker.host, engine.broker.port, ", ".join(engine.filters())))
    try:
        while True:
            time.sleep(10)
            print(json.dumps(engine.stats()))
    except KeyboardInterrupt:
        engine.stop()
    return exit_codes.OK


if __name__ == "__main__":
    sys.exit(main())
