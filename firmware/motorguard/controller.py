# The safety state machine: STOPPED, RUNNING, FAULT.
#
# Pure logic with no hardware and no I/O, so it is property-tested on the host
# under CPython and MicroPython. Every method returns an event code (or 0) for
# the caller to publish; the caller drives the PWM only while state is RUNNING.
#
# Rules (docs/architecture.md):
# - Boot is STOPPED. Nothing ever moves the motor except an accepted start.
# - FAULT trips on: temperature >= combined_temp AND current >= combined_current,
#   either above its hard limit alone, or any implausible sensor (None).
#   FAULT latches: start is refused; only the local stop button resets it, and
#   only once the condition has cleared (with hysteresis); reset goes to STOPPED.
# - Stop (button or remote) always turns the motor off at once.
# - Remote start obeys every interlock and can be disabled.

from motorguard.base import const


STOPPED = const(0)
RUNNING = const(1)
FAULT = const(2)
STATE_NAMES = ("STOPPED", "RUNNING", "FAULT")

# Events (published on devices/<thing>/events).
EV_NONE = const(0)
EV_STARTED = const(1)
EV_STOPPED = const(2)
EV_ESTOP = const(3)
EV_FAULT = const(4)
EV_FAULT_CLEARED = const(5)
EV_BOOT = const(6)
EV_BUTTON_STUCK = const(7)
EV_BACKLOG_DROPPED = const(8)  # the flash backlog was full: its oldest samples went (detail: how many)
EVENT_NAMES = ("NONE", "STARTED", "STOPPED", "ESTOP", "FAULT", "FAULT_CLEARED", "BOOT", "BUTTON_STUCK", "BACKLOG_DROPPED")

# Fault reasons.
R_NONE = const(0)
R_TEMP_SENSOR = const(1)
R_CURRENT_SENSOR = const(2)
R_OVERTEMP = const(3)
R_OVERCURRENT = const(4)
R_COMBINED = const(5)
REASON_NAMES = (
    "none",
    "temp_sensor_implausible",
    "current_sensor_implausible",
    "overtemp",
    "overcurrent",
    "overtemp_overcurrent",
    "watchdog",  # in the event schema's reasons, never set here: a watchdog reset shows as BOOT's cause
)

# Why a start was refused (for command acknowledgements and the console).
OK = const(0)
REFUSED_LATCHED = const(1)
REFUSED_CONDITION = const(2)
REFUSED_REMOTE_DISABLED = const(3)
REFUSED_RUNNING = const(4)
REFUSED_NOT_CLEARED = const(5)
REFUSED_STOP_HELD = const(6)
REFUSED_NETWORK_BUSY = const(7)
REFUSED_STOPPED_SINCE = const(8)
REFUSED_SPEED = const(9)
REFUSAL_NAMES = (
    "ok",
    "fault_latched",
    "fault_condition_present",
    "remote_start_disabled",
    "already_running",
    "fault_condition_not_cleared",
    "stop_button_held",
    "network_connecting",
    "stopped_since_issued",
    "speed_above_this_device_max",
)


def tenths_c(celsius):
    """Degrees C -> tenths of a degree (int)."""
    return int(round(celsius * 10))


def milliamps(amps):
    """Amperes -> milliamps (int)."""
    return int(round(amps * 1000))


class Controller:
    def __init__(self, limits, remote_start_enabled=False):
        # Integer units throughout (tenths of a degree C, milliamps): no float boxing per tick.
        self.combined_t = tenths_c(limits["combined_temp_c"])
        self.combined_i = milliamps(limits["combined_current_a"])
        self.hard_t = tenths_c(limits["hard_temp_c"])
        self.hard_i = milliamps(limits["hard_current_a"])
        self.clear_t = tenths_c(limits["combined_temp_c"] - limits["clear_hysteresis_c"])
        self.clear_i = milliamps(limits["combined_current_a"] - limits["clear_hysteresis_a"])
        self.remote_start_enabled = remote_start_enabled
        self.state = STOPPED
        self.reason = R_NONE
        self.last_refusal = OK
        # Latest readings in 0.1 C and mA; None = not read yet or implausible (both mean unsafe).
        self.temp = None
        self.current = None
        # Set by the owner every tick: a held emergency stop blocks every start.
        self.stop_held = False
        # Set by the network task around steps that block the whole VM (DNS, NTP, the
        # TLS handshake): the motor must not be running through them, so no start.
        self.net_busy = False

    def condition(self):
        """The fault reason present in the latest readings, or R_NONE."""
        t = self.temp
        i = self.current
        if t is None:
            return R_TEMP_SENSOR
        if i is None:
            return R_CURRENT_SENSOR
        if t >= self.hard_t:
            return R_OVERTEMP
        if i >= self.hard_i:
            return R_OVERCURRENT
        if t >= self.combined_t and i >= self.combined_i:
            return R_COMBINED
        return R_NONE

    def cleared(self):
        """True when a latched fault may be reset: plausible sensors, both values back below
        their combined thresholds by the hysteresis (which also clears every hard limit)."""
        t = self.temp
        i = self.current
        return t is not None and i is not None and t < self.clear_t and i < self.clear_i

    def update(self, temp, current):
        """Feed one sample (0.1 C, mA; None = implausible). Trips FAULT from any state."""
        self.temp = temp
        self.current = current
        if self.state == FAULT:
            return EV_NONE
        reason = self.condition()
        if reason:
            self.state = FAULT
            self.reason = reason
            return EV_FAULT
        return EV_NONE

    def _start(self):
        if self.state == RUNNING:
            self.last_refusal = REFUSED_RUNNING
            return EV_NONE
        if self.state == FAULT:
            self.last_refusal = REFUSED_LATCHED
            return EV_NONE
        if self.stop_held:
            self.last_refusal = REFUSED_STOP_HELD
            return EV_NONE
        if self.net_busy:
            self.last_refusal = REFUSED_NETWORK_BUSY
            return EV_NONE
        if self.condition():
            # A start against a present fault condition trips the interlock rather than running.
            self.last_refusal = REFUSED_CONDITION
            return EV_NONE
        self.state = RUNNING
        self.last_refusal = OK
        return EV_STARTED

    def start_button(self):
        return self._start()

    def remote_start(self):
        if not self.remote_start_enabled:
            self.last_refusal = REFUSED_REMOTE_DISABLED
            return EV_NONE
        return self._start()

    def stop_button(self):
        """Emergency stop: motor off from any state; the only way out of a cleared FAULT."""
        self.last_refusal = OK
        if self.state == RUNNING:
            self.state = STOPPED
            return EV_ESTOP
        if self.state == FAULT:
            if self.cleared():
                self.state = STOPPED
                self.reason = R_NONE
                return EV_FAULT_CLEARED
            self.last_refusal = REFUSED_NOT_CLEARED
        return EV_NONE

    def remote_stop(self):
        """Remote stop: motor off; never resets a latched fault (that needs a person at the machine)."""
        if self.state == RUNNING:
            self.state = STOPPED
            return EV_STOPPED
        return EV_NONE
