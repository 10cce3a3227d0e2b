"""Fault alerts: the text a person reads, and the window that keeps one fault from paging twice."""

from __future__ import annotations

import datetime as _dt

REASONS = {
    "overtemp": "motor too hot",
    "overcurrent": "motor current too high",
    "overtemp_overcurrent": "motor hot and drawing high current",
    "temp_sensor_implausible": "temperature sensor open or shorted",
    "current_sensor_implausible": "current sensor open or shorted",
    "watchdog": "controller reset by its watchdog",
}


def suppression_key(event: dict) -> str:
    return "alert#%s#%s#%s" % (event.get("device"), event.get("event"), event.get("reason", "-"))


def _reading(value, unit):
    return "n/a (sensor fault)" if value is None else "%.1f %s" % (value, unit) if unit == "C" else "%.2f %s" % (value, unit)


def format_alert(event: dict) -> tuple[str, str]:
    """(subject, body) for SNS, Telegram and Discord."""
    device = event.get("device", "?")
    kind = event.get("event", "?")
    when = _dt.datetime.fromtimestamp(event.get("time", 0) / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if kind == "FAULT":
        why = REASONS.get(event.get("reason"), event.get("reason", "unknown reason"))
        subject = "MotorGuard FAULT on %s: %s" % (device, why)
    else:
        subject = "MotorGuard %s on %s" % ("emergency stop" if kind == "ESTOP" else kind, device)
        why = "stop button pressed" if kind == "ESTOP" else kind.lower()
    body = "\n".join([
        subject,
        "device:      %s" % device,
        "state:       %s" % event.get("state", "?"),
        "reason:      %s" % why,
        "temperature: %s" % _reading(event.get("temperature_c"), "C"),
        "current:     %s" % _reading(event.get("current_a"), "A"),
        "time:        %s" % when,
        "The motor is off. A FAULT resets only with the stop button at the machine, once the cause is gone.",
    ])
    return subject[:100], body
