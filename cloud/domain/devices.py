"""A device as the API shows it: its row, its latest reading, the state now, whether it is online and
on what ground, and its latched alert. Pure: the API (cloud/lambdas/api.py) reads the rows and the
latest batch and hands them here."""

from __future__ import annotations

ONLINE_BATCHES = 3  # without a status message: online while the last telemetry is this many batches old at most


def online_of(status, batch, now_ms):
    """Online or offline, and on what ground: the device's own status message (its connect, or its
    Will when the connection died) when the cloud has one, else whether its newest telemetry is
    recent for its own batch period (None: nothing to tell from)."""
    if status is not None and isinstance(status.get("online"), bool):
        return status["online"], "status"
    if len(batch) >= 2:
        period = (batch[-1]["time"] - batch[0]["time"]) / (len(batch) - 1) * len(batch)
        return now_ms - batch[-1]["time"] <= ONLINE_BATCHES * max(period, 1000), "telemetry"
    return None, "unknown"


def view(d: dict, batch: list, status, now_ms: int) -> dict:
    """d (a device row, as plain values) with latest_sample, state_now and state_since_ms, last_seen_ms,
    online and online_from, and alert."""
    d["latest_sample"] = batch[-1] if batch else None
    # The state now: the newer of the last event's and the last sample's (a FAULT's event comes at
    # once, the samples of the same moment up to a batch later).
    sample = d["latest_sample"]
    if sample and sample["time"] >= (d.get("last_event_ms") or 0):
        d["state_now"], d["state_since_ms"] = sample["state"], sample["time"]
    else:
        d["state_now"], d["state_since_ms"] = d.get("state"), d.get("last_event_ms")
    seen = [t for t in (d.get("last_event_ms"), batch[-1]["time"] if batch else None) if t]
    d["last_seen_ms"] = max(seen) if seen else None
    d["online"], d["online_from"] = online_of(status, batch, now_ms)
    d["alert"] = {"event": "FAULT", "reason": d.get("reason") or None, "since_ms": d.get("last_event_ms")} \
        if d.get("state") == "FAULT" else None
    return d
