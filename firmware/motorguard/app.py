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
import machine

from motorguard import commands as cmds
from motorguard import controller
from motorguard.base import log, say


class App:
    """The board's state, shared by the control task (owner of the PWM, the LEDs, the controller and
    the rings) and the network task. Built by start.build() (boot-only code, dropped once the tasks
    run): pwm, duty, led_green, led_red, adc_temp, adc_current, stop_pin, start_button,
    stop_button, ntc, current_sensor, sweep, ctl, period_ms, clock, samples, events,
    sample_period_ms, backlog_samples, backlog, drain_gap_ms, since_sample, mailbox, stop_gen,
    stop_up_s, stop_up_ms, estop_flag, online, offline_run_ms, cloud_loss_ms, boot_id, wdt, wdt_ms,
    servo_pin, max_age_ms, tolerance_ms, cfg (what the network task reads: wifi, mqtt, thing)."""

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
        self.wdt = machine.WDT(timeout=self.wdt_ms)
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


async def serve(a):
    """The board's tasks: control, and network unless the config says offline."""
    from motorguard import net  # loaded at boot already, after the rings (start.main)

    if a.cfg["test_hook"]:  # test configurations only (hil_tests/): inputs from the console
        from motorguard.testhook import Hook

        asyncio.create_task(Hook(a).run())
    if a.cfg["offline"]:
        log("NET", "offline_mode")
        await a.control_task()
    else:
        asyncio.create_task(a.control_task())
        await net.network_task(a)


def run(a):
    """Runs the App's tasks for as long as the board is on; any crash ends in halt()."""
    try:
        asyncio.run(serve(a))
    except Exception as e:  # noqa: BLE001 - any crash must end with the motor off and a clean reboot
        halt(a.servo_pin, e)
    halt(a.servo_pin)


def halt(servo_pin, e=None):
    """Motor off and a reset, after a crash (e) or the tasks' end: a reboot always comes up STOPPED."""
    if e is not None:
        sys.print_exception(e)
        log("CRASH", repr(e))
    try:
        # duty_u16, as start.build() does; the servo section may be gone: at duty 0 any rate will do.
        machine.PWM(machine.Pin(servo_pin), freq=50, duty_u16=0)
    except Exception:  # noqa: BLE001 - nothing may stop the reset below
        pass
    time.sleep_ms(1000)
    machine.reset()
