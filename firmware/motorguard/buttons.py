# Debounced active-low push buttons (pull-up, pressed = 0).
#
# Polled from the control tick: a press counts once the pin has read low for
# debounce_ms without a bounce. No allocation per call.


class Button:
    def __init__(self, pin, debounce_ms):
        self.pin = pin
        self.debounce_ms = debounce_ms
        self.stable = 1  # released
        self.candidate = 1
        self.since = 0

    def poll(self, dt_ms):
        """Return True exactly once per debounced press."""
        raw = self.pin.value()
        if raw != self.candidate:
            self.candidate = raw
            self.since = 0
            return False
        if raw == self.stable:
            return False
        self.since += dt_ms
        if self.since < self.debounce_ms:
            return False
        self.stable = raw
        return raw == 0
