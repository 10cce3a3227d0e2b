# Virtual ESP32 plant: what the board's pins are wired to. The servo follows the
# PWM pulse width at a slew rate; the motor current is an idle draw plus a part
# proportional to the mechanical load (half of it while holding still), zero
# without pulses; the motor temperature follows dT/dt = a*I^2 - (T - ambient)/tau.
# The NTC divider and the Hall current sensor turn those into ADC microvolts.
#
# Integer units: micro-degrees C, milliamps, milli-degrees of servo angle,
# microseconds. Evaluated lazily from the elapsed time at each read, so ADC reads
# and PWM changes (the firmware's hot path) allocate nothing.

import time
import math

_us = time.ticks_us
_diff = time.ticks_diff

RAIL_UV = 3300000  # the 3.3 V rail (what the ADC makes of it: _vadc)


class Plant:
    def __init__(self):
        self.t = _us()
        self.temp = 25000000  # uC, thermal state
        self.ambient = 25000000
        self.load = 1000  # permille of the nominal mechanical load
        self.forced_ma = None
        self.forced_temp = None
        self.temp_fault = 0  # 0 ok, 1 open, 2 short
        self.cur_fault = 0
        self.pos = 90000  # mdeg
        self.target = 90000
        self.pulsed = False
        self.still = 10000000  # us since the servo last moved
        self.ma = 0
        # Model constants (the harness may override them in init).
        self.idle_ma = 150
        self.k_ma = 600
        self.heat = 110000  # a in uC/s per (mA^2) * 1e6  (a = 0.11 C/(A^2 s))
        self.tau_ms = 60000
        self.slew = 600000  # mdeg/s (60 deg per 0.1 s)
        self.scale = 1000  # time_scale for the thermal model, permille
        # Sensors (from the merged config, sent by the harness).
        self.ntc = None  # (supply_uv, fixed_ohm, r0_ohm, t0_kelvin, beta)
        self.zero_uv = 1666667
        self.uv_per_a = 123333
        self._ntc_temp = None
        self._ntc_uv = 0
        self.noise = 0
        self.seed = 1

    def pulse(self, ns, now):
        self.advance(now)
        if 400000 <= ns <= 2600000:  # what a hobby servo accepts as a command pulse
            self.pulsed = True
            a = (ns - 1000000) * 180 // 1000  # 1.0-2.0 ms = 0-180 deg, in mdeg
            self.target = 0 if a < 0 else (180000 if a > 180000 else a)
        else:
            self.pulsed = False  # no (valid) pulses: the servo holds, draws nothing

    def advance(self, now):
        dt = _diff(now, self.t)
        if dt <= 0:
            return
        self.t = now
        while dt > 0:
            step = 10000 if dt > 10000 else dt
            dt -= step
            if self.pulsed and self.pos != self.target:
                move = self.slew * step // 1000000
                d = self.target - self.pos
                if d > move:
                    self.pos += move
                elif d < -move:
                    self.pos -= move
                else:
                    self.pos = self.target
                self.still = 0
            elif self.still < 10000000:
                self.still += step
            if self.forced_ma is not None:
                ma = self.forced_ma
            elif not self.pulsed:
                ma = 0
            else:
                ma = self.idle_ma + self.k_ma * self.load * (1000 if self.still < 100000 else 500) // 1000000
            self.ma = ma
            if self.forced_temp is not None:
                self.temp = self.forced_temp
            else:
                sdt = step * self.scale // 1000
                heat = ma * ma * self.heat // 1000000
                cool = (self.temp - self.ambient) * 1000 // self.tau_ms
                self.temp += (heat - cool) * sdt // 1000000

    def _noise(self, uv):
        if self.noise:
            self.seed = (self.seed * 1103515245 + 12345) & 0x3FFFFFFF
            uv += self.seed % (2 * self.noise + 1) - self.noise
        return uv

    def temp_uv(self):
        if self.temp_fault == 1:
            return RAIL_UV  # NTC open: the node floats to the supply through the fixed resistor
        if self.temp_fault == 2 or self.ntc is None:
            return 0  # NTC shorted to ground
        t = self.temp
        c = self._ntc_temp
        if c is None or t - c >= 5000 or c - t >= 5000:  # recompute every 0.005 C
            supply, fixed, r0, t0k, beta = self.ntc
            r = r0 * math.exp(beta * (1.0 / (t / 1000000.0 + 273.15) - 1.0 / t0k))
            self._ntc_uv = int(supply * r / (fixed + r))
            self._ntc_temp = t
        return self._noise(self._ntc_uv)

    def cur_uv(self):
        if self.cur_fault == 1:
            return 0  # sensor output open: pulled to ground by the divider
        if self.cur_fault == 2:
            return RAIL_UV  # shorted to the sensor supply
        return self._noise(self.zero_uv + self.uv_per_a * self.ma // 1000)


plant = Plant()

_FAULTS = {"ok": 0, "open": 1, "short": 2}


def set_sensors(cfg):
    """The sensor wiring from the merged config ("ntc", "current") the harness sent."""
    ntc = cfg.get("ntc")
    if ntc:
        plant.ntc = (
            float(ntc["supply_uv"]),
            float(ntc["fixed_ohm"]),
            float(ntc["r0_ohm"]),
            float(ntc["t0_c"]) + 273.15,
            float(ntc["beta"]),
        )
    cur = cfg.get("current")
    if cur:
        plant.zero_uv = int(cur["zero_uv"])
        plant.uv_per_a = int(cur["uv_per_a"])


def plant_set(key, v):
    """One harness plant setting (a key of the harness's PLANT_DEFAULTS, in its units)."""
    pl = plant
    pl.advance(_us())
    if key == "load":
        pl.load = int(v * 1000)
    elif key == "amps":
        pl.forced_ma = None if v is None else int(v * 1000)
    elif key == "temp":
        pl.forced_temp = None if v is None else int(v * 1000000)
    elif key == "temp_c":  # the thermal state itself (used to carry it across reboots)
        pl.temp = int(v * 1000000)
    elif key == "ambient":
        pl.ambient = int(v * 1000000)
    elif key == "pos_deg":
        pl.pos = pl.target = int(v * 1000)
    elif key == "temp_sensor":
        pl.temp_fault = _FAULTS[v]
    elif key == "current_sensor":
        pl.cur_fault = _FAULTS[v]
    elif key == "time_scale":
        pl.scale = int(v * 1000)
    elif key == "noise_uv":
        pl.noise = int(v)
    elif key == "seed":
        pl.seed = int(v) & 0x3FFFFFFF
    elif key == "idle_a":
        pl.idle_ma = int(v * 1000)
    elif key == "k_a":
        pl.k_ma = int(v * 1000)
    elif key == "heat_c_per_a2s":
        pl.heat = int(v * 1000000)
    elif key == "tau_s":
        pl.tau_ms = int(v * 1000)
    elif key == "slew_deg_s":
        pl.slew = int(v * 1000)
    else:
        raise ValueError("unknown plant key " + key)
