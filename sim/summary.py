"""The run's summary: what the devices counted (sim/device.py Counters, summed over the workers), what
Locust measured (handshake, PUBACK and device-to-storage times), and, added by python -m sim, what the
cloud stored. One dict; `human()` prints it for a person, --json as it is."""

from __future__ import annotations

TELEMETRY_TABLE = "motorguard-telemetry"  # cloud/resources.py TABLES["telemetry"]
EVENTS_TABLE = "motorguard-events"
CONNECT = ("connect", "mTLS handshake + CONNACK")
STORAGE = ("storage", "device-to-storage telemetry")


def telemetry_key(thing: str, first_ms: int, boot: str, seq: int) -> dict:
    """The telemetry table's key of a message (cloud/domain/history.py sort_key: first sample, boot, seq)."""
    return {"device": {"S": thing}, "sk": {"S": "%013d#%s#%010d" % (int(first_ms), boot, int(seq))}}


def _times(entry) -> dict:
    if entry is None or not entry.num_requests:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "failures": entry.num_failures if entry else 0}
    return {"n": entry.num_requests, "p50_ms": entry.get_response_time_percentile(0.5),
            "p99_ms": entry.get_response_time_percentile(0.99), "failures": entry.num_failures}


def _merged(entries) -> dict:
    """p50/p99 over several Locust entries at once (every PUBACK, whatever the kind): their
    response-time histograms added up, as Locust adds up its own "Aggregated" row."""
    from locust.stats import calculate_response_time_percentile

    times, n = {}, 0
    for e in entries:
        n += e.num_requests
        for ms, count in e.response_times.items():
            times[ms] = times.get(ms, 0) + count
    if not n:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    return {"n": n, "p50_ms": calculate_response_time_percentile(times, n, 0.5),
            "p99_ms": calculate_response_time_percentile(times, n, 0.99)}


def from_locust(environment, counters: dict) -> dict:
    stats = environment.stats
    connect = stats.entries.get((CONNECT[1], CONNECT[0]))
    span = None
    if counters.get("first_connect") and counters.get("handshakes", 0) > 1:
        span = max(1e-3, counters["last_connect"] - counters["first_connect"])
    total = stats.total
    elapsed = max(1e-3, (total.last_request_timestamp or 0) - total.start_time) if total.num_requests else None
    pubacks = sum(e.num_requests for (name, kind), e in stats.entries.items() if kind == "PUBACK")
    return {
        "counters": counters,
        "connect": _times(connect),
        "handshakes_per_s": round((counters["handshakes"] - 1) / span, 1) if span else None,
        "puback": {kind_name: _times(e) for (kind_name, kind), e in stats.entries.items() if kind == "PUBACK"},
        "puback_all": _merged([e for (_name, kind), e in stats.entries.items() if kind == "PUBACK"]),
        "messages_per_s": round(pubacks / elapsed, 1) if elapsed else None,
        "storage": _times(stats.entries.get((STORAGE[1], STORAGE[0]))),
        "errors": {"%s %s" % (e.method, e.name): e.occurrences for e in stats.errors.values()},
    }


def human(s: dict) -> str:
    c = s["counters"]
    lines = [
        "devices %d (target %s), connected at the end %d, workers %s" % (
            c.get("devices", 0), s.get("target_devices", "?"), c.get("connected_at_stop", c.get("connected", 0)),
            c.get("workers", 1)),
        "handshakes %d (%s/s), connect failures %d, sessions lost %d, reconnects %d" % (
            c.get("handshakes", 0), s.get("handshakes_per_s"), c.get("connect_failures", 0), c.get("sessions_lost", 0),
            c.get("reconnects", 0)),
        "telemetry made %d acked %d, events made %d acked %d (FAULT %d), commands %d acks %d, retransmissions %d" % (
            c.get("telemetry_made", 0), c.get("telemetry_acked", 0), c.get("events_made", 0), c.get("events_acked", 0),
            c.get("faults", 0), c.get("commands", 0), c.get("acks_acked", 0), c.get("retransmissions", 0)),
        "messages/s %s; connect p50 %s ms p99 %s ms" % (s.get("messages_per_s"), s["connect"]["p50_ms"],
                                                      s["connect"]["p99_ms"]),
    ]
    for kind, t in sorted(s.get("puback", {}).items()):
        lines.append("PUBACK %s: n=%d p50 %s ms p99 %s ms" % (kind, t["n"], t["p50_ms"], t["p99_ms"]))
    st = s.get("storage") or {}
    if st.get("n"):
        lines.append("device-to-storage: n=%d p50 %s ms p99 %s ms" % (st["n"], st["p50_ms"], st["p99_ms"]))
    if "stored" in s:
        lines.append("stored telemetry %d events %d; lost %d" % (s["stored"]["telemetry"], s["stored"]["events"],
                                                                 s["lost"]))
    if "alerts" in s:
        lines.append("alerts delivered %d for %d devices with a FAULT" % (s["alerts"]["delivered"], s["alerts"]["devices"]))
    for k, v in sorted((s.get("resources") or {}).items()):
        lines.append("%s: %s" % (k, v))
    if s.get("errors"):
        lines.append("errors: " + "; ".join("%s x%d" % kv for kv in s["errors"].items()))
    return "\n".join(lines)
