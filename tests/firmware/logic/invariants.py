# The interlock rules as checkable invariants, shared by the Hypothesis state
# machine (CPython) and the random-sequence run under MicroPython.
#
# A "step" is one action applied to a Rig followed by at least one control tick.
# check() compares the state before and after the step.

from motorguard import controller
from motorguard import commands as cmds

START_ACTIONS = ("press_start", "remote_start")
STOP_PRESSES = ("press_stop", "hold_stop")


class Violation(AssertionError):
    pass


def fail(msg, before, after, action):
    raise Violation("%s (action=%s, %s -> %s)" % (msg, action, controller.STATE_NAMES[before], controller.STATE_NAMES[after]))


def check(rig, before, action, cleared_before, remote_enabled):
    app = rig.app
    ctl = app.ctl
    after = ctl.state
    duty = rig.duty()
    # The motor only ever moves in RUNNING.
    if duty != 0 and after != controller.RUNNING:
        fail("PWM pulses outside RUNNING", before, after, action)
    # RUNNING never coexists with a fault condition in the latest readings.
    if after == controller.RUNNING and ctl.condition() != controller.R_NONE:
        fail("RUNNING with a fault condition present", before, after, action)
    # The interlock trips in every state.
    if ctl.condition() != controller.R_NONE and after != controller.FAULT:
        fail("fault condition present but not in FAULT", before, after, action)
    # LEDs tell the truth.
    if rig.led("led_red") != (1 if after == controller.FAULT else 0):
        fail("red LED disagrees with FAULT", before, after, action)
    if rig.led("led_green") != (1 if after == controller.RUNNING else 0):
        fail("green LED disagrees with RUNNING", before, after, action)
    # Never an automatic start: only an accepted start request enters RUNNING, and only from STOPPED.
    if after == controller.RUNNING and before != controller.RUNNING:
        if action not in START_ACTIONS:
            fail("entered RUNNING without a start request", before, after, action)
        if action == "remote_start" and not remote_enabled:
            fail("remote start obeyed while disabled", before, after, action)
        if before != controller.STOPPED:
            fail("entered RUNNING from a state other than STOPPED", before, after, action)
    # A latched fault leaves only through the stop button, only once cleared, and only to STOPPED.
    if before == controller.FAULT and after != controller.FAULT:
        if action not in STOP_PRESSES:
            fail("FAULT left without the stop button", before, after, action)
        if not cleared_before:
            fail("FAULT reset while the condition had not cleared", before, after, action)
        if after != controller.STOPPED:
            fail("FAULT reset went somewhere other than STOPPED", before, after, action)
    # A stop pin held low means the motor is not running.
    if rig.pin("stop_button").level == 0 and after == controller.RUNNING:
        fail("RUNNING while the stop button is held", before, after, action)


def apply(rig, action, value=None):
    """Apply one named action; returns after the ticks it needs."""
    if action == "press_start":
        rig.press("start_button", 8)
    elif action == "press_stop":
        rig.press("stop_button", 8)
    elif action == "hold_stop":
        rig.button("stop_button", True)
        rig.run(10)  # long enough to debounce: a held stop is a press
    elif action == "release_stop":
        rig.button("stop_button", False)
        rig.run(10)
    elif action == "glitch_stop":
        rig.button("stop_button", True)
        rig.run(1)
        rig.button("stop_button", False)
        rig.run(1)
    elif action == "temp":
        rig.set_temp(value)
        rig.run(1)
    elif action == "current":
        rig.set_current(value)
        rig.run(1)
    elif action == "remote_start":
        rig.remote(cmds.CMD_START)
    elif action == "remote_stop":
        rig.remote(cmds.CMD_STOP)
    elif action == "remote_speed":
        rig.remote(cmds.CMD_SPEED, value)
    elif action == "network_loss":
        rig.app.online = not rig.app.online  # the control task must not care
        rig.run(3)
    elif action == "wait":
        rig.run(value)
    else:
        raise ValueError(action)
