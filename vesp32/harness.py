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

VirtualESP32 holds one board's state (set up in __init__ below); its behaviour comes in
parts, one module each:
    vesp32.supervisor    the process: power, resets, watchdog, deep sleep
    vesp32.channel       the control channel: accept, read, dispatch, send, command ids
    vesp32.controls      the public inputs: buttons, plant, sensors, Wi-Fi, network
    vesp32.observations  the public outputs: console, states, PWM timeline, waits
    vesp32.settings      plant defaults, the merged config, the interpreter, heap sizes
    vesp32.build         the firmware compiled as it is flashed
    vesp32.serialport    the USB-serial port (a pseudo-terminal) for mpremote and make deploy
Every name other code imports from here is re-exported below.
"""

from __future__ import annotations

import collections
import pathlib
import threading
import zlib

from vesp32.channel import ControlChannel
from vesp32.controls import BoardControls
from vesp32.netproxy import NetProxy
from vesp32.observations import BoardObservations, ConsoleLine
from vesp32.settings import (  # noqa: F401 - re-exported: the harness's public names
    BOARD,
    BOOT_SCRIPT,
    HERE,
    PLANT_DEFAULTS,
    REPO,
    config_module,
    find_micropython,
    initial_plant,
    merged_config,
    parse_heap,
    resolve_dir,
)
from vesp32.supervisor import (  # noqa: F401 - re-exported: the harness's public names
    CAUSE_NAMES,
    DEEPSLEEP_RESET,
    HARD_RESET,
    PWRON_RESET,
    SOFT_RESET,
    WDT_RESET,
    ProcessSupervision,
)


class VirtualESP32(BoardControls, BoardObservations, ProcessSupervision, ControlChannel):
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
        serial=False,
        serial_baud=115200,
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
        serial: give the board a USB-serial port (vm.serial.path, a pseudo-terminal) that
            mpremote and make deploy can open; its REPL speaks MicroPython's protocol.
        serial_baud: the port's pace for what the host sends (None: unpaced, for quick tests).
        """
        self.device_dir = pathlib.Path(device_dir).resolve()
        self.firmware_dir = resolve_dir(firmware_dir)
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

        # The world outside the chip: kept here, sent with every boot's init.
        self._plant = initial_plant(plant, time_scale)
        self._wifi = bool(wifi)
        self._rssi = int(rssi)
        self._drive: dict[int, int] = {}  # held buttons / driven inputs
        self._adc: dict[int, int] = {}
        self._dns_ms = 0  # how long a name lookup blocks the board (set_dns_delay)
        self._want_serial = bool(serial)
        self._serial_baud = serial_baud
        self.serial = None  # the SerialPort once started (serial=True)

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
        self.dns_lookups: list[tuple[int, str]] = []  # (t, host) of every name the firmware looked up
        self._pending: set[int] = set()
        self.wdt_timeout_ms = 0
        self.last_feed_ns = 0
        self.messages = collections.deque(maxlen=2000)  # raw device messages, for debugging

        # The process and its channel (vesp32.supervisor, vesp32.channel).
        self._proc = None  # subprocess.Popen of the current boot
        self._conn = None  # the current boot's channel socket
        self._conn_buf = b""
        self._ready = False
        self._booted_at = 0
        self._boot_cause = PWRON_RESET
        self._pending_boot = None  # (t_ns due, cause): deep sleep wake-up
        self._next_id = 1
        self._last_cmd = None
        self._listener = None
        self._sel = None
        self._io: threading.Thread | None = None
        self._running = False
        self._proc_lock = threading.RLock()
        self._send_lock = threading.Lock()
