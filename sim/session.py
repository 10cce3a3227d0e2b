"""A device's life on the network: connect as its thing, subscribe to its commands, announce itself,
pump its outbox at QoS 1, retransmit, ping, and when the session dies back off and come back.

report(kind, name, seconds, error) is how figures leave (Locust's request event in sim/locustfile.py):
("connect", "mTLS handshake + CONNACK"), ("PUBACK", "<kind>") with the publish-to-PUBACK time.
"""

from __future__ import annotations

import random
import threading
import time

import contract
from sim import mqtt
from sim.device import KEEPALIVE_S, TRIES, Device, now_ms


class Session:
    def __init__(self, device: Device, host: str, port: int, context_factory, report=None):
        self.device, self.host, self.port = device, host, port
        self.context_factory = context_factory  # () -> ssl.SSLContext with this device's certificate
        self.report = report or (lambda *a: None)
        self.client = None
        self.wake = threading.Event()
        self.connected_once = False
        self.backoff = device.settings.backoff_min_s
        self.stopping = False
        self.up = False  # counted in "connected"

    # ------------------------------------------------------------ session

    def connect(self) -> bool:
        d = self.device
        c = mqtt.Client(self.host, self.port, self.context_factory(), d.thing, KEEPALIVE_S, will=d.will(),
                        on_message=self._on_message, on_ack=self._on_ack, on_close=self._on_close)
        try:
            took = c.connect()
            c.subscribe(contract.topic(d.thing, contract.CMD))
            self.client = c
            c.publish(contract.topic(d.thing, contract.STATUS), d.status(True), qos=1, retain=True,
                      pid=self._status_pid())
        except mqtt.MqttError as e:
            c.close("connect failed")
            d.counters.add("connect_failures")
            self.report("connect", "mTLS handshake + CONNACK", 0.0, e)
            return False
        d.counters.add("handshakes")
        d.counters.mark_connect(time.time())
        d.counters.add("connected")
        self.up = True
        if self.connected_once:
            d.counters.add("reconnects")
        else:
            d.counters.add("devices")
        self.connected_once = True
        self.backoff = d.settings.backoff_min_s
        self.report("connect", "mTLS handshake + CONNACK", took, None)
        return True

    def _status_pid(self) -> int:
        # the status publish gets a packet id of its own, outside the outbox
        self.status_pid = self.client.next_pid()
        return self.status_pid

    def _on_close(self, reason):
        if not self.up:
            return
        self.up = False
        self.device.counters.add("connected", -1)
        if not self.stopping:
            self.device.counters.add("sessions_lost")
        self.device.session_lost()
        self.wake.set()

    def _on_ack(self, pid):
        if pid == getattr(self, "status_pid", None):
            self.status_pid = None
            self.device.counters.add("status_acked")
            return
        m = self.device.acked(pid)
        if m is not None:
            self.report("PUBACK", m.kind, time.monotonic() - m.first_sent, None)
            if self.on_stored_probe and m.kind == "telemetry":
                self.on_stored_probe(self.device, m)
        self.wake.set()

    on_stored_probe = None  # (device, message) -> None: the storage latency probe, if any

    def _on_message(self, topic, payload, retained):
        if topic == contract.topic(self.device.thing, contract.CMD):
            self.device.command(payload, retained)
            self.wake.set()

    # ------------------------------------------------------------ the loop

    def pump(self) -> None:
        """Sends what the outbox holds while slots are free; retransmits what waited too long."""
        c, d = self.client, self.device
        t = time.monotonic()
        for m in d.overdue(t):
            if m.tries >= TRIES:
                c.close("no PUBACK after %d tries" % TRIES)
                return
            d.counters.add("retransmissions")
            c.publish(m.topic, m.payload, qos=1, retain=m.retain, pid=m.pid, dup=True)
            m.sent_at, m.tries = t, m.tries + 1
        while c.alive:
            m = d.next_to_send()
            if m is None:
                break
            pid = c.next_pid()
            d.sent(m, pid, time.monotonic())
            c.publish(m.topic, m.payload, qos=1, retain=m.retain, pid=pid)
        if c.alive and time.monotonic() - c.last_sent > KEEPALIVE_S * 0.75:
            c.ping()

    def step(self) -> float:
        """One turn of the loop; returns how long to sleep before the next (a PUBACK or a command wakes it)."""
        d = self.device
        d.advance(now_ms())
        if self.client is None or not self.client.alive:
            if not self.connect():
                wait, self.backoff = random.uniform(self.backoff / 2, self.backoff), min(
                    self.backoff * 2, d.settings.backoff_max_s)
                return wait
        try:
            self.pump()
        except mqtt.MqttError:
            return 0.0
        until = (d.next_due_ms() - now_ms()) / 1000.0
        if d.inflight:
            until = min(until, d.settings.ack_timeout_s / 2)
        return max(0.0, min(until, KEEPALIVE_S / 2))

    def run(self, stop: threading.Event | None = None, sleep=None) -> None:
        while not (stop and stop.is_set()):
            pause = self.step()
            self.wake.clear()
            if pause > 0:
                self.wake.wait(pause)

    def finish(self, drain_s: float = 3.0) -> int:
        """End of the run: waits up to drain_s for what is in flight and queued, says offline (retained,
        as the Will would), disconnects. Returns how many messages were left unacknowledged."""
        self.stopping = True
        deadline = time.monotonic() + drain_s
        while self.client is not None and self.client.alive and self.device.pending() and time.monotonic() < deadline:
            try:
                self.pump()
            except mqtt.MqttError:
                break
            self.wake.clear()
            self.wake.wait(0.1)
        left = self.device.pending()
        self.device.counters.add("unacked_at_end", left)
        if self.client is not None and self.client.alive:
            try:
                self.client.publish(contract.topic(self.device.thing, contract.STATUS), self.device.status(False),
                                    qos=0, retain=True)
            except mqtt.MqttError:
                pass
            self.client.disconnect()
        return left
