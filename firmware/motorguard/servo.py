# Servo sweep: a position that moves back and forth between two limits at a set
# speed, and the pulse width that commands it. Pure arithmetic on integers
# (milli-degrees, nanoseconds) so each control tick allocates nothing.
#
# "Integers" means small ints on the chip: the ESP32 keeps ints up to 2**30 in the object
# itself and allocates a big int (~96 bytes on a 32-bit port) for anything larger. So no
# product here may pass 2**30: the pulse span is taken in microseconds (1,000 us x 180,000
# mdeg = 1.8e8), never in nanoseconds (1e6 ns x 180,000 = 1.8e11). tests/vesp32/test_heap32.py
# runs the tick on MicroPython's 32-bit port to hold it to zero bytes.


class Sweep:
    def __init__(self, cfg):
        self.min_ns = cfg["min_pulse_ns"]
        # Whole microseconds (config.check insists), so the product below stays a small int.
        self.span_us = (cfg["max_pulse_ns"] - self.min_ns) // 1000
        self.lo = cfg["sweep_min_deg"] * 1000  # milli-degrees
        self.hi = cfg["sweep_max_deg"] * 1000
        self.max_speed = cfg["max_speed_deg_s"]
        self.speed = cfg["speed_deg_s"]  # degrees per second
        self.pos = self.lo
        self.direction = 1

    def set_speed(self, deg_s):
        """Sets the speed when 1 <= deg_s <= max_speed_deg_s; returns whether it did.
        Never clamps: a value out of range is refused, so the sender learns of it."""
        if type(deg_s) is not int or not 1 <= deg_s <= self.max_speed:
            return False
        self.speed = deg_s
        return True

    def step(self, dt_ms):
        """Advance the sweep by dt_ms and return the pulse width in ns for the new position."""
        pos = self.pos + self.direction * self.speed * dt_ms  # deg/s * ms = milli-degrees
        if pos >= self.hi:
            pos = self.hi
            self.direction = -1
        elif pos <= self.lo:
            pos = self.lo
            self.direction = 1
        self.pos = pos
        return self.pulse_ns()

    def pulse_ns(self):
        # span_us * 1000 ns * pos / 180,000 mdeg, reduced so the product stays under 2**30.
        return self.min_ns + self.span_us * self.pos // 180

    def decidegrees(self):
        return self.pos // 100
