"""Device messages for the cloud tests, built the way the firmware builds them (schema-valid)."""

import base64
import json
import time


def telemetry(device="m1", boot="0a0b0c0d", seq=0, n=30, t0=None, temp=30.0, current=0.8, step_ms=1000, dropped=0):
    t0 = int(time.time() * 1000) if t0 is None else t0
    return {"v": 1, "device": device, "boot": boot, "fw": "0.1.0", "uptime_s": 100, "heap_free": 20000, "rssi": -60,
            "seq": seq, "dropped": dropped,
            "samples": [{"time": t0 + i * step_ms, "temperature_c": round(temp + 0.1 * i, 1),
                         "current_a": current, "position": 90.0, "speed": 60, "state": "RUNNING"} for i in range(n)]}


def event(device="m1", kind="FAULT", boot="0a0b0c0d", seq=1, t=None, reason="overtemp_overcurrent", state=None):
    msg = {"v": 1, "device": device, "boot": boot, "fw": "0.1.0", "uptime_s": 100, "heap_free": 20000, "rssi": -60,
           "seq": seq, "dropped": 0, "time": int(time.time() * 1000) if t is None else t, "event": kind,
           "state": state or {"FAULT": "FAULT", "STARTED": "RUNNING"}.get(kind, "STOPPED"),
           "temperature_c": 41.5, "current_a": 2.2}
    if kind == "FAULT":
        msg["reason"] = reason
    return msg


def as_rule_output(msg, kind):
    """What the rules SELECT: the message plus thing, kind and received_ms."""
    return dict(msg, thing=msg["device"], kind=kind, received_ms=int(time.time() * 1000))


def as_original(msg, kind, thing=None, received_ms=None, raw=None):
    """What the shipped rules SELECT (cloud/rules.py ORIGINAL_PAYLOAD): the payload as published
    (raw, else msg as JSON) in base64, and the rule's thing, kind and received_ms."""
    raw = json.dumps(msg).encode() if raw is None else raw
    return {"payload_b64": base64.b64encode(raw).decode(), "thing": msg["device"] if thing is None else thing,
            "kind": kind, "received_ms": int(time.time() * 1000) if received_ms is None else received_ms}
