"""Hourly statistics per device, and the hour's raw archive."""

from __future__ import annotations

import datetime as _dt
import json

HOUR_MS = 3600 * 1000


def hour_of(ms: int) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).strftime("%Y-%m-%dT%H")


def hour_start_ms(hour: str) -> int:
    t = _dt.datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=_dt.timezone.utc)
    return int(t.timestamp() * 1000)


def previous_hour(now_ms: int) -> str:
    return hour_of(now_ms - HOUR_MS)


def stats(samples: list[dict]) -> dict:
    out = {"samples": len(samples)}
    for key, name in (("temperature_c", "temperature_c"), ("current_a", "current_a")):
        values = [s[key] for s in samples if s.get(key) is not None]
        if values:
            out[name] = {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 4)}
    return out


def archive_key(device: str, hour: str) -> str:
    d = _dt.datetime.strptime(hour, "%Y-%m-%dT%H")
    return "raw/%s/%04d/%02d/%02d/%02d.jsonl" % (device, d.year, d.month, d.day, d.hour)


def aggregate_key(device: str, hour: str) -> str:
    d = _dt.datetime.strptime(hour, "%Y-%m-%dT%H")
    return "aggregates/%s/%04d/%02d/%02d/%02d.json" % (device, d.year, d.month, d.day, d.hour)


def archive_body(payloads: list[dict]) -> bytes:
    return "".join(json.dumps(p, separators=(",", ":")) + "\n" for p in payloads).encode()
