"""The local rules engine's SQL against AWS IoT's documented behaviour
(docs.aws.amazon.com/iot/latest/developerguide: iot-sql-select, -from, -where, -operators,
-functions, -data-types). Each case names the rule it checks. The product's rules: tests/cloud/test_rules.py."""

from __future__ import annotations

import base64
import re

import pytest

from cloud.local.sql import UNDEFINED, Rule, SqlError, compile_template, Context, topic_matches

MSG = {"device": "m1", "event": "FAULT", "state": "FAULT", "temperature_c": 41.5, "current_a": 2.2,
       "reading": {"temp": 30, "nested": {"x": 5}}, "flag": True, "text": "TRUE", "nothing": None, "n": "12"}


def run(sql, msg=MSG, topic="devices/m1/events", clientid="m1"):
    return Rule(sql).apply(msg, topic=topic, clientid=clientid, now_ms=1700000000000)


# --- FROM: topic filters ----------------------------------------------------------------------
@pytest.mark.parametrize("flt, topic, expected", [
    ("devices/+/events", "devices/m1/events", True),
    ("devices/+/events", "devices/m1/telemetry", False),
    ("devices/+/events", "devices/m1/events/x", False),   # + is exactly one level
    ("devices/#", "devices/m1/events", True),
    ("devices/#", "devices", False),                      # AWS: 'a/#' does not match 'a'
    ("devices/m1/#", "devices/m1", False),
    ("#", "anything/at/all", True),
    ("devices/+", "devices/", True),                      # an empty level is a level
    ("a/b", "a/b", True),
    ("a/b", "a/B", False),                                # topics are case sensitive
])
def test_topic_filters(flt, topic, expected):
    assert topic_matches(flt, topic) is expected


@pytest.mark.parametrize("bad", ["devices/#/x", "devices/a+/b", "devices/#x"])
def test_bad_filters_refused_at_load(bad):
    with pytest.raises(SqlError):
        Rule("SELECT * FROM '%s'" % bad)


# --- SELECT --------------------------------------------------------------------------------------
def test_select_star_is_the_whole_message():
    assert run("SELECT * FROM 'devices/+/events'") == MSG


def test_select_fields_nested_paths_and_aliases():
    out = run("SELECT device, reading.nested.x AS x, reading.temp * 2 AS t2 FROM 'devices/+/events'")
    assert out == {"device": "m1", "x": 5, "t2": 60}


def test_undefined_fields_are_left_out_of_the_output():
    # "the key 'bar' returns Undefined ... when serialized to JSON, the results are Undefined" (omitted)
    out = run("SELECT device, missing, reading.nope AS deep, nothing FROM 'devices/+/events'")
    assert out == {"device": "m1", "nothing": None}  # null is a value; Undefined is not


def test_literals_and_null_keyword():
    out = run("SELECT 1 AS i, 2.5 AS d, 'it''s' AS s, true AS b, NULL AS n, 10.0 AS whole FROM 'a/#'", topic="a/b")
    assert out == {"i": 1, "d": 2.5, "s": "it's", "b": True, "n": None, "whole": 10}
    assert isinstance(out["whole"], int)  # SQL V2: whole-number decimals are Ints


def test_star_plus_functions():
    out = run("SELECT *, topic(2) AS thing, clientid() AS cid, timestamp() AS ts FROM 'devices/+/events'")
    assert out["thing"] == "m1" and out["cid"] == "m1" and out["ts"] == 1700000000000 and out["event"] == "FAULT"


# --- functions ---------------------------------------------------------------------------------------
def test_topic_function_is_one_based_and_undefined_out_of_range():
    assert run("SELECT topic(1) AS a, topic(3) AS c, topic(4) AS d, topic() AS t FROM '#'") == {
        "a": "devices", "c": "events", "t": "devices/m1/events"}
    assert run("SELECT topic(0) AS z FROM '#'") == {}


def test_isundefined():
    out = run("SELECT isUndefined(missing) AS a, isUndefined(device) AS b, isUndefined(nothing) AS c FROM '#'")
    assert out == {"a": True, "b": False, "c": False}


def test_parse_time_and_newuuid():
    out = run("SELECT parse_time('yyyy/MM/dd/HH', 1700000000000) AS p, newuuid() AS u FROM '#'")
    assert out["p"] == "2023/11/14/22"
    assert re.fullmatch(r"[0-9a-f-]{36}", out["u"])


def test_string_functions():
    assert run("SELECT lower(state) AS l, upper('x') AS u, concat(device, '-', state) AS c FROM '#'") == {
        "l": "fault", "u": "X", "c": "m1-FAULT"}
    # AWS IoT SQL reference > Functions > lower(String): a non-String argument is converted with the
    # standard conversion to String first, so a Decimal gives its text; Null has no String: Undefined.
    assert run("SELECT lower(temperature_c) AS l, upper(nothing) AS n FROM '#'") == {"l": "41.5"}


# --- WHERE and operators -----------------------------------------------------------------------------
@pytest.mark.parametrize("where, fires", [
    ("event = 'FAULT'", True),
    ("event = 'fault'", False),                        # string comparison is case sensitive
    ("event = 'FAULT' OR event = 'ESTOP'", True),
    ("event <> 'FAULT'", False),
    ("temperature_c > 40", True),
    ("temperature_c >= 41.5 AND current_a < 3", True),
    ("NOT (temperature_c > 40)", False),
    ("missing = 'x'", False),                          # Undefined = x is Undefined: does not fire
    ("missing <> 'x'", False),                         # ... and neither does its negation
    ("NOT missing", False),
    ("missing > 1 OR event = 'FAULT'", False),         # OR with an Undefined operand is Undefined
    ("flag", True),
    ("flag AND text", True),                           # "true"/"false" strings count as Booleans
    ("temperature_c AND flag", False),                 # a number is not a Boolean: Undefined
    ("n > 11", True),                                  # > converts numeric strings to Decimal
    ("state > 1", False),                              # non-numeric string: Undefined
    ("reading.temp = 30.0", True),                     # Int and Decimal compare numerically
    ("n = 12", False),                                 # = does not convert: String vs Int differ
    ("nothing = NULL", True),
    ("1 + 1 = 2", True),
    ("current_a * 10 > 21", True),
    ("reading.temp / 0 = 1", False),                   # division by zero: Undefined
    ("reading.temp % 7 = 2", True),
    ("7 / 2 = 3", True),                               # Int / Int is an Int
    ("-reading.temp < 0", True),
])
def test_where(where, fires):
    assert (run("SELECT device FROM 'devices/+/events' WHERE " + where) is not None) is fires


def test_where_cannot_see_select_aliases():
    assert run("SELECT event AS kind FROM '#' WHERE kind = 'FAULT'") is None


def test_non_matching_where_returns_none_and_matching_empty_select_is_empty():
    assert run("SELECT missing FROM '#' WHERE event = 'FAULT'") == {}


# --- refusals at load time ------------------------------------------------------------------------
@pytest.mark.parametrize("sql", [
    "SELECT * FROM 'a' GROUP BY device",
    "SELECT * FROM 'a' WHERE device IN ('x')",
    "SELECT * FROM 'a' WHERE device LIKE 'x%'",
    "SELECT CASE WHEN 1 = 1 THEN 1 END FROM 'a'",
    "SELECT sqrt(4) AS r FROM 'a'",
    "SELECT * FROM a",                  # the topic filter must be quoted
    "SELECT FROM 'a'",
    "SELECT * 'a'",
    "SELECT * FROM 'a' WHERE",
    "SELECT (SELECT 1) AS x FROM 'a'",
    "SELECT parse_time('EEE', 1) AS d FROM 'a'",
    "SELECT topic(1, 2) AS x FROM 'a'",
    "SELECT * FROM 'a' WHERE x = 1 extra",
    "SELECT VALUE x FROM 'a'",
    "SELECT * FROM 'a' WHERE event != 'FAULT'",   # the Operators page has <> only
])
def test_unsupported_or_invalid_sql_is_refused_at_load(sql):
    with pytest.raises(SqlError):
        Rule(sql)


def test_templates():
    render = compile_template("raw/${topic(2)}/${parse_time('yyyy/MM/dd/HH', timestamp())}/${missing}x.json")
    ctx = Context(MSG, "devices/m1/telemetry", "m1", now_ms=1700000000000)
    assert render(ctx) == "raw/m1/2023/11/14/22/x.json"
    with pytest.raises(SqlError):
        compile_template("${nope(}")


# --- Functions > encode(value, encodingScheme) ------------------------------------------------
def test_encode_star_is_the_whole_payload_as_published_json_or_not():
    rule = Rule("SELECT encode(*, 'base64') AS b, topic(2) AS thing FROM 'devices/+/telemetry'")
    published = b'{"device": "m1",  "n": 1.50}'  # spacing and digits as the device wrote them
    out = rule.apply({"device": "m1", "n": 1.5}, topic="devices/m1/telemetry", payload=published)
    assert out == {"b": base64.b64encode(published).decode(), "thing": "m1"}
    for raw in (b"\x00\xffbinary", b"", b"[1, 2]", b"NaN"):
        assert base64.b64decode(rule.apply({}, topic="devices/m1/telemetry", payload=raw)["b"]) == raw
    assert base64.b64decode(rule.apply({"a": [1, "x"]}, topic="devices/m1/telemetry")["b"]) == b'{"a":[1,"x"]}'


@pytest.mark.parametrize("expr, want", [
    ("text", "TRUE"), ("temperature_c", "41.5"), ("flag", "true"), ("reading.nested", '{"x":5}'),
    ("concat('é', 1)", "é1"),
    ("nothing", UNDEFINED), ("missing", UNDEFINED),  # Null and Undefined have no String form
])
def test_encode_of_a_value_encodes_its_string_conversion(expr, want):
    out = run("SELECT encode(%s, 'base64') AS e FROM 'devices/+/events'" % expr)
    assert out.get("e", UNDEFINED) == (want if want is UNDEFINED else base64.b64encode(want.encode()).decode())


@pytest.mark.parametrize("sql, why", [
    ("SELECT encode(*, 'hex') AS e FROM 'a'", "'base64'"),        # "currently, only 'base64' is supported"
    ("SELECT encode(*, scheme) AS e FROM 'a'", "literal"),
    ("SELECT encode(*) AS e FROM 'a'", "takes 2"),
    ("SELECT encode('x', *) AS e FROM 'a'", "first argument"),
    ("SELECT lower(*) AS e FROM 'a'", "first argument"),
    ("SELECT * FROM 'a' WHERE * = 1", "encode()'s first argument"),
])
def test_encode_misuse_is_refused_at_load(sql, why):
    with pytest.raises(SqlError, match=re.escape(why)):
        Rule(sql)


@pytest.mark.parametrize("sql, reads_json", [
    ("SELECT * FROM 'a'", True), ("SELECT *, topic(2) AS t FROM 'a'", True), ("SELECT lower(x) AS l FROM 'a'", True),
    ("SELECT a.b FROM 'a'", True), ("SELECT encode(*, 'base64') AS p, timestamp() AS t FROM 'a' WHERE x = 1", False),
    ("SELECT topic(2) AS t, concat('a', 'b') AS c FROM 'a'", False),
])
def test_a_rule_reads_json_when_its_select_has_star_or_an_attribute(sql, reads_json):
    """Working with binary payloads: a SELECT of functions only takes any payload."""
    assert Rule(sql).reads_json is reads_json
