"""The local rules engine: the rules of cloud/rules.py, evaluated with AWS IoT's SQL semantics
(cloud/local/sql.py) on what devices publish to the local broker, with the same actions.

    engine = Engine(broker).start()      # broker: provisioning.broker.LocalBroker
    ...; engine.stats(); engine.stop()

    python -m cloud.local.engine --broker-dir DIR --endpoint-url URL

It subscribes with the service identity to every rule's topic filter (and to the Basic Ingest
topics $aws/rules/<rule>/... of rules that allow it). Nothing is lost silently:
- the subscription is a persistent session (clean_session false) and the broker's queue limits are
  set on purpose (provisioning/broker.py), so a burst waits in the broker rather than being dropped;
- each message is acknowledged (PUBACK) only after every action of every matching rule has run or
  its failure has gone to the rule's error action; until then the broker holds it for us;
- the work queue is bounded: when the workers fall behind, the MQTT reader waits, the broker's
  in-flight window fills, and the broker queues (back-pressure, never drops).

Actions: lambda (the handler called in-process with the SELECT output and a context object like
AWS's), dynamoDBv2, s3, sns, sqs, republish. An sqs action whose queue feeds a Lambda
(cloud/resources.py EVENT_SOURCES) goes to a local event source mapping (cloud/local/esm.py) that
invokes the function in batches, in worker processes when lambda_processes > 0
(cloud/local/runtime.py); the MQTT message is acknowledged once the batch stored it. A message whose
rules only feed such queues is evaluated and queued on the MQTT thread, with no hand-over to a
worker. Locally a Lambda that raises counts as a failed action and goes to the error action (in AWS,
the asynchronous invoke would retry and then drop it).
clientid() is the empty string: MQTT 3.1.1 does not tell a subscriber who published.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import queue
import threading
import time
import uuid

import orjson

from cloud import costs, resources
from cloud import rules as rule_defs
from cloud.local import sql
from cloud.local.apigw import LambdaContext
from cloud.local.esm import EventSourceMapping
from provisioning.broker import MAX_INFLIGHT_MESSAGES

BASIC_INGEST = "$aws/rules/"


def default_functions() -> dict:
    """Logical Lambda name -> handler, imported from cloud.resources.FUNCTIONS."""
    out = {}
    for name, path in resources.FUNCTIONS.items():
        mod, fn = path.rsplit(".", 1)
        out[name] = _lazy(mod, fn)
    return out


def _lazy(mod, fn):
    cache = {}

    def call(event, context):
        if "f" not in cache:
            cache["f"] = getattr(importlib.import_module(mod), fn)
        return cache["f"](event, context)

    call.handler_path = mod + "." + fn  # what a worker process imports (cloud/local/runtime.py)
    return call


def to_json(value) -> str:
    """A rule's output as JSON. orjson: a tenth of json.dumps' time on a 30-sample batch, which the
    engine encodes for every message; json for the integers beyond 64 bits that orjson refuses."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return json.dumps(value, default=str)


class Ticket:
    """One MQTT message's outstanding work: acknowledged when the last part is done."""

    __slots__ = ("parts", "lock", "on_done")

    def __init__(self, on_done):
        self.parts = 1
        self.lock = threading.Lock()
        self.on_done = on_done

    def hold(self):
        with self.lock:
            self.parts += 1

    def release(self, *_):
        with self.lock:
            self.parts -= 1
            last = self.parts == 0
        if last:
            self.on_done()


class ActionError(Exception):
    def __init__(self, action, resource, message):
        super().__init__(message)
        self.action, self.resource, self.message = action, resource, message


class LoadedRule:
    def __init__(self, spec: dict):
        self.name = spec["name"]
        self.spec = spec
        try:
            self.rule = sql.Rule(spec["sql"])
        except sql.SqlError as e:
            raise sql.SqlError("rule %s: %s" % (self.name, e)) from None
        self.actions = [self._load_action(a) for a in spec.get("actions", [])]
        self.error_action = self._load_action(spec["error_action"]) if spec.get("error_action") else None
        self.basic_ingest = bool(spec.get("basic_ingest"))

    def _load_action(self, action: dict):
        if len(action) != 1:
            raise sql.SqlError("rule %s: an action has exactly one type, got %s" % (self.name, sorted(action)))
        kind, params = next(iter(action.items()))
        if kind not in ("lambda", "dynamoDBv2", "s3", "sns", "sqs", "republish"):
            raise sql.SqlError("rule %s: action type %r is not supported locally" % (self.name, kind))
        templates = {k: sql.compile_template(v) for k, v in params.items() if isinstance(v, str) and "${" in v}
        return kind, params, templates


class Engine:
    def __init__(self, broker, functions=None, rules=None, workers: int = 4, queue_size: int = 2000,
                 client_id: str = "motorguard-rules-engine", boto_session=None, lambda_processes: int = 0,
                 meter=None, event_sources=None, retry_delay_s: float = 1.0):
        """lambda_processes: worker processes for queue-fed Lambdas (0: in this process); meter: a
        cloud.local.meter.Meter told of the operations made out of its sight (worker processes, the
        local queues); event_sources: as cloud/resources.py EVENT_SOURCES (the default)."""
        self.broker = broker
        self.functions = functions if functions is not None else default_functions()
        self.rules = [LoadedRule(r) for r in (rules if rules is not None else rule_defs.RULES)]
        self.workers = workers
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.client_id = client_id
        self._session = boto_session
        self._clients = {}
        self._targets = {}
        self._setup_lock = threading.Lock()  # boto3 clients and resources are not created thread-safely
        self._lock = threading.Lock()
        self._stats = {"received": 0, "acked": 0, "no_rule": 0, "fired": {}, "actions_ok": 0, "actions_failed": 0,
                       "error_actions": 0, "error_action_failed": 0, "lambda_invocations": 0, "lambda_ms": 0.0,
                       "lambda_gb_seconds": 0.0,
                       "bytes_in": 0, "message_units_5kb": 0, "basic_ingest": 0, "evaluation_errors": 0}
        self._threads = []
        self._running = False
        self.client = None
        self.on_fired = None  # optional callback(rule_name, output, topic)
        self.meter = meter
        self.lambda_processes = lambda_processes
        self._pool = None
        self.esms = {}
        sources = resources.EVENT_SOURCES if event_sources is None else event_sources
        queues = {self._queue_name(a) for r in self.rules for a in r.actions if a[0] == "sqs"}
        for src in sources.values():
            if src["queue"] in queues:
                self.esms[src["queue"]] = EventSourceMapping(
                    src["queue"], self._invoker(src["function"]), batch_size=src["batch_size"],
                    window_s=src["window_s"], max_receive_count=src["max_receive_count"],
                    dead_letter=self._send_to_dead_letter, capacity=MAX_INFLIGHT_MESSAGES,
                    retry_delay_s=retry_delay_s, on_batch=self._count_batch,
                    concurrency=max(2, lambda_processes))  # a batch in flight for each worker

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "Engine":
        import paho.mqtt.client as mqtt

        self._running = True
        if self.lambda_processes and self.esms:
            from cloud.local.runtime import LambdaProcesses

            self._pool = LambdaProcesses(self.lambda_processes)
        for esm in self.esms.values():
            esm.start()
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name="rules-worker-%d" % i, daemon=True)
            t.start()
            self._threads.append(t)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311,
                        clean_session=False, manual_ack=True)
        c.tls_set_context(self.broker.client_context())
        c.max_inflight_messages_set(100)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)  # the rules must be back as soon as the broker is
        self._subscribed = threading.Event()
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.connect(self.broker.host, self.broker.port, keepalive=30)
        c.loop_start()
        self.client = c
        if not self._subscribed.wait(10):
            self.stop()
            raise ConnectionError("rules engine: no SUBACK from the broker at %s:%d" % (self.broker.host, self.broker.port))
        return self

    def stop(self):
        self._running = False
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        for esm in self.esms.values():
            esm.stop()  # what waits in it is unacknowledged: the broker delivers it again
        if self._pool is not None:
            self._pool.close()
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

    def _on_connect(self, client, userdata, flags, reason, properties=None):
        client.subscribe([(f, 1) for f in self.filters()])

    def _on_message(self, client, userdata, msg):
        ticket = Ticket(lambda: self._ack(msg))
        try:
            fired = self.evaluate(msg.topic, msg.payload)
        except Exception:  # noqa: BLE001 - counted; the MQTT thread must live on, and a message
            with self._lock:  # that breaks evaluation would break it again on every redelivery
                self._stats["evaluation_errors"] += 1
            ticket.release()
            return
        if all(self._deferred(action) for r, _, _, _ in fired for action in r.actions):
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
        """The rules that fire on one message: (rule, SELECT output, context, raw payload) each."""
        now_ms = int(time.time() * 1000)
        with self._lock:
            self._stats["received"] += 1
            self._stats["bytes_in"] += len(payload)
            self._stats["message_units_5kb"] += max(1, -(-len(payload) // 5120))
        candidates = self.rules
        real_topic = topic
        if topic.startswith(BASIC_INGEST):
            name, _, real_topic = topic[len(BASIC_INGEST):].partition("/")
            candidates = [r for r in self.rules if r.name == name and r.basic_ingest]
            with self._lock:
                self._stats["basic_ingest"] += 1
        try:
            message = orjson.loads(payload)
        except ValueError:
            message = {}  # AWS: a non-JSON payload has no attributes; SELECT * yields nothing useful
        fired = []
        for r in candidates:
            if not topic.startswith(BASIC_INGEST) and not r.rule.matches(real_topic):
                continue
            ctx = sql.Context(message, real_topic, clientid, now_ms)
            if r.rule.where is not None and sql.eval_expr(r.rule.where, ctx) is not True:
                continue
            fired.append((r, sql.project(r.rule.select, ctx), ctx, payload))
        with self._lock:
            for r, _, _, _ in fired:
                self._stats["fired"][r.name] = self._stats["fired"].get(r.name, 0) + 1
            if not fired:
                self._stats["no_rule"] += 1
        return fired

    def run(self, fired: list, ticket: Ticket) -> None:
        """Runs the actions of each fired rule (failures to its error action); ticket.release() when all are done."""
        try:
            for r, out, ctx, payload in fired:
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

    def _client(self, service):
        c = self._clients.get(service)
        if c is None:
            import boto3

            with self._setup_lock:
                c = self._clients.get(service) or (self._session or boto3).client(service)
                self._clients[service] = c
        return c

    def _resolve(self, service, name):
        """Queue URL, topic ARN or table resource of a target, looked up once, not on every message."""
        got = self._targets.get((service, name))
        if got is None:
            if service == "sqs":
                got = self._client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
            elif service == "sns":
                got = self._client("sns").create_topic(Name=name)["TopicArn"]
            else:
                import boto3

                with self._setup_lock:
                    got = (self._session or boto3).resource("dynamodb").Table(name)
            self._targets[(service, name)] = got
        return got

    def _param(self, action, key, ctx):
        kind, params, templates = action
        if key in templates:
            return templates[key](ctx)
        return params.get(key)

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
            fn = self.functions.get(name)
            if fn is None:
                raise ActionError("LambdaAction", name, "no function %r" % name)
            t0 = time.perf_counter()
            try:
                fn(json.loads(body), LambdaContext(resources.function_name(name)))
            except Exception as e:  # noqa: BLE001
                raise ActionError("LambdaAction", resources.function_name(name), "%s: %s" % (type(e).__name__, e))
            finally:
                self._count_invocation(name, (time.perf_counter() - t0) * 1000)
        elif kind == "s3":
            bucket = rule_defs.target(params["bucket"])
            self._client("s3").put_object(Bucket=bucket, Key=self._param(action, "key", ctx), Body=body.encode())
        elif kind == "sqs":
            url = self._resolve("sqs", self._queue_name(action))
            self._client("sqs").send_message(QueueUrl=url, MessageBody=body)
        elif kind == "sns":
            arn = self._resolve("sns", rule_defs.target(params["topic"]))
            self._client("sns").publish(TopicArn=arn, Message=body)
        elif kind == "dynamoDBv2":
            from cloud.domain.history import to_dynamo

            self._resolve("dynamodb", params["table"]).put_item(Item=to_dynamo(json.loads(body)))
        elif kind == "republish":
            info = self.client.publish(self._param(action, "topic", ctx), body, qos=int(params.get("qos", 0)))
            if int(params.get("qos", 0)):
                info.wait_for_publish(5)

    def _error_action(self, r, topic, clientid, payload, failures, ctx):
        if r.error_action is None:
            return
        doc = {
            "ruleName": r.name,
            "topic": topic,
            "cloudwatchTraceId": str(uuid.uuid4()),
            "clientId": clientid,
            "base64OriginalPayload": base64.b64encode(payload).decode(),
            "failures": [{"failedAction": f.action, "failedResource": f.resource, "errorMessage": f.message[:500]}
                         for f in failures],
        }
        try:
            self._run_action(r.error_action, doc, ctx)
            with self._lock:
                self._stats["error_actions"] += 1
        except Exception:  # noqa: BLE001 - counted: the demo and the benchmark show it
            with self._lock:
                self._stats["error_action_failed"] += 1

    # ------------------------------------------------------------ queue-fed Lambdas
    def _invoker(self, logical: str):
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
                self._count_invocation(logical, ran_ms if ran_ms is not None else (time.perf_counter() - t0) * 1000)

        return invoke

    def _count_invocation(self, logical: str, ms: float):
        # Lambda bills each invocation's duration rounded up to the millisecond, times its memory.
        with self._lock:
            self._stats["lambda_invocations"] += 1
            self._stats["lambda_ms"] += ms
            self._stats["lambda_gb_seconds"] += costs.lambda_gb_seconds(ms, resources.MEMORY_MB.get(logical, 128))

    def _count_batch(self, size: int, receives: int):
        # What SQS would bill: each SendMessage, and per batch the ReceiveMessage calls (10 messages
        # at most each) and as many DeleteMessageBatch calls.
        if self.meter is not None:
            self.meter.add_counts({"sqs_request": size + 2 * receives})

    def _send_to_dead_letter(self, body: str):
        url = self._resolve("sqs", resources.DEAD_LETTER_QUEUE)
        self._client("sqs").send_message(QueueUrl=url, MessageBody=body)

    def stats(self) -> dict:
        with self._lock:
            s = json.loads(json.dumps(self._stats))
        s["queued"] = self.queue.qsize()
        s["queues"] = {name: dict(esm.stats, held=esm.held()) for name, esm in self.esms.items()}
        return s


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m cloud.local.engine", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker-dir", required=True, help="the local broker's state dir (provision home/broker)")
    ap.add_argument("--port", type=int, help="the broker's port (default: the one it last used)")
    ap.add_argument("--endpoint-url", help="moto server URL for the AWS services")
    a = ap.parse_args(argv)
    from provisioning.broker import LocalBroker

    if a.endpoint_url:
        from cloud.local.moto_env import use_endpoint

        use_endpoint(a.endpoint_url)
    engine = Engine(LocalBroker.from_state_dir(a.broker_dir, a.port)).start()
    print("rules engine on %s:%d: %s" % (engine.broker.host, engine.broker.port, ", ".join(engine.filters())))
    try:
        while True:
            time.sleep(10)
            print(json.dumps(engine.stats()))
    except KeyboardInterrupt:
        engine.stop()


if __name__ == "__main__":
    main()
