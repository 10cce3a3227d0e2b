"""The control channel to the board process: newline-delimited JSON over loopback TCP
(the board side is vesp32/board/_vwire.py; see docs/virtual-esp32.md).

The harness listens; each boot of the board connects once, says hello, gets its init
(config, plant, held inputs, Wi-Fi) and then reports what its pins, PWM, watchdog and
plant do. Commands carry an id that the board acknowledges once applied. Only the
current boot's connection counts: whatever a dead chip still had in flight is dropped.
"""

from __future__ import annotations

import json
import selectors
import socket
import time

from vesp32.supervisor import CAUSE_NAMES, SOFT_RESET


def init_message(config, plant, wifi, rssi, drive, hosts, wdt_report_ms, snapshot_ms, dns_ms=0) -> dict:
    """What a fresh boot is told: the sensor wiring and pins, and the world as it is now."""
    plant = dict(plant)
    if plant.get("temp") is not None:
        plant["temp_c"] = plant["temp"]  # a forced temperature is also the thermal state
    return {
        "cmd": "init",
        "cfg": {"pins": config["pins"], "ntc": config["ntc"], "current": config["current"]},
        "plant": plant,
        "wifi": wifi,
        "rssi": rssi,
        "drive": {str(k): v for k, v in drive.items()},
        "hosts": hosts,
        "dns_ms": dns_ms,
        "wdt_report_ms": wdt_report_ms,
        "snapshot_ms": snapshot_ms,
    }


class ControlChannel:
    """Wire-protocol part of VirtualESP32 (state set up in VirtualESP32.__init__)."""

    def _open_channel(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")

    def _close_channel(self):
        for s in (self._listener,):
            try:
                s.close()
            except OSError:
                pass
        if self._sel is not None:
            self._sel.close()

    def _io_loop(self):
        # The one I/O thread: the board's messages, then supervision, every 10 ms at most.
        while self._running:
            timeout = 0.01
            try:
                events = self._sel.select(timeout)
            except (OSError, ValueError):
                if not self._running:
                    return
                events = []
            for key, _ in events:
                if key.data == "listen":
                    self._accept()
                else:
                    self._read_conn(key.fileobj)
            self._supervise()

    def _accept(self):
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, OSError):
            return
        with self._proc_lock:
            self._drop_conn()
            conn.setblocking(False)
            self._conn = conn
            self._sel.register(conn, selectors.EVENT_READ, "conn")

    def _drop_conn(self):
        conn = self._conn
        self._conn = None
        self._conn_buf = b""
        if conn is not None:
            try:
                self._sel.unregister(conn)
            except (KeyError, ValueError):
                pass
            conn.close()

    def _read_conn(self, conn):
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if conn is not self._conn:
            return
        if not data:
            with self._proc_lock:
                if conn is self._conn:
                    self._drop_conn()
            return
        self._conn_buf += data
        *complete, self._conn_buf = self._conn_buf.split(b"\n")
        for raw in complete:
            if conn is not self._conn:
                return  # a reset in this batch: the rest is from a dead chip
            if raw.strip():
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                self._on_message(msg)

    def _on_message(self, msg):
        e = msg.get("e")
        t = msg.get("t", time.time_ns())
        self.messages.append(msg)
        if e == "hello":
            self._send_init()
            return
        if e == "reset":
            soft = bool(msg.get("soft"))
            cause = SOFT_RESET if soft else int(msg.get("cause", SOFT_RESET))
            why = "soft reboot" if soft else CAUSE_NAMES.get(cause, str(cause))
            self._restart(cause, why, delay_ms=int(msg.get("sleep_ms") or 0), keep_wdt=soft, repl=msg.get("repl"))
            return
        with self._lock:
            if e == "pwm":
                pin, ns = msg["pin"], msg["ns"]
                self.pwm[pin] = (ns, msg.get("f", 0))
                if pin == self.servo_pin:
                    self.pwm_log.append((t, ns))
                    self.pwm_duty = ns
            elif e == "pin":
                pin, v = msg["pin"], msg["v"]
                self.outputs[pin] = v
                self.pin_log.append((t, pin, v))
                name = self._led_pins.get(pin)
                if name is not None:
                    self.leds[name] = v
            elif e == "feed":
                self.last_feed_ns = t
            elif e == "dns":
                self.dns_lookups.append((t, msg["host"]))
            elif e == "wdt":
                self.wdt_timeout_ms = int(msg["ms"])
                self.last_feed_ns = t
            elif e == "plant":
                self.plant_state = {
                    "t": t,
                    "temp_c": msg["mc"] / 1000.0,
                    "amps": msg["ma"] / 1000.0,
                    "pos_deg": msg["mdeg"] / 1000.0,
                }
                free = msg.get("free")
                if free is not None and free < (1 << 29):  # 1 << 29: no sample in the period
                    self.heap_free_log.append((t, free))
                    if self.heap_min_free is None or free < self.heap_min_free:
                        self.heap_min_free = free
            elif e == "ack":
                self.acks[msg["id"]] = t
                self._pending.discard(msg["id"])
            elif e == "ready":
                self.heap_info = {k: msg[k] for k in ("mem_free", "mem_alloc", "ballast", "sim_bytes") if k in msg}
                self._ready = True
                # Commands a reset cut off: their settings came with this boot's init
                # (a press that never arrived is simply lost, as on a resetting chip).
                for cid in self._pending:
                    self.acks[cid] = t
                self._pending.clear()
            elif e == "halt":
                self.halted = msg.get("why", "halted")
            self._cond.notify_all()

    def _send_init(self):
        init = init_message(
            self.config, self._plant, self._wifi, self._rssi, self._drive, self._hosts, self.wdt_report_ms, self.snapshot_ms,
            self._dns_ms,
        )
        self._raw_send(init)
        for pin, uv in self._adc.items():
            self._raw_send({"cmd": "adc", "pin": pin, "uv": uv})

    def _raw_send(self, obj) -> bool:
        conn = self._conn
        if conn is None:
            return False
        data = (json.dumps(obj) + "\n").encode()
        with self._send_lock:
            try:
                conn.setblocking(True)
                conn.sendall(data)
                conn.setblocking(False)
                return True
            except OSError:
                return False

    def _command(self, obj) -> tuple[int, int]:
        """Send a command; returns (id, t_ns when sent). Lost if the board is not up."""
        with self._lock:
            cid = self._next_id
            self._next_id += 1
        obj["id"] = cid
        with self._lock:
            self._pending.add(cid)
        t = time.time_ns()
        self._raw_send(obj)
        self._last_cmd = cid
        return cid, t
