# The App's control tick on fake hardware: buttons, PWM, LEDs, commands, rings.
# Runs under CPython and MicroPython.
import machine
from motorguard import app as appmod
from motorguard import controller as C

from support import Rig, make_config, PINS


def test_boot_is_stopped_motor_off_red_off():
    rig = Rig()
    rig.run(5)
    assert rig.state() == C.STOPPED
    assert rig.duty() == 0
    assert rig.led("led_green") == 0 and rig.led("led_red") == 0


def test_start_button_sweeps_servo_within_limits():
    rig = Rig(current_a=0.5)
    rig.press("start_button")
    assert rig.state() == C.RUNNING
    lo = rig.cfg["servo"]["min_pulse_ns"]
    hi = rig.cfg["servo"]["max_pulse_ns"]
    seen = []
    for _ in range(800):  # 4 s: more than a full sweep at 60 deg/s
        rig.run(1)
        seen.append(rig.duty())
    assert min(seen) >= lo and max(seen) <= hi
    assert max(seen) - min(seen) > (hi - lo) // 2  # it really sweeps
    assert rig.led("led_green") == 1


def test_start_needs_debounce():
    rig = Rig()
    rig.button("start_button", True)
    rig.run(2)  # 10 ms < 30 ms debounce
    rig.button("start_button", False)
    rig.run(10)
    assert rig.state() == C.STOPPED


def test_stop_irq_cuts_pwm_before_any_tick():
    rig = Rig()
    rig.press("start_button")
    rig.run(3)
    assert rig.duty() != 0
    rig.button("stop_button", True)  # the IRQ handler runs here, between ticks
    assert rig.duty() == 0
    rig.run(1)
    assert rig.state() == C.STOPPED
    assert rig.app.events.box.head >= 3  # BOOT, STARTED, ESTOP


def test_overload_faults_latches_and_resets_only_when_cleared():
    rig = Rig()
    rig.press("start_button")
    rig.set_temp(35.0)
    rig.set_current(2.0)
    rig.run(1)
    assert rig.state() == C.FAULT and rig.duty() == 0
    assert rig.led("led_red") == 1 and rig.led("led_green") == 0
    rig.set_current(0.0)
    rig.press("start_button")
    assert rig.state() == C.FAULT  # start refused while latched
    rig.press("stop_button")
    assert rig.state() == C.FAULT  # 35 C: not cleared yet
    rig.set_temp(30.0)
    rig.run(1)
    assert rig.state() == C.FAULT  # clearing alone never resets
    rig.press("stop_button")
    assert rig.state() == C.STOPPED and rig.duty() == 0
    assert rig.led("led_red") == 0


def test_sensor_open_while_running_faults():
    rig = Rig()
    rig.press("start_button")
    rig.set_temp("open")
    rig.run(1)
    assert rig.state() == C.FAULT and rig.app.ctl.reason == C.R_TEMP_SENSOR
    assert rig.duty() == 0


def test_start_refused_while_stop_held():
    rig = Rig()
    rig.button("stop_button", True)
    rig.press("start_button")
    assert rig.state() == C.STOPPED


def test_remote_commands():
    rig = Rig()
    assert rig.remote(appmod.CMD_START) == C.OK and rig.state() == C.RUNNING
    assert rig.remote(appmod.CMD_SPEED, 500) == C.OK
    assert rig.app.sweep.speed == rig.cfg["servo"]["max_speed_deg_s"]  # clamped
    assert rig.remote(appmod.CMD_STOP) == C.OK and rig.state() == C.STOPPED
    rig.run(1)
    assert rig.duty() == 0


def test_remote_start_disabled_by_config():
    rig = Rig(cfg=make_config(control__remote_start_enabled=False))
    assert rig.remote(appmod.CMD_START) == C.REFUSED_REMOTE_DISABLED
    assert rig.state() == C.STOPPED


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
