# Boot: the config, the App built from it, the BOOT event, the network code loaded. Boot-only:
# main.py calls main() once, which drops this module before the tasks start, so its code (the
# App's construction above all, ~2 KB of heap) is garbage from then on. Nothing built here may
# keep a reference to this module (no closures, no functions of it stored).

import gc
import os

import machine

from motorguard import VERSION
from motorguard import commands as cmds
from motorguard import controller
from motorguard.app import App, halt
from motorguard.base import forget, log
from motorguard.buttons import Button
from motorguard.sensors import NTC, CurrentSensor
from motorguard.servo import Sweep
from motorguard.telemetry import Clock, Events, Samples

# Collect garbage after every this many bytes allocated (the network task's messages,
# the TLS records), rather than only when an allocation fails: a heap left to fill up
# fragments, and a message buffer or a TLS record then finds no room although the
# live data is small. The control tick allocates nothing, so it never triggers one.
GC_EVERY_BYTES = 1024
# The config sections build() turns into objects and App fields, and then drops.
_BUILT_FROM = ("ntc", "current", "servo", "limits", "telemetry", "pins", "control")


def main():
    """The App, built and booted, for app.run(). A missing or bad config never returns (safe
    mode); a failure while building ends with the motor off and a reset."""
    cfg = load_config()
    pin = cfg["pins"]["servo"]  # build() drops the section
    try:
        # The rings first, while the heap is still in one piece, then the network code.
        gc.collect()
        a = build(cfg)
        boot(a)
        from motorguard import net  # noqa: F401 - loaded now; app.serve() runs it
    except Exception as e:  # noqa: BLE001 - any failure must end with the motor off and a clean reboot
        halt(pin, e)
    forget("motorguard.start")
    gc.collect()
    gc.threshold(GC_EVERY_BYTES)
    return a


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


def build(cfg):
    """The App on its pins, sensors, rings and controller (app.App lists its fields)."""
    a = App()
    a.cfg = cfg
    pins = cfg["pins"]
    ctl = cfg["control"]
    # Outputs first, all off: whatever happens next, the motor stays still. duty_u16=0, never
    # duty_ns=0: the esp32 port checks a duty_ns given to the constructor against a timer the
    # channel does not have yet and raises RuntimeError("PWM is inactive") (machine_pwm.c,
    # v1.26.1 on); once the channel runs, duty_ns() works. The same in app.halt() and safe_mode.
    a.pwm = machine.PWM(machine.Pin(pins["servo"]), freq=cfg["servo"]["freq_hz"], duty_u16=0)
    a.duty = 0
    a.led_green = machine.Pin(pins["led_green"], machine.Pin.OUT, value=0)
    a.led_red = machine.Pin(pins["led_red"], machine.Pin.OUT, value=0)
    a.adc_temp = machine.ADC(machine.Pin(pins["temp_adc"]), atten=machine.ADC.ATTN_11DB)
    a.adc_current = machine.ADC(machine.Pin(pins["current_adc"]), atten=machine.ADC.ATTN_11DB)
    pull = machine.Pin.PULL_UP
    a.stop_pin = machine.Pin(pins["stop_button"], machine.Pin.IN, pull)
    a.start_button = Button(
        machine.Pin(pins["start_button"], machine.Pin.IN, pull), ctl["debounce_ms"], ctl["stuck_button_ms"]
    )
    a.stop_button = Button(a.stop_pin, ctl["debounce_ms"])

    a.ntc = NTC(cfg["ntc"])
    a.current_sensor = CurrentSensor(cfg["current"])
    a.sweep = Sweep(cfg["servo"])
    a.ctl = controller.Controller(cfg["limits"], ctl["remote_start_enabled"])
    a.period_ms = ctl["period_ms"]
    a.wdt_ms = ctl["wdt_timeout_ms"]
    a.servo_pin = pins["servo"]  # for app.halt()
    a.max_age_ms = ctl["command_max_age_s"] * 1000  # the network task's command rules (net.Commands)
    a.tolerance_ms = ctl["clock_tolerance_ms"]

    tel = cfg["telemetry"]
    a.clock = Clock()
    a.samples = Samples(tel["buffer_samples"], tel["samples_per_message"])
    a.events = Events(tel["event_queue"])
    a.sample_period_ms = tel["sample_period_ms"]
    a.backlog_samples = tel["backlog_samples"]
    a.backlog = None  # the flash backlog (backlog.py) while there is one: net.keep_backlog
    a.drain_gap_ms = 1000 // tel["backlog_drain_per_s"]
    a.since_sample = 0

    # Remote commands from the network task, one at a time (a stop always first).
    a.mailbox = cmds.Mailbox()
    # Every stop of any kind (boot, button, e-stop, fault, remote, cloud loss) counts
    # here with its uptime: a remote start issued before the latest one is refused.
    a.stop_gen = 0
    a.stop_up_s = 0
    a.stop_up_ms = 0
    a.estop_flag = False
    a.online = False
    a.offline_run_ms = 0  # running without a cloud connection, for stop_on_cloud_loss_s
    a.cloud_loss_ms = ctl["stop_on_cloud_loss_s"] * 1000
    a.boot_id = "%08x" % int.from_bytes(os.urandom(4), "big")
    a.wdt = None
    a._estop_irq_ref = a._estop_irq  # bound once, here: an IRQ must not allocate
    a.stop_pin.irq(handler=a._estop_irq_ref, trigger=machine.Pin.IRQ_FALLING)
    # These sections now live on as the objects' own numbers: their dicts leave the heap.
    for key in _BUILT_FROM:
        cfg.pop(key)
    return a


def boot(a):
    from motorguard import contract  # dropped by the network task once it has the topics

    a._leds()
    try:
        cause = contract.RESET_CAUSES.get(machine.reset_cause(), contract.UNKNOWN_RESET_CAUSE)
    except Exception:  # noqa: BLE001 - a machine module without reset_cause()
        cause = contract.UNKNOWN_RESET_CAUSE
    a._event(controller.EV_BOOT, cause.encode())
    log("BOOT", "version=" + VERSION, "thing=" + a.cfg["thing"], "boot=" + a.boot_id, "cause=" + cause)
