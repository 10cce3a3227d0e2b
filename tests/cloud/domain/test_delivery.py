"""The verdict on what the rules deliver (cloud/domain/delivery.py, applying messages.check): no
payload makes it raise, each reject says precisely why, the topic is the identity, valid messages
pass at every bound."""

from __future__ import annotations

import json
import time

import pytest

from cloud.domain import delivery, messages

from adversarial import deep, nested, original
from messages import as_rule_output, event, telemetry

NOW = int(time.time() * 1000)


NASTY = [b"", b" \n", b"\xff\xfe", b"\xef\xbb\xbf{}", b'{"a": NaN}', b"[Infinity]", b"-Infinity", b"1e999",
         b'{"a": "\\ud800"}', b"\xed\xa0\x80", deep(1025), deep(100_000), deep(5000, b'{"a":', b"}"), b"{" * 70_000,
         b'{"v": 1} trailing', b"null", b"true", b"[]", b"{}", b'"x"', b"0" * 200_000, b'{"v":' + b"9" * 5000 + b"}"]


@pytest.mark.parametrize("raw", NASTY, ids=range(len(NASTY)))
def test_no_payload_makes_the_verdict_raise_and_each_has_a_known_reason(raw):
    for body in (original(raw), raw.decode("utf-8", "replace"), json.dumps({"thing": "m1", "kind": "telemetry",
                                                                              "v": raw.decode("latin-1")})):
        seen = delivery.inspect_body(body, NOW)
        assert not seen.ok and messages.code_of(seen.reason) in messages.CODES[:-2], seen.reason
    seen = delivery.inspect_payload(raw, "m1", "telemetry", NOW)
    assert not seen.ok and seen.original == raw and seen.source == "original"



@pytest.mark.parametrize("raw, why", [
    (b"", "not_json: empty payload"),
    (b'{"v": 1,', "not_json: unexpected end of data"),
    (json.dumps(telemetry()).replace('"current_a": 0.8', '"current_a": NaN', 1).encode(),
     "not_json: NaN or Infinity is not a JSON number (RFC 8259)"),
    (b"[1, 2]", "not_object: the payload is a JSON array, not an object"),
    (b'"m1"', "not_object: the payload is a JSON string, not an object"),
    (deep(2000), "too_deep: nested past the parser's limit"),
    (json.dumps(dict(telemetry(), fw=nested(9))).encode(), "too_deep: values nest more than 8 deep"),
    (json.dumps(dict(telemetry(), fw="x" * 140_000)).encode(), "too_large: "),
    (json.dumps(dict(telemetry(), thing="m1")).encode(), "identity: the payload sets thing, which the rule sets"),
    (json.dumps(dict(telemetry(), payload_b64="e30=")).encode(), "identity: the payload sets payload_b64"),
    (json.dumps(telemetry(device="m2")).encode(), "identity: device 'm2' published on 'm1''s topic"),
    (json.dumps(dict(telemetry(), seq=10 ** 10)).encode(), "schema: seq: 10000000000 does not fit"),
    (json.dumps(dict(telemetry(), heap_free=2 ** 53 + 1)).encode(), "schema: heap_free: a number beyond +-2^53"),
    (json.dumps(telemetry(temp=1e300)).encode(), "schema: samples/0/temperature_c: a number beyond +-2^53"),
    (json.dumps(dict(telemetry(), rssi=5)).encode(), "schema: rssi: 5 is greater than the maximum of 0"),
    (json.dumps(telemetry(t0=NOW + 301_000)).encode(), "time: "),
    (json.dumps(telemetry(t0=1_577_836_799_000)).encode(), "time: 2019-12-31T23:59:59Z is before 2020-01-01"),
])
def test_each_reject_says_precisely_why(raw, why):
    seen = delivery.inspect_payload(raw, "m1", "telemetry", NOW)
    assert not seen.ok and seen.reason.startswith(why), seen.reason


@pytest.mark.parametrize("thing, kind, why", [
    ("", "telemetry", "identity: no thing in the topic"), (None, "telemetry", "identity: no thing in the topic"),
    ("bad name", "telemetry", "identity: invalid thing name 'bad name'"),
    ("x" * 129, "telemetry", "identity: invalid thing name"), ("m\u00e9", "telemetry", "identity: invalid thing"),
    ("m1", "status", "identity: topic kind 'status' is neither telemetry nor events"),
])
def test_the_topic_is_the_identity(thing, kind, why):
    seen = delivery.inspect_body(original(json.dumps(telemetry()).encode(), thing, kind), NOW)
    assert not seen.ok and seen.reason.startswith(why), seen.reason


def test_valid_messages_pass_at_every_bound():
    edge = telemetry(t0=NOW + 299_000 - 29_000)  # the last sample 299 s ahead of the receive time
    assert delivery.inspect_payload(json.dumps(edge).encode(), "m1", "telemetry", NOW).ok
    assert delivery.inspect_payload(json.dumps(telemetry(t0=1_577_836_800_000)).encode(), "m1", "telemetry", NOW).ok
    big = json.dumps(dict(telemetry(n=600, t0=NOW - 700_000), heap_free=2 ** 53)).encode()
    seen = delivery.inspect_payload(big, "m1", "telemetry", NOW)
    assert seen.ok and seen.raw == big.decode() and len(big) < 128 * 1024
    assert delivery.inspect_event(as_rule_output(event(), "events"), NOW).ok
