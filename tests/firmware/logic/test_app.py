# The App's control tick on fake hardware: buttons, PWM, LEDs, commands, rings.
# Runs under CPython and MicroPython.
import machine
from motorguard import commands as cmds
from motorguard import controller
from motorguard import telemetry

from support import Rig, make_config, PINS


def test_boot_is_stopped_motor_off_red_off():
    rig = Rig()
    rig.run(5)
    assert rig.state() == controller.STOPPED
    assert rig.duty() == 0
    assert rig.led("led_green") == 0 and rig.led("led_red") == 0


def test_start_button_sweeps_servo_within_limits():
    rig = Rig(current_a=0.5)
    rig.press("start_button")
    assert rig.state() == controller.RUNNING
    lo = rig.cfg["servo"]["min_pulse_ns"]
    hi = rig.cfg["servo"]["max_pulse_ns"]
    least, most = hi, lo  # not a list of 800 readings: the MicroPython heap is small
    for _ in range(800):  # 4 s: more than a full sweep at 60 deg/s
        rig.run(1)
        least, most = min(least, rig.duty()), max(most, rig.duty())
    assert least >= lo and most <= hi
    assert most - least > (hi - lo) // 2  # it really sweeps
    assert rig.led("led_green") == 1


def test_start_needs_debounce():
    rig = Rig()
    rig.button("start_button", True)
    rig.run(2)  # 10 ms < 30 ms debounce
    rig.button("start_button", False)
    rig.run(10)
    assert rig.state() == controller.STOPPED


def test_stop_irq_cuts_pwm_before_any_tick():
    rig = Rig()
    rig.press("start_button")
    rig.run(3)
    assert rig.duty() != 0
    rig.button("stop_button", True)  # the IRQ handler runs here, between ticks
    assert rig.duty() == 0
    rig.run(1)
    assert rig.state() == controller.STOPPED
    assert rig.app.events.box.head >= 3  # BOOT, STARTED, ESTOP


def test_overload_faults_latches_and_resets_only_when_cleared():
    rig = Rig()
    rig.press("start_button")
    rig.set_temp(35.0)
    rig.set_current(2.0)
    rig.run(1)
    assert rig.state() == controller.FAULT and rig.duty() == 0
    assert rig.led("led_red") == 1 and rig.led("led_green") == 0
    rig.set_current(0.0)
    rig.press("start_button")
    assert rig.state() == controller.FAULT  # start refused while latched
    rig.press("stop_button")
    assert rig.state() == controller.FAULT  # 35 C: not cleared yet
    rig.set_temp(30.0)
    rig.run(1)
    assert rig.state() == controller.FAULT  # clearing alone never resets
    rig.press("stop_button")
    assert rig.state() == controller.STOPPED and rig.duty() == 0
    assert rig.led("led_red") == 0


def test_sensor_open_while_running_faults():
    rig = Rig()
    rig.press("start_button")
    rig.set_temp("open")
    rig.run(1)
    assert rig.state() == controller.FAULT and rig.app.ctl.reason == controller.R_TEMP_SENSOR
    assert rig.duty() == 0


def test_start_refused_while_stop_held():
    rig = Rig()
    rig.button("stop_button", True)
    rig.press("start_button")
    assert rig.state() == controller.STOPPED


def test_remote_commands():
    rig = Rig(cfg=make_config(control__remote_start_enabled=True))
    assert rig.remote(cmds.CMD_START) == controller.OK and rig.state() == controller.RUNNING
    assert rig.remote(cmds.CMD_SPEED, 120) == controller.OK and rig.app.sweep.speed == 120
    assert rig.remote(cmds.CMD_STOP) == controller.OK and rig.state() == controller.STOPPED
    rig.run(1)
    assert rig.duty() == 0


def test_speed_out_of_range_is_refused_not_clamped():
    rig = Rig(cfg=make_config(control__remote_start_enabled=True))
    before = rig.app.sweep.speed
    for bad in (0, -5, 181, 500, 10**30):
        assert rig.remote(cmds.CMD_SPEED, bad) == controller.REFUSED_SPEED, bad
        assert rig.app.sweep.speed == before


def test_remote_start_disabled_by_default():
    rig = Rig()
    assert rig.remote(cmds.CMD_START) == controller.REFUSED_REMOTE_DISABLED
    assert rig.state() == controller.STOPPED


def test_remote_stop_moves_the_state_at_once_and_never_reenergises():
    rig = Rig(cfg=make_config(control__remote_start_enabled=True))
    rig.press("start_button")
    rig.run(20)
    assert rig.state() == controller.RUNNING and rig.duty() > 0
    seen = []
    rig.app.request_stop()
    seen.append(rig.duty())  # cut by the network task itself, before any tick
    for _ in range(50):
        rig.run(1)
        seen.append(rig.duty())
    assert rig.state() == controller.STOPPED
    assert seen == [0] * len(seen), seen


def test_start_posted_before_a_stop_is_refused_when_served():
    rig = Rig(cfg=make_config(control__remote_start_enabled=True))
    app = rig.app
    app.mailbox.post(cmds.CMD_START, 0, app.stop_gen)  # checked by the network task ...
    rig.press("stop_button")  # ... then a local stop, before the control task serves it
    assert app.mailbox.result == controller.REFUSED_STOPPED_SINCE
    assert rig.state() == controller.STOPPED and rig.duty() == 0


def test_button_held_at_boot_never_starts_until_released():
    rig = Rig(held=("start_button",))
    rig.run(400)  # 2 s held through boot
    assert rig.state() == controller.STOPPED and rig.duty() == 0
    rig.button("start_button", False)
    rig.run(10)
    assert rig.state() == controller.STOPPED  # the release itself is no press
    rig.press("start_button")
    assert rig.state() == controller.RUNNING


def test_stuck_start_button_is_reported_once_and_never_restarts():
    rig = Rig(held=("start_button",))
    hold_ticks = rig.cfg["control"]["stuck_button_ms"] // 5 + 10
    rig.run(hold_ticks)
    codes = [rig.app.events.rec[rig.app.events.box.slot(k) * telemetry.EV_REC] for k in range(rig.app.events.box.head)]
    assert codes.count(controller.EV_BUTTON_STUCK) == 1, codes
    rig.run(hold_ticks)
    codes = [rig.app.events.rec[rig.app.events.box.slot(k) * telemetry.EV_REC] for k in range(rig.app.events.box.head)]
    assert codes.count(controller.EV_BUTTON_STUCK) == 1  # once per hold, not once per tick
    assert rig.state() == controller.STOPPED and rig.duty() == 0


def test_cloud_loss_stops_a_running_motor_when_configured():
    rig = Rig(cfg=make_config(control__stop_on_cloud_loss_s=2))
    rig.app.online = False
    rig.press("start_button")
    assert rig.state() == controller.RUNNING
    rig.run(300)  # 1.5 s offline: still running
    assert rig.state() == controller.RUNNING
    rig.run(120)  # past 2 s
    assert rig.state() == controller.STOPPED and rig.duty() == 0
    last = rig.app.events.box.head - 1
    assert rig.app.events.rec[rig.app.events.box.slot(last) * telemetry.EV_REC] == controller.EV_STOPPED
    assert rig.app.events.detail[rig.app.events.box.slot(last)] == b"cloud_lost"


def test_cloud_loss_policy_off_by_default():
    rig = Rig()
    rig.app.online = False
    rig.press("start_button")
    rig.run(2000)  # 10 s offline
    assert rig.state() == controller.RUNNING


def test_online_motor_is_not_stopped_by_the_cloud_loss_policy():
    rig = Rig(cfg=make_config(control__stop_on_cloud_loss_s=1))
    rig.app.online = True
    rig.press("start_button")
    rig.run(600)
    assert rig.state() == controller.RUNNING


def test_start_refused_while_the_network_blocks():
    rig = Rig(cfg=make_config(control__remote_start_enabled=True))
    rig.app.ctl.net_busy = True  # a DNS lookup, NTP or a TLS handshake under way
    rig.press("start_button")
    assert rig.state() == controller.STOPPED
    assert rig.remote(cmds.CMD_START) == controller.REFUSED_NETWORK_BUSY
    rig.app.ctl.net_busy = False
    rig.press("start_button")
    assert rig.state() == controller.RUNNING
def test_samples_recorded_at_sample_period():
    rig = Rig()
    rig.run(1000)  # 5 s at 5 ms
    assert rig.app.samples.box.head == 5
    assert machine.wdt_feeds[0] == 0  # only control_task feeds the watchdog, not tick()


def test_tick_allocates_nothing_while_running():
    # A steady-state tick (sensors, interlocks, sweep, PWM, LEDs, sampling) must not allocate:
    # no garbage means no GC pause lands in the safety path.
    try:
        import micropython  # noqa: F401
    except ImportError:
        return  # CPython allocates for every int; the MicroPython run of this module is the real check
    import gc

    rig = Rig(current_a=0.5)
    rig.press("start_button")
    app = rig.app
    gc.collect()
    gc.disable()
    before = gc.mem_free()
    for _ in range(400):  # 2 s: includes two telemetry samples
        app.tick(5)
    used = before - gc.mem_free()
    gc.enable()
    assert app.samples.box.head >= 2
    assert used == 0, used


def test_tick_allocates_nothing_on_state_changes():
    # Every state change happens inside the tick and prints a console line and records an
    # event there: start, stop, e-stop, fault, refused start and reset, remote start and
    # stop. None of it may allocate, or a collection could land between a stop and PWM 0.
    try:
        import micropython  # noqa: F401
    except ImportError:
        return  # CPython allocates for every int; the MicroPython run of this module is the real check
    import gc

    cfg = make_config(control__remote_start_enabled=True)
    rig = Rig(cfg, current_a=0.5)
    app = rig.app
    seen = []  # the state after each step, judged after the measured ticks

    def ticks(n):
        # Only the ticks are measured: the rig's own calls (pins, sensors) may allocate.
        used = 0
        for _ in range(n):
            free = gc.mem_free()
            app.tick(5)
            used += free - gc.mem_free()
        return used

    gc.collect()
    gc.disable()
    try:
        steps = []
        rig.button("start_button", True)
        steps.append(ticks(10))  # STARTED
        rig.button("start_button", False)
        steps.append(ticks(10))
        seen.append(rig.state())
        rig.button("stop_button", True)  # the IRQ cuts the PWM, the tick records the e-stop
        steps.append(ticks(10))
        rig.button("stop_button", False)
        steps.append(ticks(10))
        seen.append(rig.state())
        rig.button("stop_button", True)  # held: a start is refused with a reason
        rig.button("start_button", True)
        steps.append(ticks(10))
        rig.button("start_button", False)
        rig.button("stop_button", False)
        steps.append(ticks(10))
        app.mailbox.post(cmds.CMD_START, 0, app.stop_gen)  # a remote start, then a remote stop
        steps.append(ticks(2))
        seen.append(rig.state())
        app.request_stop()
        steps.append(ticks(2))
        seen.append(rig.state())
        rig.button("start_button", True)
        steps.append(ticks(10))
        rig.button("start_button", False)
        steps.append(ticks(10))
        rig.set_temp("open")  # FAULT: an implausible sensor while running
        steps.append(ticks(10))
        seen.append(rig.state())
        rig.button("start_button", True)  # refused: latched
        steps.append(ticks(10))
        rig.button("start_button", False)
        rig.button("stop_button", True)  # reset refused: the condition is still there
        steps.append(ticks(10))
        rig.button("stop_button", False)
        steps.append(ticks(10))
    finally:
        gc.enable()
    assert seen == [controller.RUNNING, controller.STOPPED, controller.RUNNING, controller.STOPPED,
                    controller.FAULT], seen
    assert rig.duty() == 0
    assert steps == [0] * len(steps), steps


def test_the_sections_the_app_is_built_from_leave_its_config():
    # Sensors, sweep, limits, rings, pins and the control settings live on as the objects' and the
    # App's own numbers: the dicts go, the rest stays.
    rig = Rig()
    left = set(rig.app.cfg)
    assert not left & {"ntc", "current", "servo", "limits", "telemetry", "pins", "control"}, left
    assert {"thing", "mqtt", "wifi"} <= left, left
    assert rig.app.servo_pin == rig.cfg["pins"]["servo"] and rig.app.wdt_ms == rig.cfg["control"]["wdt_timeout_ms"]
    assert rig.cfg["servo"] and rig.cfg["limits"]  # the caller's dict is not touched
    rig.press("start_button")
    rig.run(20)
    assert rig.state() == controller.RUNNING and rig.duty() > 0


def test_the_config_loader_leaves_the_heap_once_the_config_is_loaded():
    # config.py (validation and defaults) is boot-only: load_config() hands back the config and
    # drops the module, so its code is garbage; sections of the defaults the config uses stay.
    import os
    import sys

    import motorguard
    from motorguard import start

    saved = sys.modules["motorguard.config"]
    here = os.getcwd()
    folder = "/tmp/mg-load-config-test"
    try:
        os.mkdir(folder)
    except OSError:
        pass
    with open(folder + "/config.json", "w") as f:
        f.write('{"thing": "motor-7", "mqtt": {"host": "broker.example"}}')
    os.chdir(folder)
    try:
        cfg = start.load_config()
        assert cfg["thing"] == "motor-7" and cfg["mqtt"]["host"] == "broker.example"
        assert cfg["pins"] == saved.DEFAULTS["pins"]
        assert "motorguard.config" not in sys.modules
        assert not hasattr(motorguard, "config")
    finally:
        os.chdir(here)
        sys.modules["motorguard.config"] = saved
        motorguard.config = saved
