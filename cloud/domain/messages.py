"""Validation of device messages against schemas/v1 (the files the firmware's tests also use),
with Powertools' validator (fastjsonschema), which the Powertools Lambda layer provides."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate

KINDS = {"telemetry": "telemetry", "events": "event", "status": "status", "ack": "ack", "cmd": "command"}
# The rules add these fields to what they SELECT; they are not the device's.
RULE_FIELDS = ("thing", "kind", "received_ms")


def schema_dir() -> Path:
    env = os.environ.get("MOTORGUARD_SCHEMA_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in (here.parents[2], here.parents[1]):  # the repo, or a Lambda asset with schemas/ beside cloud/
        if (base / "schemas" / "v1").is_dir():
            return base / "schemas" / "v1"
    raise FileNotFoundError("schemas/v1 not found; set MOTORGUARD_SCHEMA_DIR")


@functools.lru_cache(maxsize=None)
def schema(kind: str) -> dict:
    return json.loads((schema_dir() / (kind + ".schema.json")).read_text())


def device_part(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in RULE_FIELDS}


def problems(kind: str, message) -> str | None:
    """None when the message is valid, else the reason (one line)."""
    if not isinstance(message, dict):
        return "not a JSON object"
    try:
        validate(event=message, schema=schema(kind))
    except SchemaValidationError as e:
        return str(e.message if hasattr(e, "message") else e)[:300]
    return None
