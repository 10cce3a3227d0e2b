"""The one validator and verdict (cloud/domain/messages.py): any Python value is a reason, never an
exception; every problem of a message as 'path: reason' lines; the bounds from the environment."""

from __future__ import annotations

import json
import time

import pytest

from cloud.domain import delivery, messages

from adversarial import nested
from messages import event, telemetry

NOW = int(time.time() * 1000)


def test_python_values_no_validator_can_take_are_reasons_too():
    for value in (nested(100_000), {"samples": nested(5000)}, {"fw": "\ud800"}, {"v": float("nan")},
                  {"seq": 10 ** 400}, {1: 2}, {"samples": [{"time": object()}]}):
        ok, why = messages.check("telemetry", value, "m1", NOW)
        assert not ok and messages.code_of(why) in messages.CODES, why
        assert messages.problems("telemetry", value) is not None  # what the API and the alert Lambda call
    seen = delivery.inspect_event(dict(thing="m1", kind="events", v=nested(3000)), NOW)
    assert not seen.ok and seen.reason == "too_deep: values nest more than 8 deep"
    assert messages.errors("telemetry", {"samples": nested(5000)}) == ["(root): too_deep: values nest more than 8 deep"]


def test_bounds_come_from_the_environment_with_defaults_in_one_place():
    b = messages.bounds_from({"TIME_MAX_AHEAD_S": "3600", "TIME_NOT_BEFORE": "2024-06-01", "MAX_DEPTH": "4",
                              "MAX_PAYLOAD_BYTES": "not a number"})
    assert b == messages.DEFAULT_BOUNDS._replace(max_ahead_ms=3_600_000, not_before_ms=1_717_200_000_000, max_depth=4)
    assert messages.bounds_from({}) == messages.Bounds(131072, 8, 300_000, 1_577_836_800_000)
    later = json.dumps(telemetry(t0=NOW + 1_800_000)).encode()
    assert delivery.inspect_payload(later, "m1", "telemetry", NOW, b).ok
    assert not delivery.inspect_payload(later, "m1", "telemetry", NOW).ok


def test_errors_name_every_problem_of_a_message_by_path():
    msg = telemetry(n=20)
    del msg["seq"]
    msg["rssi"] = 4
    msg["samples"][12]["state"] = "DANCING"
    msg["samples"][3]["current_a"] = "high"
    found = messages.errors("telemetry", msg)
    assert [line.split(": ", 1)[0] for line in found] == ["(root)", "rssi", "samples/3/current_a", "samples/12/state"]
    assert '"seq"' in found[0] and "DANCING" in found[3], found
    assert messages.problems("telemetry", msg) in found, "the first problem is one of them"
    with pytest.raises(ValueError, match="invalid telemetry message: .*rssi.*DANCING"):
        messages.validate("telemetry", msg)


def test_valid_messages_have_no_errors_and_an_unknown_kind_is_refused():
    for kind, msg in (("telemetry", telemetry()), ("event", event()), ("event", event(kind="STARTED"))):
        assert messages.errors(kind, msg) == [] and messages.validate(kind, msg) is msg
    assert messages.errors("event", dict(event(), reason=None)) != []  # a FAULT must say why
    with pytest.raises(ValueError, match="unknown message kind 'events'"):
        messages.errors("events", event())  # the topic kind is not the message kind
    assert messages.problems("events", event()).startswith("cannot be validated"), "problems() never raises"
