"""One simulated MotorGuard device: its plant, its messages, its offline buffer, its command rules.

Free of Locust: sim/locustfile.py wraps it in a User, the tests drive it with threads. What it copies
from the firmware (firmware/motorguard/, config.py DEFAULTS) and why each matters for a load test:
- a sample a second, 30 to a telemetry message (one message every 30 s), seq = batch number per boot,
  a random boot id per boot, events with their own seq, status retained with a retained Last Will;
- QoS 1, at most 2 messages unacknowledged, a retransmission with DUP after 5 s, the link declared
  dead after 3 tries; a message leaves the buffer only on its PUBACK, so after a reconnect every
  unacknowledged message is sent again, oldest first (acks, then events, then telemetry);
- a buffer of 600 samples (20 telemetry messages) and 32 events: past that the oldest is dropped and
  counted in "dropped", as the ring does;
- commands judged by the firmware's rules (docs/commands.md): a stop always, at once, its ack first;
  start and set_speed only when fresh, once, not retained and not older than the latest stop;
- reconnects with exponential backoff from 1 s to 60 s, jittered between half and full.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import threading
import time

import contract

FW = "0.1.0-sim"
SAMPLES_PER_MESSAGE = 30  # firmware DEFAULTS["telemetry"]["samples_per_message"]
SAMPLE_PERIOD_MS = 1000  # firmware DEFAULTS["telemetry"]["sample_period_ms"]
BUFFER_MESSAGES = 930 // SAMPLES_PER_MESSAGE  # DEFAULTS["telemetry"]["buffer_samples"] = 930
EVENT_BUFFER = 32
MAX_INFLIGHT = 2  # DEFAULTS["mqtt"]["max_inflight"]
ACK_TIMEOUT_S = 5.0  # DEFAULTS["mqtt"]["ack_timeout_ms"]
TRIES = 3  # transmissions of one message before the link is declared dead
KEEPALIVE_S = 60
COMMAND_MAX_AGE_MS = 10_000  # DEFAULTS["control"]["command_max_age_s"]
CLOCK_TOLERANCE_MS = 2_000
SEEN_IDS = 16
ID_RULE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
FAULT_HOLD_S = 20.0  # how long the simulated operator takes to reset a fault at the machine
RESTART_AFTER_S = 5.0  # and to press start again
REASONS = ("overcurrent", "overtemp", "overtemp_overcurrent")


def _compact(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode()


def now_ms() -> int:
    return int(time.time() * 1000)


class Settings:
    """What a run chooses; the defaults are the firmware's. From the environment (SIM_*), so that
    Locust's worker processes and a Fargate task read the same as the command that started them."""

    def __init__(self, environ=os.environ):
        def num(name, default, kind=float):
            raw = environ.get(name)
            try:
                return kind(raw) if raw not in (None, "") else default
            except ValueError:
                raise ValueError("%s=%r is not a number" % (name, raw)) from None

        self.sample_period_ms = num("SIM_SAMPLE_PERIOD_MS", SAMPLE_PERIOD_MS, int)
        self.samples_per_message = num("SIM_SAMPLES_PER_MESSAGE", SAMPLES_PER_MESSAGE, int)
        self.faults_per_hour = num("SIM_FAULTS_PER_HOUR", 0.0)  # per device
        self.backoff_min_s = num("SIM_BACKOFF_MIN_S", 1.0)
        self.backoff_max_s = num("SIM_BACKOFF_MAX_S", 60.0)
        self.ack_timeout_s = num("SIM_ACK_TIMEOUT_S", ACK_TIMEOUT_S)
        self.remote_start = environ.get("SIM_REMOTE_START", "") == "1"
        # The fault storm: every device trips a FAULT at this wall-clock time (epoch ms; 0 = none).
        self.fault_storm_at_ms = num("SIM_FAULT_STORM_AT_MS", 0, int)
        if self.sample_period_ms < 1 or self.samples_per_message < 1 or self.samples_per_message > 600:
            raise ValueError("SIM_SAMPLE_PERIOD_MS must be >= 1 and SIM_SAMPLES_PER_MESSAGE 1-600")


class Counters:
    """What a process's devices did, summed; a Locust worker sends a snapshot to the master."""

    FIELDS = ("devices", "connected", "handshakes", "connect_failures", "reconnects", "sessions_lost",
              "telemetry_made", "telemetry_acked", "events_made", "events_acked", "faults", "acks_made",
              "acks_acked", "commands", "retransmissions", "dropped_samples", "unacked_at_end",
              "status_acked")

    def __init__(self):
        self.lock = threading.Lock()
        self.values = dict.fromkeys(self.FIELDS, 0)

    def add(self, name, n=1):
        with self.lock:
            self.values[name] += n

    def mark_connect(self, t: float):
        with self.lock:
            self.values["first_connect"] = min(self.values.get("first_connect") or t, t)
            self.values["last_connect"] = max(self.values.get("last_connect") or t, t)

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.values)


class Message:
    __slots__ = ("kind", "seq", "topic", "payload", "retain", "first_sent", "sent_at", "tries", "pid", "extra")

    def __init__(self, kind, seq, topic, payload, retain=False, extra=None):
        self.kind, self.seq, self.topic, self.payload, self.retain = kind, seq, topic, payload, retain
        self.first_sent = self.sent_at = None
        self.tries, self.pid, self.extra = 0, None, extra


class Plant:
    """The motor: STOPPED, RUNNING or FAULT, a temperature and a current, faults at a rate (a Poisson
    process per device, so a fleet's faults are spread like a real one's), and a simulated operator who
    resets a fault after FAULT_HOLD_S and presses start RESTART_AFTER_S later."""

    def __init__(self, rng: random.Random, faults_per_hour: float, t_ms: int):
        self.rng, self.rate = rng, faults_per_hour
        self.state, self.speed, self.position, self.direction = "STOPPED", 60, 90.0, 1
        self.temp, self.current = 24.0 + rng.random(), 0.0
        self.reason = None
        self.next_fault = self.next_reset = None
        self.next_start = t_ms + int(rng.uniform(0.5, 2.0) * 1000)  # the operator starts it after boot

    def _draw_fault(self, t_ms):
        self.next_fault = t_ms + int(self.rng.expovariate(self.rate / 3.6e6)) if self.rate > 0 else None

    def due(self) -> list:
        return [t for t in (self.next_fault, self.next_reset, self.next_start) if t is not None]

    def transitions(self, until_ms: int):
        """(time, event, reason) for every state change due up to until_ms, applied in order."""
        while True:
            pending = [(t, name) for t, name in ((self.next_start, "start"), (self.next_fault, "fault"),
                                                 (self.next_reset, "reset")) if t is not None and t <= until_ms]
            if not pending:
                return
            t, name = min(pending)
            if name == "start":
                self.next_start = None
                if self.state == "STOPPED":
                    self.state = "RUNNING"
                    self._draw_fault(t)
                    yield t, "STARTED", None
            elif name == "fault":
                yield t, "FAULT", self.trip(t)
            else:
                self.next_reset = None
                self.state, self.reason = "STOPPED", None
                self.temp, self.current = 30.0, 0.0
                yield t, "FAULT_CLEARED", None
                self.next_start = t + int(RESTART_AFTER_S * 1000)

    def trip(self, t_ms, reason=None) -> str:
        self.reason = reason or self.rng.choice(REASONS)
        self.state, self.next_fault = "FAULT", None
        self.next_start = None
        self.next_reset = t_ms + int(FAULT_HOLD_S * 1000)
        self.current = 3.2 if "overcurrent" in self.reason else 1.8
        self.temp = 61.0 if self.reason == "overtemp" else (35.0 if "overtemp" in self.reason else self.temp)
        return self.reason

    def stop(self):
        if self.state == "RUNNING":
            self.state, self.next_fault = "STOPPED", None
            self.current = 0.0
            return True
        return False

    def sample(self, t_ms: int, period_s: float) -> dict:
        if self.state == "RUNNING":
            self.current = 0.8 + self.rng.uniform(-0.05, 0.05)
            self.temp += (30.0 + 2.0 * self.current - self.temp) * 0.02
            self.position += self.direction * self.speed * period_s
            if not 10 <= self.position <= 170:
                self.direction = -self.direction
                self.position = min(170.0, max(10.0, self.position))
        elif self.state == "STOPPED":
            self.temp += (24.0 - self.temp) * 0.01
        return {"time": t_ms, "temperature_c": round(self.temp, 1), "current_a": round(self.current, 3),
                "position": round(self.position, 1), "speed": self.speed, "state": self.state}


class Device:
    """One device's messages and rules. `advance(t_ms)` runs its plant up to t_ms; `next_to_send()`,
    `sent()`, `acked()` are its outbox; `command()` judges a command and queues its ack."""

    def __init__(self, thing: str, settings: Settings | None = None, counters: Counters | None = None,
                 seed=None, t_ms: int | None = None):
        if not contract.is_thing_name(thing):
            raise ValueError("%r is not a thing name (%s)" % (thing, contract.THING_NAME_RULE))
        self.thing, self.settings = thing, settings or Settings({})
        self.counters = counters or Counters()
        self.rng = random.Random(seed)
        t_ms = now_ms() if t_ms is None else t_ms
        self.boot = "%08x" % self.rng.getrandbits(32)
        self.boot_ms = t_ms
        self.plant = Plant(self.rng, self.settings.faults_per_hour, t_ms)
        self.next_sample_ms = t_ms
        self.samples: list = []
        self.tel_seq = self.ev_seq = 0
        self.dropped = 0
        self.queues = {"ack": collections.deque(), "events": collections.deque(), "telemetry": collections.deque()}
        self.inflight: dict[int, Message] = {}
        self.seen_ids = collections.deque(maxlen=SEEN_IDS)
        self.last_stop_ms = t_ms  # boot counts as a stop
        self.stormed = False
        self.lock = threading.Lock()
        self._event(t_ms, "BOOT", None, detail="power_on")

    # ------------------------------------------------------------ messages

    def _head(self, t_ms) -> dict:
        return {"v": 1, "device": self.thing, "boot": self.boot, "fw": FW,
                "uptime_s": max(0, (t_ms - self.boot_ms) // 1000), "heap_free": 21000 + self.rng.randrange(2000),
                "rssi": -55 - self.rng.randrange(20)}

    def status(self, online: bool) -> bytes:
        return _compact({"v": 1, "device": self.thing, "boot": self.boot, "fw": FW, "online": online})

    def will(self):
        return contract.topic(self.thing, contract.STATUS), self.status(False), 1, True

    def _event(self, t_ms, name, reason, detail=None):
        msg = dict(self._head(t_ms), seq=self.ev_seq, dropped=self.dropped, time=t_ms, event=name,
                   state=self.plant.state, temperature_c=round(self.plant.temp, 1),
                   current_a=round(self.plant.current, 3))
        if reason:
            msg["reason"] = reason
        if detail:
            msg["detail"] = detail
        q = self.queues["events"]
        if len(q) >= EVENT_BUFFER:
            q.popleft()
            self.dropped += 1
        q.append(Message("events", self.ev_seq, contract.topic(self.thing, contract.EVENTS), _compact(msg),
                         extra={"event": name}))
        self.ev_seq += 1
        self.counters.add("events_made")
        if name == "FAULT":
            self.counters.add("faults")

    def _batch(self, t_ms):
        msg = dict(self._head(t_ms), seq=self.tel_seq, dropped=self.dropped, samples=self.samples)
        q = self.queues["telemetry"]
        if len(q) >= BUFFER_MESSAGES:  # the ring is full: the oldest batch not in flight goes
            q.popleft()
            self.dropped += self.settings.samples_per_message
            self.counters.add("dropped_samples", self.settings.samples_per_message)
        q.append(Message("telemetry", self.tel_seq, contract.topic(self.thing, contract.TELEMETRY), _compact(msg),
                         extra={"first_ms": self.samples[0]["time"]}))
        self.tel_seq += 1
        self.samples = []
        self.counters.add("telemetry_made")

    def advance(self, t_ms: int) -> None:
        """Samples and state changes up to t_ms, in time order."""
        period = self.settings.sample_period_ms
        storm = self.settings.fault_storm_at_ms
        if storm and not self.stormed and t_ms >= storm:
            self.stormed = True
            self.advance(storm - 1)
            self.force_fault(storm)
        with self.lock:
            while True:
                horizon = min(t_ms, self.next_sample_ms)
                for when, name, reason in self.plant.transitions(horizon):
                    self._event(when, name, reason)
                if self.next_sample_ms > t_ms:
                    return
                self.samples.append(self.plant.sample(self.next_sample_ms, period / 1000))
                self.next_sample_ms += period
                if len(self.samples) >= self.settings.samples_per_message:
                    self._batch(self.next_sample_ms - period)

    def force_fault(self, t_ms=None, reason="overcurrent") -> None:
        """A fault now (the fault storm), whatever the rate."""
        t_ms = now_ms() if t_ms is None else t_ms
        with self.lock:
            if self.plant.state != "FAULT":
                self._event(t_ms, "FAULT", self.plant.trip(t_ms, reason))

    def next_due_ms(self) -> int:
        return min([self.next_sample_ms + self.settings.sample_period_ms *
                    (self.settings.samples_per_message - len(self.samples) - 1)] + self.plant.due() +
                   ([self.settings.fault_storm_at_ms] if self.settings.fault_storm_at_ms and not self.stormed else []))

    # ------------------------------------------------------------ outbox

    def next_to_send(self):
        """The oldest message of the most urgent queue, if a slot is free (acks, events, telemetry)."""
        with self.lock:
            if len(self.inflight) >= MAX_INFLIGHT:
                return None
            for q in self.queues.values():
                for m in q:
                    if m.pid is None:
                        return m
        return None

    def sent(self, m: Message, pid: int, t: float) -> None:
        with self.lock:
            m.pid, m.sent_at, m.tries = pid, t, m.tries + 1
            if m.first_sent is None:
                m.first_sent = t
            self.inflight[pid] = m

    def acked(self, pid: int):
        """The message whose PUBACK this is, out of the buffer (None for an unknown or repeated PUBACK)."""
        with self.lock:
            m = self.inflight.pop(pid, None)
            if m is None:
                return None
            try:
                self.queues[m.kind].remove(m)
            except ValueError:
                pass
            self.counters.add(m.kind + "_acked" if m.kind != "ack" else "acks_acked")
            return m

    def overdue(self, t: float) -> list:
        with self.lock:
            return [m for m in self.inflight.values() if t - m.sent_at >= self.settings.ack_timeout_s]

    def session_lost(self) -> None:
        """Every message in flight goes back to the buffer, in its place: replayed oldest first."""
        with self.lock:
            for m in self.inflight.values():
                m.pid = None
            self.inflight.clear()

    def pending(self) -> int:
        with self.lock:
            return sum(len(q) for q in self.queues.values())

    # ------------------------------------------------------------ commands

    def command(self, raw: bytes, retained: bool, t_ms: int | None = None) -> dict:
        """Judges a command under the firmware's rules and queues its ack (first in line); returns the ack."""
        t_ms = now_ms() if t_ms is None else t_ms
        self.counters.add("commands")
        cid, name, speed, problem = "", "invalid", None, None
        try:
            cmd = json.loads(raw) if len(raw) <= 512 else None
            problem = None if cmd is not None else "too_large"
        except ValueError:
            cmd, problem = None, "not_json"
        if problem is None and not isinstance(cmd, dict):
            problem = "not_object"
        if problem is None:
            cid = cmd.get("id") if isinstance(cmd.get("id"), str) else ""
            name = cmd.get("cmd") if cmd.get("cmd") in ("start", "stop", "set_speed") else "invalid"
            speed = cmd.get("speed")
        stop = b'"stop"' in raw
        with self.lock:
            if stop:  # never refused, whatever else is wrong with it
                if self.plant.stop():
                    self._event(t_ms, "STOPPED", None, detail="remote")
                self.last_stop_ms = t_ms
                return self._ack(cid, "stop", True, "ok")
            problem = problem or _shape_problem(cmd, retained)
            if problem is None and cid in self.seen_ids:
                problem = "duplicate"
            if problem is None:
                self.seen_ids.append(cid)
                issued = cmd["issued_at"]
                if issued > t_ms + CLOCK_TOLERANCE_MS:
                    problem = "from_future"
                elif t_ms - issued > COMMAND_MAX_AGE_MS:
                    problem = "stale"
                elif name == "start" and issued < self.last_stop_ms + CLOCK_TOLERANCE_MS:
                    problem = "stopped_since_issued"
                elif name == "start" and not self.settings.remote_start:
                    problem = "remote_start_disabled"
                elif name == "start" and self.plant.state == "FAULT":
                    problem = "fault_latched"
                elif name == "start" and self.plant.state == "RUNNING":
                    problem = "already_running"
            if problem:
                return self._ack(cid, name, False, problem)
            if name == "set_speed":
                self.plant.speed = speed
            else:
                self.plant.state = "RUNNING"
                self.plant._draw_fault(t_ms)
                self._event(t_ms, "STARTED", None, detail="remote")
            return self._ack(cid, name, True, "ok")

    def _ack(self, cid, name, ok, result) -> dict:
        msg = {"v": 1, "device": self.thing, "boot": self.boot, "fw": FW, "id": cid[:64], "cmd": name[:32],
               "ok": ok, "result": result[:128], "state": self.plant.state, "speed": self.plant.speed}
        self.queues["ack"].append(Message("ack", 0, contract.topic(self.thing, contract.ACK), _compact(msg)))
        self.counters.add("acks_made")
        return msg


def _shape_problem(cmd: dict, retained: bool):
    """The firmware's order (firmware/motorguard/commands.py): retained, then each field's rule."""
    if retained:
        return "retained"
    if cmd.get("v") != 2:
        return "unsupported_version: send v=2 with id and issued_at"
    if not (isinstance(cmd.get("id"), str) and ID_RULE.fullmatch(cmd["id"])):
        return "bad_id: 1-64 characters of [A-Za-z0-9-_.:]"
    if cmd.get("cmd") not in ("start", "stop", "set_speed"):
        return "unknown_cmd: start, stop or set_speed"
    allowed = {"v", "id", "issued_at", "cmd"} | ({"speed"} if cmd["cmd"] == "set_speed" else set())
    for key in cmd:
        if key not in allowed:
            return "unknown_field: %s" % str(key)[:32]
    issued = cmd.get("issued_at")
    if not (isinstance(issued, int) and not isinstance(issued, bool) and 1577836800000 <= issued <= 4102444800000):
        return "bad_issued_at: epoch milliseconds"
    if cmd["cmd"] == "set_speed":
        sp = cmd.get("speed")
        if not (isinstance(sp, int) and not isinstance(sp, bool) and 1 <= sp <= 180):
            return "bad_speed: an integer 1-180 deg/s"
    return None
