"""Stateful property test of the firmware's control logic (Hypothesis, CPython).

Random sequences of buttons, sensor values (including open and shorted
sensors), remote commands, reboots and network loss drive the real App on the
fake hardware; after every step the interlock rules in logic/invariants.py must
hold. The same invariants run under MicroPython in logic/test_random_sequences.py.
"""

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from invariants import apply, check
from motorguard import controller
from support import Rig, make_config

temps = st.one_of(
    st.floats(min_value=-30.0, max_value=130.0, allow_nan=False),
    st.sampled_from([33.0, 33.5, 34.0, 59.9, 60.0, "open", "short"]),
)
currents = st.one_of(
    st.floats(min_value=-1.5, max_value=4.0, allow_nan=False),
    st.sampled_from([1.49, 1.5, 1.7, 2.99, 3.0, "open", "short"]),
)


class FirmwareMachine(RuleBasedStateMachine):
    @initialize(remote=st.booleans(), temp=st.floats(15.0, 30.0), current=st.floats(0.0, 1.0))
    def boot(self, remote, temp, current):
        self.remote = remote
        self.cfg = make_config(control__remote_start_enabled=remote)
        self.temp, self.current = temp, current
        self.rig = Rig(cfg=self.cfg, temp_c=temp, current_a=current)
        self.rig.run(1)

    def step(self, action, value=None):
        before = self.rig.state()
        cleared = self.rig.app.ctl.cleared()
        apply(self.rig, action, value)
        check(self.rig, before, action, cleared, self.remote)

    @rule()
    def press_start(self):
        self.step("press_start")

    @rule()
    def press_stop(self):
        self.step("press_stop")

    @rule()
    def hold_stop(self):
        self.step("hold_stop")

    @rule()
    def release_stop(self):
        self.step("release_stop")

    @rule()
    def glitch_stop(self):
        self.step("glitch_stop")

    @rule(value=temps)
    def temperature(self, value):
        self.temp = value
        self.step("temp", value)

    @rule(value=currents)
    def current_draw(self, value):
        self.current = value
        self.step("current", value)

    @rule()
    def remote_start(self):
        self.step("remote_start")

    @rule()
    def remote_stop(self):
        self.step("remote_stop")

    @rule(speed=st.integers(1, 1000))
    def remote_speed(self, speed):
        self.step("remote_speed", speed)

    @rule()
    def network_loss(self):
        self.step("network_loss")

    @rule(ticks=st.integers(1, 400))
    def wait(self, ticks):
        self.step("wait", ticks)

    @rule()
    def reboot(self):
        self.rig = Rig(cfg=self.cfg, temp_c=self.temp, current_a=self.current)
        self.rig.run(1)
        assert self.rig.duty() == 0
        assert self.rig.state() in (controller.STOPPED, controller.FAULT)  # FAULT only if a condition is present at boot

    @invariant()
    def motor_only_moves_when_running(self):
        if hasattr(self, "rig") and self.rig.duty() != 0:
            assert self.rig.state() == controller.RUNNING


FirmwareMachine.TestCase.settings = settings(
    max_examples=int(__import__("os").environ.get("MG_PROP_EXAMPLES", "2000")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFirmwareInterlocks = FirmwareMachine.TestCase
