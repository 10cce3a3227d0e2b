"""The message schemas (schemas/v1/*.schema.json): one place that the firmware's
tests and the cloud's ingest both validate against."""

import functools
import json
import pathlib

import jsonschema

SCHEMA_DIR = pathlib.Path(__file__).resolve().parents[1] / "schemas" / "v1"
KINDS = ("telemetry", "event", "status", "command", "ack")


@functools.lru_cache(maxsize=None)
def validator(kind):
    if kind not in KINDS:
        raise ValueError("unknown message kind %r (one of %s)" % (kind, ", ".join(KINDS)))
    schema = json.loads((SCHEMA_DIR / (kind + ".schema.json")).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def errors(kind, message):
    """Every problem with a message, as 'path: reason' lines (empty when valid)."""
    out = []
    for err in sorted(validator(kind).iter_errors(message), key=lambda e: list(e.path)):
        path = "/".join(str(p) for p in err.path) or "(root)"
        out.append("%s: %s" % (path, err.message))
    return out


def validate(kind, message):
    problems = errors(kind, message)
    if problems:
        raise ValueError("invalid %s message: %s" % (kind, "; ".join(problems)))
    return message
