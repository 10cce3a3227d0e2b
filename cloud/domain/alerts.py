"""Fault alerts: whose they are, the text a person reads, and the window that keeps one fault from
paging twice.

An alert names the device from its topic, never from its payload: the topic is the authenticated
identity (the policy lets a device publish only on devices/<its own name>/...), the payload is
whatever the device wrote. So an event can neither page in another device's name nor take the
de-duplication slot of that device's real alert. Whether an event may alert at all is ingest's
verdict (cloud/domain/messages.py check: identity, schema, time), which the alert Lambda applies.
"""

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


def suppression_key(thing: str, event: dict) -> str:
    return "alert#%s#%s#%s" % (thing, event.get("event"), event.get("reason", "-"))


def _reading(value, unit):
    return "n/a (sensor fault)" if value is None else "%.1f %s" % (value, unit) if unit == "C" else "%.2f %s" % (value, unit)


def format_alert(thing: str, event: dict) -> tuple[str, str]:
    """(subject, body) for SNS, Telegram and Discord, in the name of the topic's device."""
    device = thing
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
