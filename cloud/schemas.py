"""The message schemas (schemas/v1/*.schema.json): one place that the firmware's
tests and the cloud's ingest both validate against.

Two validators read these files: this one (jsonschema, every problem of a message, for the
firmware's tests and tools) and cloud/domain/messages.py (jsonschema-rs, the first problem, for
the Lambdas, which do not ship jsonschema). Ingest's one verdict is messages.check, which this
module re-exports as check; errors() applies the same structural bounds first, so neither
validator ever recurses into a hostile depth."""

import functools
import json
import pathlib

import jsonschema

from cloud.domain import messages

SCHEMA_DIR = pathlib.Path(__file__).resolve().parents[1] / "schemas" / "v1"
KINDS = ("telemetry", "event", "status", "command", "ack")
check = messages.check  # (kind, message, thing, received_ms[, bounds]) -> (ok, reason); never raises


@functools.lru_cache(maxsize=None)
def validator(kind):
    if kind not in KINDS:
        raise ValueError("unknown message kind %r (one of %s)" % (kind, ", ".join(KINDS)))
    schema = json.loads((SCHEMA_DIR / (kind + ".schema.json")).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def errors(kind, message):
    """Every problem with a message, as 'path: reason' lines (empty when valid)."""
    if isinstance(message, (dict, list)):
        bad = messages.structure_problem(message, messages.DEFAULT_BOUNDS.max_depth)
        if bad:
            return ["(root): " + bad]
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
