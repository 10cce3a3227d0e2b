# Sensor conversions: calibrated ADC microvolts -> engineering units in
# integers (tenths of a degree Celsius, milliamps), with a plausibility check
# that turns open or shorted wiring into None, which the controller treats as
# a fault (fail safe).
#
# Why integers: on the ESP32 every float is a heap object, so float maths in a
# 5 ms control tick would feed the garbage collector ~200 times a second. The
# NTC curve is therefore precomputed once into a table of microvolts per whole
# degree and interpolated with small-int arithmetic: the tick allocates nothing.

import math
from array import array

_KELVIN = 273.15


class NTC:
    """10k NTC to ground, fixed resistor from the supply: V = Vs * Rntc / (Rfix + Rntc)."""

    def __init__(self, cfg):
        self.supply = cfg["supply_uv"]
        self.fixed = cfg["fixed_ohm"]
        self.r0 = cfg["r0_ohm"]
        self.t0_k = cfg["t0_c"] + _KELVIN
        self.beta = cfg["beta"]
        self.min_uv = cfg["min_uv"]
        self.max_uv = cfg["max_uv"]
        self.lo_c = int(math.ceil(cfg["min_c"]))
        hi_c = int(math.floor(cfg["max_c"]))
        # table[n] = microvolts at (lo_c + n) degrees; falls as temperature rises.
        self.table = array("i", (int(self.microvolts(c)) for c in range(self.lo_c, hi_c + 1)))

    def microvolts(self, celsius):
        """Exact Beta-model voltage for a temperature (used for the table, tests and the plant)."""
        r = self.r0 * math.exp(self.beta * (1.0 / (celsius + _KELVIN) - 1.0 / self.t0_k))
        return self.supply * r / (self.fixed + r)

    def decicelsius(self, uv):
        """Tenths of a degree from microvolts, or None when open, shorted or off the table."""
        # Near 0 V the NTC is shorted; near the rail it is open (or unplugged).
        if uv < self.min_uv or uv > self.max_uv:
            return None
        table = self.table
        lo = 0
        hi = len(table) - 1
        if uv > table[0] or uv < table[hi]:
            return None  # colder or hotter than the plausible range
        while hi - lo > 1:  # binary search in a falling table
            mid = (lo + hi) >> 1
            if table[mid] >= uv:
                lo = mid
            else:
                hi = mid
        span = table[lo] - table[hi]
        frac = (table[lo] - uv) * 10 // span if span else 0
        return (self.lo_c + lo) * 10 + frac


class CurrentSensor:
    """ACS712-style Hall sensor: V = zero + sensitivity * amps (after the divider)."""

    def __init__(self, cfg):
        self.zero = cfg["zero_uv"]
        self.per_a = cfg["uv_per_a"]
        self.per_10ma = cfg["uv_per_a"] // 100  # keeps products inside the ESP32's small ints
        self.min_uv = cfg["min_uv"]
        self.max_uv = cfg["max_uv"]
        self.min_ma = int(cfg["min_a"] * 1000)
        self.max_ma = int(cfg["max_a"] * 1000)

    def milliamps(self, uv):
        # A Hall sensor never sits at a rail in normal use: rail = broken wire or dead supply.
        if uv < self.min_uv or uv > self.max_uv:
            return None
        ma = (uv - self.zero) * 10 // self.per_10ma
        if ma < self.min_ma or ma > self.max_ma:
            return None
        return ma

    def microvolts(self, amps):
        return self.zero + self.per_a * amps
