# The safety state machine on its own (runs under CPython and MicroPython).
from motorguard import config
from motorguard import controller

LIMITS = config.DEFAULTS["limits"]


def new(remote=True):
    ctl = controller.Controller(LIMITS, remote)
    ctl.update(250, 100)
    return ctl


def test_boots_stopped():
    ctl = controller.Controller(LIMITS)
    assert ctl.state == controller.STOPPED and ctl.state != controller.RUNNING


def test_unread_sensors_refuse_start():
    ctl = controller.Controller(LIMITS)
    assert ctl.start_button() == controller.EV_NONE
    assert ctl.last_refusal == controller.REFUSED_CONDITION


def test_start_and_stop():
    ctl = new()
    assert ctl.start_button() == controller.EV_STARTED and ctl.state == controller.RUNNING
    assert ctl.stop_button() == controller.EV_ESTOP and ctl.state != controller.RUNNING


def test_combined_threshold_trips_only_together():
    ctl = new()
    ctl.start_button()
    assert ctl.update(340, 1000) == controller.EV_NONE
    assert ctl.update(300, 1700) == controller.EV_NONE
    assert ctl.update(340, 1700) == controller.EV_FAULT
    assert ctl.state == controller.FAULT and ctl.reason == controller.R_COMBINED


def test_hard_limits_trip_alone():
    ctl = new()
    assert ctl.update(600, 0) == controller.EV_FAULT and ctl.reason == controller.R_OVERTEMP
    ctl = new()
    assert ctl.update(200, 3000) == controller.EV_FAULT and ctl.reason == controller.R_OVERCURRENT


def test_implausible_sensor_trips_even_when_stopped():
    ctl = new()
    assert ctl.update(None, 100) == controller.EV_FAULT and ctl.reason == controller.R_TEMP_SENSOR
    ctl = new()
    assert ctl.update(250, None) == controller.EV_FAULT and ctl.reason == controller.R_CURRENT_SENSOR


def test_fault_latches_and_refuses_start():
    ctl = new()
    ctl.start_button()
    ctl.update(350, 2000)
    ctl.update(250, 0)  # condition gone, still latched
    assert ctl.state == controller.FAULT
    assert ctl.start_button() == controller.EV_NONE and ctl.last_refusal == controller.REFUSED_LATCHED
    assert ctl.remote_start() == controller.EV_NONE and ctl.state == controller.FAULT


def test_reset_only_by_stop_button_after_clearing():
    ctl = new()
    ctl.update(350, 2000)
    ctl.update(335, 0)  # below 34 but inside the hysteresis band
    assert ctl.stop_button() == controller.EV_NONE and ctl.state == controller.FAULT
    assert ctl.last_refusal == controller.REFUSED_NOT_CLEARED
    assert ctl.remote_stop() == controller.EV_NONE and ctl.state == controller.FAULT
    ctl.update(320, 0)
    assert ctl.stop_button() == controller.EV_FAULT_CLEARED
    assert ctl.state == controller.STOPPED  # never straight to RUNNING


def test_remote_start_can_be_disabled():
    ctl = new(remote=False)
    assert ctl.remote_start() == controller.EV_NONE and ctl.last_refusal == controller.REFUSED_REMOTE_DISABLED
    assert ctl.state == controller.STOPPED


def test_remote_stop_stops():
    ctl = new()
    ctl.remote_start()
    assert ctl.remote_stop() == controller.EV_STOPPED and ctl.state == controller.STOPPED


def test_start_refused_with_condition_present():
    ctl = controller.Controller(LIMITS)
    ctl.temp, ctl.current = 700, 0
    assert ctl.start_button() == controller.EV_NONE and ctl.state == controller.STOPPED


def test_held_stop_blocks_every_start():
    ctl = new()
    ctl.stop_held = True
    assert ctl.start_button() == controller.EV_NONE and ctl.last_refusal == controller.REFUSED_STOP_HELD
    assert ctl.remote_start() == controller.EV_NONE and ctl.state == controller.STOPPED
