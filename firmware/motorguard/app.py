# MotorGuard application: the control task (safety) and the network task.
#
# Two asyncio tasks share one App object:
# - control_task owns the controller, the PWM and the LEDs. It never awaits
#   anything but its own sleep, so no network, filesystem or DNS wait sits
#   between a sensor sample and the PWM going to 0. Its tick allocates nothing.
# - network_task (motorguard.net) owns Wi-Fi, NTP and MQTT and only reads what
#   the control task recorded in the preallocated rings.
# The stop button also has a pin interrupt that cuts the PWM directly, so an
# emergency stop works even while the network task is inside a blocking call.

import sys
import time

import asyncio
import gc
import machine
import os

from motorguard import VERSION
from motorguard import commands as cmds
from motorguard import controller
from motorguard.buttons import Button
from motorguard.sensors import NTC, CurrentSensor
from motorguard.servo import Sweep
from motorguard.telemetry import Clock, Events, Samples


# Collect garbage after every this many bytes allocated (the network task's messages,
# the TLS records), rather than only when an allocation fails: a heap left to fill up
# fragments, and a message buffer or a TLS record then finds no room although the
# live data is small. The control tick allocates nothing, so it never triggers one.
GC_EVERY_BYTES = 1024
# The config sections App() turns into objects (sensors, sweep, limits, rings) and then drops.
_BUILT_FROM = ("ntc", "current", "servo", "limits", "telemetry")


def log(*parts):
    # One console line per network step or boot-time fact (net.py logs through this too),
    # prefixed so the test harness can parse it. Allocates its tuple: not for the tick.
    print("MG", *parts)


def say(what, word, key, value):
    # The control tick's console line, "MG <what> [<word> ]<key>=<value>" (word "" for none):
    # a call with fixed arguments and print's sep keyword allocate nothing, unlike log().
    if word:
        print("MG ", what, " ", word, " ", key, "=", value, sep="")
    else:
        print("MG ", what, " ", key, "=", value, sep="")


class App:
    def __init__(self, cfg):
        self.cfg = cfg
        pins = cfg["pins"]
        ctl = cfg["control"]
        # Outputs first, all off: whatever happens next, the motor stays still. duty_u16=0, never
        # duty_ns=0: the esp32 port checks a duty_ns given to the constructor against a timer the
        # channel does not have yet and raises RuntimeError("PWM is inactive") (machine_pwm.c,
        # v1.26.1 on); once the channel runs, duty_ns() works. The same in main() and safe_mode.
        self.pwm = machine.PWM(machine.Pin(pins["servo"]), freq=cfg["servo"]["freq_hz"], duty_u16=0)
        self.duty = 0
        self.led_green = machine.Pin(pins["led_green"], machine.Pin.OUT, value=0)
        self.led_red = machine.Pin(pins["led_red"], machine.Pin.OUT, value=0)
        self.adc_temp = machine.ADC(machine.Pin(pins["temp_adc"]), atten=machine.ADC.ATTN_11DB)
        self.adc_current = machine.ADC(machine.Pin(pins["current_adc"]), atten=machine.ADC.ATTN_11DB)
        pull = machine.Pin.PULL_UP
        self.stop_pin = machine.Pin(pins["stop_button"], machine.Pin.IN, pull)
        self.start_button = Button(
            machine.Pin(pins["start_button"], machine.Pin.IN, pull), ctl["debounce_ms"], ctl["stuck_button_ms"]
        )
        self.stop_button = Button(self.stop_pin, ctl["debounce_ms"])

        self.ntc = NTC(cfg["ntc"])
        self.current_sensor = CurrentSensor(cfg["current"])
        self.sweep = Sweep(cfg["servo"])
        self.ctl = controller.Controller(cfg["limits"], ctl["remote_start_enabled"])
        self.period_ms = ctl["period_ms"]

        tel = cfg["telemetry"]
        self.clock = Clock()
        self.samples = Samples(tel["buffer_samples"], tel["samples_per_message"])
        self.events = Events(tel["event_queue"])
        self.sample_period_ms = tel["sample_period_ms"]
        self.backlog_samples = tel["backlog_samples"]
        self.backlog = None  # the flash backlog (backlog.py) while there is one: net.keep_backlog
        self.drain_gap_ms = 1000 // tel["backlog_drain_per_s"]
        self.since_sample = 0

        # Remote commands from the network task, one at a time (a stop always first).
        self.mailbox = cmds.Mailbox()
        # Every stop of any kind (boot, button, e-stop, fault, remote, cloud loss) counts
        # here with its uptime: a remote start issued before the latest one is refused.
        self.stop_gen = 0
        self.stop_up_s = 0
        self.stop_up_ms = 0
        self.estop_flag = False
        self.online = False
        self.offline_run_ms = 0  # running without a cloud connection, for stop_on_cloud_loss_s
        self.cloud_loss_ms = ctl["stop_on_cloud_loss_s"] * 1000
        self.boot_id = "%08x" % int.from_bytes(os.urandom(4), "big")
        self.wdt = None
        self._estop_irq_ref = self._estop_irq  # bound once: an IRQ must not allocate
        self.stop_pin.irq(handler=self._estop_irq_ref, trigger=machine.Pin.IRQ_FALLING)
        # These sections now live on as the objects' own numbers: their dicts leave the heap.
        for key in _BUILT_FROM:
            cfg.pop(key)

    # --- outputs -------------------------------------------------------
    def motor_off(self):
        if self.duty:
            self.pwm.duty_ns(0)
            self.duty = 0

    def _estop_irq(self, pin):
        # Soft IRQ: runs between bytecodes, even inside blocking socket calls.
        self.pwm.duty_ns(0)
        self.duty = 0
        self.estop_flag = True

    def request_stop(self):
        """A remote stop, from the network task: PWM off now, the state at the next tick."""
        self.pwm.duty_ns(0)
        self.duty = 0
        self.mailbox.stop = True

    def _stopped(self):
        # Bookkeeping of "a stop happened now"; integers only (runs in the tick).
        self.stop_gen = (self.stop_gen + 1) & 0xFFFFFF  # wraps: stays a small int
        self.stop_up_s = self.clock.up_s
        self.stop_up_ms = self.clock.up_ms

    def _leds(self):
        state = self.ctl.state
        self.led_green.value(1 if state == controller.RUNNING else 0)
        self.led_red.value(1 if state == controller.FAULT else 0)

    # --- events --------------------------------------------------------
    def _event(self, code, detail=None):
        ctl = self.ctl
        self.events.record(self.clock, code, ctl.reason, ctl.state, ctl.temp, ctl.current, detail)
        if code == controller.EV_FAULT:
            say("STATE", controller.STATE_NAMES[ctl.state], "reason", controller.REASON_NAMES[ctl.reason])
        else:
            say("STATE", controller.STATE_NAMES[ctl.state], "event", controller.EVENT_NAMES[code])

    # --- the control tick ---------------------------------------------
    def tick(self, dt_ms):
        """One control cycle: inputs -> interlocks -> outputs. No I/O waits, no allocation."""
        ctl = self.ctl
        mb = self.mailbox
        self.clock.advance(dt_ms)
        ev = controller.EV_NONE
        # 1. Stops first. A remote stop (its PWM already cut by the network task) moves
        # the state before anything else runs; then the stop pin: any low level stops at
        # once (bounces only ever stop).
        if mb.stop:
            mb.stop = False
            self.motor_off()
            self._stopped()
            ev = ctl.remote_stop()
            if ev:
                self._event(ev, b"remote")
        ctl.stop_held = self.stop_pin.value() == 0
        if self.estop_flag or ctl.stop_held:
            self.estop_flag = False
            self._stopped()
            if ctl.state == controller.RUNNING:
                self.motor_off()
                self._event(ctl.stop_button())
        # 2. Sensors and interlocks, in every state.
        temp = self.ntc.decicelsius(self.adc_temp.read_uv())
        current = self.current_sensor.milliamps(self.adc_current.read_uv())
        ev = ctl.update(temp, current)
        if ev:
            self.motor_off()
            self._stopped()
            self._event(ev)
        # 3. Debounced buttons: stop resets a cleared fault; start runs if every interlock allows.
        if self.stop_button.poll(dt_ms):
            self._stopped()
            ev = ctl.stop_button()
            if ev:
                self._event(ev)
            elif ctl.state == controller.FAULT:
                say("RESET_REFUSED", "", "reason", controller.REFUSAL_NAMES[ctl.last_refusal])
        if self.start_button.poll(dt_ms):
            ev = ctl.start_button()
            if ev:
                self._event(ev)
            else:
                say("START_REFUSED", "", "reason", controller.REFUSAL_NAMES[ctl.last_refusal])
        if self.start_button.stuck():
            self._event(controller.EV_BUTTON_STUCK, b"start_button")
        # 4. One remote command from the mailbox.
        if mb.code:
            self._serve_mailbox(mb)
        # 5. No cloud for too long while running: stop, if the operator asked for that.
        if ctl.state == controller.RUNNING and not self.online and self.cloud_loss_ms:
            self.offline_run_ms += dt_ms
            if self.offline_run_ms >= self.cloud_loss_ms:
                self.motor_off()
                self._stopped()
                if ctl.remote_stop():
                    self._event(controller.EV_STOPPED, b"cloud_lost")
        else:
            self.offline_run_ms = 0
        # 6. Outputs. Re-check both stop flags: the IRQ may have fired during this tick.
        if ctl.state == controller.RUNNING and not self.estop_flag and not mb.stop:
            pulse = self.sweep.step(dt_ms)
            self.pwm.duty_ns(pulse)
            self.duty = pulse
        else:
            self.motor_off()
        self._leds()
        # 7. Sampling.
        self.since_sample += dt_ms
        if self.since_sample >= self.sample_period_ms:
            self.since_sample -= self.sample_period_ms
            self.samples.record(self.clock, ctl.temp, ctl.current, self.sweep.decidegrees(), self.sweep.speed, ctl.state)

    def _serve_mailbox(self, mb):
        ctl = self.ctl
        if mb.code == cmds.CMD_START:
            if mb.stop_gen != self.stop_gen:
                # A stop came between the network task's check and now.
                mb.done(controller.REFUSED_STOPPED_SINCE)
                return
            ev = ctl.remote_start()
            if ev:
                self._event(ev)
            mb.done(ctl.last_refusal)
        else:  # CMD_SPEED: out of range is refused, never clamped
            mb.done(controller.OK if self.sweep.set_speed(mb.arg) else controller.REFUSED_SPEED)

    async def control_task(self):
        try:
            await self._control_loop()
        except Exception as e:  # noqa: BLE001 - a dead control loop must not wait for the watchdog
            self.pwm.duty_ns(0)
            self.duty = 0
            sys.print_exception(e)
            log("CRASH", "control_task", repr(e))
            machine.reset()

    async def _control_loop(self):
        period = self.period_ms
        wdt_ms = self.cfg["control"]["wdt_timeout_ms"]
        self.wdt = machine.WDT(timeout=wdt_ms)
        last = time.ticks_ms()
        while True:
            now = time.ticks_ms()
            dt = time.ticks_diff(now, last)
            last = now
            self.tick(dt)
            # Fed only after a complete tick: a stalled loop resets the chip (motor off, boots STOPPED).
            self.wdt.feed()
            spent = time.ticks_diff(time.ticks_ms(), now)
            await asyncio.sleep_ms(period - spent if spent < period else 0)

    def boot(self):
        from motorguard import contract  # dropped by the network task once it has the topics

        self._leds()
        try:
            cause = contract.RESET_CAUSES.get(machine.reset_cause(), contract.UNKNOWN_RESET_CAUSE)
        except Exception:  # noqa: BLE001 - a machine module without reset_cause()
            cause = contract.UNKNOWN_RESET_CAUSE
        self._event(controller.EV_BOOT, cause.encode())
        log("BOOT", "version=" + VERSION, "thing=" + self.cfg["thing"], "boot=" + self.boot_id, "cause=" + cause)


def run(cfg):
    # The rings first, while the heap is still in one piece, then the network code.
    gc.collect()
    app = App(cfg)
    app.boot()
    from motorguard import net

    gc.collect()
    gc.threshold(GC_EVERY_BYTES)

    async def main():
        if cfg["test_hook"]:  # test configurations only (hil_tests/): inputs from the console
            from motorguard.testhook import Hook

            asyncio.create_task(Hook(app).run())
        if cfg["offline"]:
            log("NET", "offline_mode")
            await app.control_task()
        else:
            asyncio.create_task(app.control_task())
            await net.network_task(app)

    asyncio.run(main())


def forget(name):
    """Drops a module that has done its work, so the collector can free its code.

    Boot-only code (the config loader with its defaults) and the connect-time code
    (link, mqtt_connect, dnscache, while a session is up) would otherwise hold heap for as long
    as the board runs; docs/virtual-esp32.md has the heap budget."""
    sys.modules.pop(name, None)
    package, _, leaf = name.rpartition(".")
    try:
        delattr(sys.modules[package], leaf)  # the package keeps its submodules as attributes
    except (KeyError, AttributeError, TypeError):
        pass  # not there, or a port that cannot delete it: the module then just stays loaded


def load_config():
    """The validated config, or safe mode (which never returns) when it is missing or bad."""
    from motorguard import config

    try:
        cfg = config.load()
    except config.ConfigError as e:
        from motorguard import safe_mode  # never returns

        safe_mode.run(str(e), config.DEFAULTS)
    forget("motorguard.config")  # the sections the config did not override stay, cfg holds them
    return cfg


def main():
    cfg = load_config()
    try:
        run(cfg)
    except Exception as e:  # noqa: BLE001 - any crash must end with the motor off and a clean reboot
        sys.print_exception(e)
        log("CRASH", repr(e))
    finally:
        # Motor off however we got here; a reboot always comes up STOPPED.
        try:
            # duty_u16, as in App(); App() may have dropped the servo section: at duty 0 any rate will do.
            machine.PWM(machine.Pin(cfg["pins"]["servo"]), freq=50, duty_u16=0)
        except Exception:  # noqa: BLE001 - nothing may stop the reset below
            pass
    time.sleep_ms(1000)
    machine.reset()
