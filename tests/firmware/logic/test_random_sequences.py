# Random action sequences against the App, checked by the shared invariants.
# This is the MicroPython twin of tests/firmware/test_properties.py (Hypothesis);
# it runs under both interpreters with a fixed seed so a failure reproduces.
import random

from motorguard import controller

from invariants import apply, check
from support import Rig, make_config

SEQUENCES = 1000
STEPS = 25
TEMPS = (20.0, 25.0, 33.0, 33.5, 34.0, 36.0, 59.0, 61.0, -25.0, "open", "short")
CURRENTS = (0.0, 0.5, 1.4, 1.6, 1.7, 2.5, 3.1, -2.0, "open", "short")
ACTIONS = (
    "press_start", "press_stop", "hold_stop", "release_stop", "glitch_stop", "temp", "current",
    "remote_start", "remote_stop", "remote_speed", "network_loss", "wait", "reboot",
)


def one_sequence(seed):
    random.seed(seed)
    remote = random.randint(0, 3) != 0
    cfg = make_config(control__remote_start_enabled=remote)
    rig = Rig(cfg=cfg, temp_c=25.0, current_a=0.3)
    temp, current = 25.0, 0.3
    for _ in range(STEPS):
        action = ACTIONS[random.randint(0, len(ACTIONS) - 1)]
        if action == "reboot":
            rig = None  # power cycle: the old App is gone before the new one boots
            rig = Rig(cfg=cfg, temp_c=temp, current_a=current)
            rig.run(1)
            assert rig.duty() == 0 and rig.state() != controller.RUNNING, "reboot must come up not running"
            continue
        value = None
        if action == "temp":
            temp = value = TEMPS[random.randint(0, len(TEMPS) - 1)]
        elif action == "current":
            current = value = CURRENTS[random.randint(0, len(CURRENTS) - 1)]
        elif action == "remote_speed":
            value = random.randint(1, 400)
        elif action == "wait":
            value = random.randint(1, 60)
        before = rig.state()
        cleared = rig.app.ctl.cleared()
        apply(rig, action, value)
        check(rig, before, action, cleared, remote)
    return rig.state()


def test_random_sequences_hold_every_interlock():
    reached = [0, 0, 0]
    for seed in range(SEQUENCES):
        reached[one_sequence(seed)] += 1
    # The run is only meaningful if it visits every state.
    assert reached[controller.RUNNING] and reached[controller.FAULT] and reached[controller.STOPPED], reached
