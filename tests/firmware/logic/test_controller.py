# The safety state machine on its own (runs under CPython and MicroPython).
from motorguard import config as cfgmod
from motorguard import controller as C

LIMITS = cfgmod.DEFAULTS["limits"]


def new(remote=True):
    ctl = C.Controller(LIMITS, remote)
    ctl.update(250, 100)
    return ctl


def test_boots_stopped():
    ctl = C.Controller(LIMITS)
    assert ctl.state == C.STOPPED and not ctl.motor_on()


def test_unread_sensors_refuse_start():
    ctl = C.Controller(LIMITS)
    assert ctl.start_button() == C.EV_NONE
    assert ctl.last_refusal == C.REFUSED_CONDITION


def test_start_and_stop():
    ctl = new()
    assert ctl.start_button() == C.EV_STARTED and ctl.motor_on()
    assert ctl.stop_button() == C.EV_ESTOP and not ctl.motor_on()


def test_combined_threshold_trips_only_together():
    ctl = new()
    ctl.start_button()
    assert ctl.update(340, 1000) == C.EV_NONE
    assert ctl.update(300, 1700) == C.EV_NONE
    assert ctl.update(340, 1700) == C.EV_FAULT
    assert ctl.state == C.FAULT and ctl.reason == C.R_COMBINED


def test_hard_limits_trip_alone():
    ctl = new()
    assert ctl.update(600, 0) == C.EV_FAULT and ctl.reason == C.R_OVERTEMP
    ctl = new()
    assert ctl.update(200, 3000) == C.EV_FAULT and ctl.reason == C.R_OVERCURRENT


def test_implausible_sensor_trips_even_when_stopped():
    ctl = new()
    assert ctl.update(None, 100) == C.EV_FAULT and ctl.reason == C.R_TEMP_SENSOR
    ctl = new()
    assert ctl.update(250, None) == C.EV_FAULT and ctl.reason == C.R_CURRENT_SENSOR


def test_fault_latches_and_refuses_start():
    ctl = new()
    ctl.start_button()
    ctl.update(350, 2000)
    ctl.update(250, 0)  # condition gone, still latched
    assert ctl.state == C.FAULT
    assert ctl.start_button() == C.EV_NONE and ctl.last_refusal == C.REFUSED_LATCHED
    assert ctl.remote_start() == C.EV_NONE and ctl.state == C.FAULT


def test_reset_only_by_stop_button_after_clearing():
    ctl = new()
    ctl.update(350, 2000)
    ctl.update(335, 0)  # below 34 but inside the hysteresis band
    assert ctl.stop_button() == C.EV_NONE and ctl.state == C.FAULT
    assert ctl.last_refusal == C.REFUSED_NOT_CLEARED
    assert ctl.remote_stop() == C.EV_NONE and ctl.state == C.FAULT
    ctl.update(320, 0)
    assert ctl.stop_button() == C.EV_FAULT_CLEARED
    assert ctl.state == C.STOPPED  # never straight to RUNNING


def test_remote_start_can_be_disabled():
    ctl = new(remote=False)
    assert ctl.remote_start() == C.EV_NONE and ctl.last_refusal == C.REFUSED_REMOTE_DISABLED
    assert ctl.state == C.STOPPED


def test_remote_stop_stops():
    ctl = new()
    ctl.remote_start()
    assert ctl.remote_stop() == C.EV_STOPPED and ctl.state == C.STOPPED


def test_start_refused_with_condition_present():
    ctl = C.Controller(LIMITS)
    ctl.temp, ctl.current = 700, 0
    assert ctl.start_button() == C.EV_NONE and ctl.state == C.STOPPED


def test_held_stop_blocks_every_start():
    ctl = new()
    ctl.stop_held = True
    assert ctl.start_button() == C.EV_NONE and ctl.last_refusal == C.REFUSED_STOP_HELD
    assert ctl.remote_start() == C.EV_NONE and ctl.state == C.STOPPED
