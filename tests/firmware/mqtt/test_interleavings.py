"""A stateful property test of the whole integration: the shipped firmware on the virtual ESP32,
a real Mosquitto with mTLS, and a seeded random interleaving of buttons, remote commands (fresh,
replayed, stale, junk, floods), network cuts, overloads and power cycles.

The invariants are judged only from what a person sees: PWM duty, LEDs and the state lines.

    MG_INTERLEAVING_STEPS=2000 MG_INTERLEAVING_SEED=7 pytest tests/firmware/mqtt/test_interleavings.py

(make soak-firmware runs a long one); make test runs 80 steps with a fixed seed.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid

import pytest

from tests.firmware.mqtt.on_broker import boards, past_boot
from vesp32.harness import VirtualESP32

STEPS = int(os.environ.get("MG_INTERLEAVING_STEPS", "80"))
SEED = int(os.environ.get("MG_INTERLEAVING_SEED", "12"))
STARTS = {"press_start", "remote_start"}  # the only actions that may start the motor
WEIGHTS = {
    "press_start": 6, "press_stop": 4, "remote_start": 6, "remote_stop": 3, "replay": 3, "stale": 2,
    "junk": 2, "flood": 1, "bad_speed": 2, "speed": 2, "net_drop": 1, "overload": 2, "clear_fault": 2,
    "reboot": 1, "wait": 2,
}


class World:
    def __init__(self, vm: VirtualESP32, cloud, rng: random.Random):
        self.vm, self.cloud, self.rng = vm, cloud, rng
        self.sent: list[bytes] = []  # every command payload sent, for replays
        self.overloaded = False

    def command(self, **body):
        body.setdefault("v", 2)
        body.setdefault("id", uuid.uuid4().hex[:12])
        body.setdefault("issued_at", int(time.time() * 1000))
        payload = json.dumps(body).encode()
        self.sent.append(payload)
        self.cloud.raw(self.vm.config["thing"], payload)

    def act(self, action):
        vm, rng = self.vm, self.rng
        if action == "press_start":
            vm.press("start")
        elif action == "press_stop":
            vm.press("stop")
        elif action == "remote_start":
            self.command(cmd="start")
        elif action == "remote_stop":
            self.command(cmd="stop")
        elif action == "replay" and self.sent:
            self.cloud.raw(vm.config["thing"], rng.choice(self.sent))
        elif action == "stale":
            self.command(cmd="start", issued_at=int(time.time() * 1000) - rng.choice((30_000, 600_000)))
        elif action == "junk":
            self.cloud.raw(vm.config["thing"], rng.choice((b"", b"{", b"[]", b"\xff", b'{"cmd":"start"}')))
        elif action == "flood":
            for _ in range(40):
                self.command(cmd="set_speed", speed=rng.randint(1, 180))
        elif action == "bad_speed":
            self.command(cmd="set_speed", speed=rng.choice((0, 181, 10_000, -1)))
        elif action == "speed":
            self.command(cmd="set_speed", speed=rng.randint(1, 180))
        elif action == "net_drop":
            vm.network("drop")
            time.sleep(rng.uniform(0.2, 1.5))
            vm.network("pass")
        elif action == "overload":
            vm.force_current(3.5)
            self.overloaded = True
        elif action == "clear_fault":
            vm.force_current(None)
            self.overloaded = False
            time.sleep(0.1)
            vm.press("stop")
        elif action == "reboot":
            vm.reboot()
        elif action == "wait":
            time.sleep(rng.uniform(0.1, 1.0))


def online(vm: VirtualESP32) -> bool:
    """Whether the board's last word about its session, this boot, was that it is online."""
    for text in reversed(vm.text):
        if text.startswith("MG NET online"):
            return True
        if text.startswith("MG NET offline") or text.startswith("MG BOOT"):
            return False
    return False


def settled(vm: VirtualESP32, timeout=1.5):
    """What a person sees once the board has caught up: PWM, LEDs and state agree."""
    def agree(v):
        running = v.state == "RUNNING"
        return (v.pwm_duty > 0) == running and v.leds["green"] == running and v.leds["red"] == (v.state == "FAULT")

    vm.wait_until(agree, timeout, "PWM, LEDs and state to agree (state %s, pwm %s, leds %s)"
                  % (vm.state, vm.pwm_duty, vm.leds))


@pytest.fixture
def board(tmp_path, broker):
    with boards(tmp_path, broker, "mix-1", online=True, control={"remote_start_enabled": True}) as make:
        yield make()


def test_no_interleaving_starts_the_motor_by_itself_or_outlives_a_stop(board, cloud, broker):
    vm = board
    past_boot(vm)
    rng = random.Random(SEED)
    world = World(vm, cloud, rng)
    actions, weights = zip(*WEIGHTS.items())
    seen = {"RUNNING": 0, "FAULT": 0}
    for step in range(STEPS):
        action = rng.choices(actions, weights)[0]
        t0 = time.time_ns()
        was_online = online(vm)
        world.act(action)
        time.sleep(0.15)
        settled(vm)
        where = "step %d (%s), seed %d; console:\n%s\nbroker log:\n%s" % (
            step, action, SEED, vm.console_tail(25), "".join(broker.log_path.read_text().splitlines(True)[-15:]))
        entered = [s for t, s in vm.states if t >= t0 and s == "RUNNING"]
        if action not in STARTS and action != "replay":
            assert not entered, "RUNNING without a start: " + where
        if action == "replay":
            # A replayed start is a duplicate: it never runs (unless a stop replays, which stops).
            assert not entered, "a replayed command started the motor: " + where
        # A remote stop reaches only a board that is online: one that lost its session while
        # running does not reconnect until stopped locally (docs/commands.md, cloud loss).
        must_stop = action in ("press_stop", "overload", "reboot") or (action == "remote_stop" and was_online)
        if must_stop:
            # A remote stop travels through the broker behind whatever was queued before it
            # (a flood of 40 commands, say): allow it that trip, then it must have stopped.
            try:
                vm.wait_until(lambda v: v.state != "RUNNING" and v.pwm_duty == 0, 3.0, "stopped")
            except TimeoutError:
                raise AssertionError("still running after %s: %s" % (action, where)) from None
        if world.overloaded:
            assert vm.state != "RUNNING", "running while overloaded: " + where
        for name in seen:
            seen[name] += vm.state == name
    # The walk is only meaningful if it went everywhere.
    assert seen["RUNNING"] and seen["FAULT"], seen
