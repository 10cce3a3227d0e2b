"""What a test does to the virtual board: buttons and input pins, the plant, the
sensors, the Wi-Fi link, the network path to the broker, the serial console.

Every input is a command on the control channel and returns the time it was sent
(time.time_ns()), the reference for latency measurements. Held inputs and plant
settings are also kept here, so that a reboot's init restores them: the world
outside the chip does not reset with it.
"""

from __future__ import annotations

from vesp32.settings import check_plant_keys

_SENSOR_KEYS = {"temp": "temp_sensor", "temperature": "temp_sensor", "ntc": "temp_sensor", "current": "current_sensor"}


class BoardControls:
    """Input part of VirtualESP32's public API (state set up in VirtualESP32.__init__)."""

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
        check_plant_keys(settings)
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
        key = _SENSOR_KEYS.get(name)
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

    def set_dns_delay(self, ms: int) -> int:
        """How long each name lookup blocks the board's whole VM (default 0). On a chip it is what
        lwIP takes: a DNS server that does not answer costs seconds, bounded by no caller's timeout."""
        self._dns_ms = int(ms)
        _, t = self._command({"cmd": "dns", "ms": self._dns_ms})
        return t

    def cut_power_in_flash_write(self, after_bytes: int) -> int:
        """The power goes once after_bytes more bytes reached a file: the write in progress is
        torn there and the board boots again (power-on reset). A harness input like the others."""
        _, t = self._command({"cmd": "flash", "cut_after": int(after_bytes)})
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
