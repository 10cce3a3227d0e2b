"""The board process's life: power on and off, resets, the watchdog, deep sleep.

One chip is one ``micropython`` process at a time. A reset of any kind kills it
(its outputs go dead at once, as on the chip) and boots a fresh one with the reset
cause in its environment; the watchdog timer runs here, in the harness, because a
stalled firmware cannot be trusted to notice its own stall.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time

import contract
from vesp32.build import flash_image
from vesp32.serialport import SerialPort
from vesp32.settings import BOOT_SCRIPT, carry_plant

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
CAUSE_NAMES = contract.RESET_CAUSES  # machine.reset_cause() -> name, as the firmware reports it


def _preexec():
    # Die with the harness (Linux): no orphaned virtual boards after a crashed test run.
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class ProcessSupervision:
    """Lifecycle part of VirtualESP32 (state set up in VirtualESP32.__init__)."""

    @property
    def command(self) -> list[str]:
        """The device's command line."""
        total = self.heap + self.heap_reserve if self.heap_mode == "firmware" else self.heap
        size = "%dK" % (total // 1024) if total % 1024 == 0 else str(total)
        return [self.micropython, "-X", "heapsize=" + size, str(BOOT_SCRIPT)]

    def _prepare_firmware(self):
        """Compile the modules as for flashing (main.py and boot.py stay source)."""
        self.run_dir, self._build_tmp = flash_image(self.firmware_dir, self.compile)

    def start(self, wait=True):
        """Power on. With wait, returns once the board is up (simulation ready, main.py starting)."""
        if self._running:
            return self
        self._prepare_firmware()
        if self._want_serial and self.serial is None:
            self.serial = SerialPort(self._stdin_bytes, self._ctrl_c, self._serial_baud)
        if self.proxy is not None:
            self.proxy.start()
            if getattr(self, "_proxy_host", None):
                host, port = self._proxy_host
                self._hosts = [[host, port, "127.0.0.1", self.proxy.port]]
        self._open_channel()
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
        self._close_channel()
        if self.serial is not None:
            self.serial.close()
            self.serial = None
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
        """The EN (reset) button: it cuts the chip's power internally, so the next boot reports
        PWRON_RESET (the ESP32 never returns ESP_RST_EXT; ports/esp32/modmachine.c)."""
        self._restart(PWRON_RESET, "reset button")
        if wait:
            self.wait_ready(self.boot_timeout)

    @property
    def pid(self):
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _env(self, cause, port, repl=None):
        env = dict(os.environ)
        env.pop("VESP32_REPL", None)
        if repl == "raw":
            env["VESP32_REPL"] = "raw"
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

    def _spawn(self, cause, keep_wdt=False, repl=None):
        with self._proc_lock:
            t = time.time_ns()
            with self._lock:
                self._ready = False
                self.halted = None
                self._boot_cause = cause
                self._booted_at = t
                self.boots.append((t, cause))
                if not keep_wdt:
                    # Any reset but a soft one stops the task watchdog; a soft reset leaves it
                    # running and unfed (ports/esp32/machine_wdt.c: it cannot be stopped).
                    self.wdt_timeout_ms = 0
                self._cond.notify_all()
            self._proc = subprocess.Popen(
                self.command,
                cwd=str(self.device_dir),
                env=self._env(cause, self._listener.getsockname()[1], repl),
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

    def _stdin_bytes(self, data: bytes):
        """Bytes arriving on the board's UART (the serial port)."""
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (OSError, ValueError):
                pass  # the board is resetting: bytes sent now are lost, as on the chip

    def _ctrl_c(self):
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def _restart(self, cause, why, delay_ms=0, keep_wdt=False, repl=None):
        """The chip resets: outputs go dead at once, the board boots again with `cause`. A soft
        reset (keep_wdt) leaves the watchdog running; repl="raw" comes up in the raw REPL."""
        with self._proc_lock:
            if not self._running:
                return
            self._kill()
            t = time.time_ns()
            with self._lock:
                self.resets.append((t, cause, why))
                self.state = None  # unknown until the firmware says again
                self._chip_reset_outputs(t)
                carry_plant(self._plant, self.plant_state, t)
                self._cond.notify_all()
            if delay_ms:
                self._pending_boot = (t + delay_ms * 1_000_000, cause)
            else:
                self._spawn(cause, keep_wdt, repl)

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

    def _supervise(self):
        """Run from the I/O loop: a deep-sleep wake-up that is due, the watchdog, and an
        interpreter that ended on its own."""
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
