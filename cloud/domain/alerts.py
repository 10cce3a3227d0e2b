"""Fault alerts: whose they are, the text a person reads, and the window that keeps one fault from
paging twice.

An alert names the device from its topic, never from its payload: the topic is the authenticated
identity (the policy lets a device publish only on devices/<its own name>/...), the payload is
whatever the device wrote. So an event can neither page in another device's name nor take the
de-duplication slot of that device's real alert. Whether an event may alert at all is ingest's
verdict (cloud/domain/messages.py check: identity, schema, time), which the alert Lambda applies.

The de-duplication slot (one item of the state table per suppression key) is claimed "pending" by
one invocation for as long as that invocation can run, and becomes "sent" only once SNS has taken
the page; an invocation whose publish fails deletes its claim. So a slot never silences an alert
that was not delivered (docs/cloud.md, "Alerts: delivery and de-duplication").
"""

from __future__ import annotations

import datetime as _dt
import unicodedata

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
    return sns_subject(subject), fit_utf8(body, SNS_MESSAGE_MAX_BYTES)


# What SNS takes (its Publish API reference): a Subject of fewer than 100 characters with no line
# breaks or control characters (an older revision also asked for ASCII beginning with a letter, a
# digit or punctuation: printable ASCII satisfies both), and a message of at most 256 KiB of UTF-8.
SNS_SUBJECT_MAX_CHARS = 99
SNS_MESSAGE_MAX_BYTES = 262_144
_CUT = "..."


def _ascii(ch: str) -> str:
    """One character as printable ASCII: itself, its unaccented letter (e with an accent -> e), a
    space for any kind of whitespace or control character, or '?'."""
    if " " <= ch <= "~":
        return ch
    if ch.isspace() or unicodedata.category(ch).startswith("C"):
        return " "
    plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
    plain = "".join(c for c in plain if " " < c <= "~")
    return plain or "?"


def sns_subject(text: str) -> str:
    """text as a Subject SNS accepts, whatever it holds: printable ASCII, whitespace runs (line
    breaks included) made one space, no leading space, at most 99 characters (a longer one is cut
    and ends in '...'; the message body keeps the whole text)."""
    flat = " ".join("".join(_ascii(ch) for ch in str(text)).split())
    if not flat:
        return "MotorGuard alert"
    if len(flat) > SNS_SUBJECT_MAX_CHARS:
        flat = flat[:SNS_SUBJECT_MAX_CHARS - len(_CUT)].rstrip() + _CUT
    return flat


def fit_utf8(text: str, limit: int) -> str:
    """text cut (at a character boundary, ending in '...') to at most limit bytes of UTF-8."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[:limit - len(_CUT)].decode("utf-8", "ignore") + _CUT


# ---------------------------------------------------------------- the de-duplication slot
PENDING, SENT = "pending", "sent"
# A claim holds while its invocation may still run: the invocation's remaining time plus this margin
# (clock differences between Lambda hosts). Lambda retries a failed asynchronous event a minute later
# at the earliest, by when a crashed invocation's claim has lapsed and the retry may take it over.
LEASE_MARGIN_S = 5


def claim_item(key: str, owner: str, now: float, lease_s: float) -> dict:
    """The state-table item of an alert being delivered. Its expiration (the table's TTL attribute,
    which the claim's condition also reads) is the end of the lease, not of the window: a claim
    whose invocation died lapses then, and DynamoDB's TTL removes it later."""
    return {"id": key, "state": PENDING, "owner": owner, "claimed_at": int(now),
            "expiration": int(now + lease_s) + 1}


def slot_verdict(item: dict | None, now: float) -> str:
    """"free" (no slot, or a lapsed one: claim it), "sent" (a page for this alert went out within
    the window: suppress), or "pending" (another invocation is delivering it right now)."""
    if not item or int(item.get("expiration", 0)) <= int(now):
        return "free"
    # A slot without a state was written before states existed, when a claim meant "sent".
    return PENDING if item.get("state") == PENDING else SENT
