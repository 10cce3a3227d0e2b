# Debounced active-low push buttons (pull-up, pressed = 0).
#
# Polled from the control tick: a press counts once the pin has read low for
# debounce_ms without a bounce. No allocation per call.
#
# A press counts only after the button was seen released: one that is already held
# at boot (a finger on it, a stuck contact, a short) never counts until it has been
# let go, so a held start button cannot start the motor after a power cycle. A
# button held for stuck_ms is reported once (stuck() returns True) until released.

_UNKNOWN = -1


class Button:
    def __init__(self, pin, debounce_ms, stuck_ms=0):
        self.pin = pin
        self.debounce_ms = debounce_ms
        self.stuck_ms = stuck_ms
        self.stable = _UNKNOWN  # not seen released yet: nothing counts
        self.candidate = _UNKNOWN
        self.since = 0
        self.held_ms = 0  # how long the raw level has been low
        self.reported = False  # the current hold was reported as stuck

    def poll(self, dt_ms):
        """Return True exactly once per debounced press that follows a release."""
        raw = self.pin.value()
        if raw:
            self.held_ms = 0
            self.reported = False
        elif self.held_ms <= self.stuck_ms:  # bounded: stays a small int however long it is held
            self.held_ms += dt_ms
        if raw != self.candidate:
            self.candidate = raw
            self.since = 0
            return False
        if raw == self.stable:
            return False
        self.since += dt_ms
        if self.since < self.debounce_ms:
            return False
        was = self.stable
        self.stable = raw
        return raw == 0 and was == 1

    def stuck(self):
        """True once per hold that lasts stuck_ms or longer (0 = never)."""
        if self.stuck_ms and not self.reported and self.held_ms >= self.stuck_ms:
            self.reported = True
            return True
        return False
