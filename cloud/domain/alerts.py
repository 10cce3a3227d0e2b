"""Fault alerts: whose they are, the text a person reads, and the window that keeps one fault from
paging twice.

An alert names the device from its topic, never from its payload: the topic is the authenticated
identity (the policy lets a device publish only on devices/<its own name>/...), the payload is
whatever the device wrote. So an event can neither page in another device's name nor take the
de-duplication slot of that device's real alert.
"""

from __future__ import annotations

import datetime as _dt
import re

# AWS IoT's rule for thing names (as provisioning/pki.py THING_NAME; the alert Lambda's asset holds
# only cloud/ and schemas/).
THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")

REASONS = {
    "overtemp": "motor too hot",
    "overcurrent": "motor current too high",
    "overtemp_overcurrent": "motor hot and drawing high current",
    "temp_sensor_implausible": "temperature sensor open or shorted",
    "current_sensor_implausible": "current sensor open or shorted",
    "watchdog": "controller reset by its watchdog",
}


def identity_problem(thing, event: dict) -> str | None:
    """Why the event cannot be alerted as the topic's device's (None when it can). thing: the
    rule's topic(2)."""
    if not isinstance(thing, str) or not thing:
        return "no thing in the topic (devices/<thing>/events)"
    if not THING_NAME.fullmatch(thing):
        return "invalid thing name %r (1-128 of a-z A-Z 0-9 : _ -)" % thing[:140]
    if event.get("device") != thing:
        return "device %r published on %r's topic" % (str(event.get("device"))[:140], thing)
    return None


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
