"""Conformance of the local rules engine's conversions, operators and functions with the AWS IoT SQL
reference (docs.aws.amazon.com/iot/latest/developerguide/), SQL version 2016-03-23.

Every case names the page and section it checks ("Data types > Conversions > To decimal", ...) and
the documented row, restated. Cases marked "no row" are ones the reference leaves open; the engine
gives Undefined for them (or refuses the rule at load), and the test pins that choice.

Operator cases run twice: once with literal operands (computed when the rule loads) and once with
the operands read from the message (computed per message), and both must agree.
"""

from __future__ import annotations

import re

import pytest

from cloud.local.sql import UNDEFINED, Context, Rule, SqlError, compile_template

U = UNDEFINED
NOW = 1700000000000
TOPIC = "devices/m1/events"


def value(expr, msg=None, topic=TOPIC):
    out = Rule("SELECT %s AS v FROM '#'" % expr).apply(msg or {}, topic=topic, clientid="m1", now_ms=NOW)
    return out.get("v", UNDEFINED)


def literal(v):
    """SQL text for a value, or None when it has no literal form (arrays, objects)."""
    if v is UNDEFINED:
        return "missing"
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return "'%s'" % v.replace("'", "''")
    return None


def strictly_equal(a, b):
    """Equal values of the same Python types (so the Int 3 is not the Decimal 3.0, nor True 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strictly_equal(a[k], b[k]) for k in a)
    return a == b


def check(result, expected):
    assert strictly_equal(result, expected), "got %r (%s), expected %r (%s)" % (
        result, type(result).__name__, expected, type(expected).__name__)


def binary(op, a, b):
    """a <op> b, evaluated from the message and, when both have literals, from literals."""
    msg = {k: v for k, v in (("l", a), ("r", b)) if v is not UNDEFINED}
    from_message = value("l %s r" % op, msg)
    la, lb = literal(a), literal(b)
    if la is not None and lb is not None:
        check(value("%s %s %s" % (la, op, lb)), from_message)
    return from_message


# ============================================================================ Data types

# Data types > Conversions > To decimal > String: parsed only when it matches
# ^-?\d+(\.\d+)?((?i)E-?\d+)?$ (e.g. "0", "-1.2", "5E-12"). Checked through the - operator, whose
# String/Int/Decimal row converts Strings this way, and abs() (its String row does too).
# A whole result is an Int (Data types > Supported data types > Decimal: SQL V2 processes whole
# numbers such as 10.0 as Ints).
@pytest.mark.parametrize("text, number", [
    ("0", 0),                  # To decimal > String: "0" is an example of a convertible string
    ("-1.2", -1.2),            # ... "-1.2"
    ("5E-12", 5e-12),          # ... "5E-12"
    ("5e-12", 5e-12),          # ... the E is case-insensitive ((?i)E)
    ("12", 12),                # digits: a whole number, so an Int (V2)
    ("-5.0", -5),              # a whole Decimal is an Int (V2)
    ("5E2", 500),              # 5E2 is the whole number 500: Int (V2)
    ("007", 7),                # \d+ allows leading zeros
    ("123456789012345678901234567890", 123456789012345678901234567890),  # Int: up to 34 digits, exact
])
def test_to_decimal_converts_number_strings(text, number):
    check(value("s - 0", {"s": text}), number)
    check(value("abs(s)", {"s": text}), abs(number))


@pytest.mark.parametrize("text", [
    " 5", "5 ", "\t5",         # To decimal > String: the pattern has no room for whitespace
    "5\n",                     # ... nor for a final newline ($ in Java does not allow one; Python's would)
    "+5",                      # ... only a minus sign is allowed
    ".5", "5.", "1.e3",        # ... digits are needed on both sides of the point
    "1e+5",                    # ... the exponent's sign can only be a minus
    "1E", "--5", "", "-",      # ... incomplete numbers
    "NaN", "Infinity", "0x10", "1_000", "1,5",  # not in the pattern (Python's float() accepts some of them)
    "\u0661\u0662",            # Arabic-Indic digits: \d in the pattern is ASCII only (Java's default)
    "five",
    "1E5000",                  # Data types > Decimal: magnitudes end at 9.999...E999
])
def test_to_decimal_refuses_other_strings(text):
    check(value("s - 0", {"s": text}), U)
    check(value("abs(s)", {"s": text}), U)
    check(value("s > 0", {"s": text}), U)


def test_whole_decimals_are_ints_in_sql_v2():
    # Data types > Supported data types > Decimal: with SQL V2, whole numbers such as 10.0 are Ints.
    check(value("10.0"), 10)                              # a literal
    check(value("t", {"t": 30.0}), 30)                   # an attribute of the message
    check(value("t / 2", {"t": 7.0}), 3)                  # 7.0 is the Int 7, so Int / Int (truncated)
    check(value("2.5 * 2"), 5)                            # a whole result
    check(value("t", {"t": 30.5}), 30.5)                  # not whole: a Decimal


# Data types > Conversions > To Boolean: Boolean kept; "true"/"false" in any case; every other
# String, Int, Decimal (only cast() maps numbers), Array, Object, Null, Undefined -> Undefined.
# Checked through NOT (Operators > NOT: its operand goes through this conversion).
@pytest.mark.parametrize("operand, negated", [
    (True, False), (False, True),           # To Boolean > Boolean: the original value
    ("true", False), ("FALSE", True), ("True", False),  # To Boolean > String: "true"/"false", case-insensitive
    ("yes", U), ("", U), (" true", U),      # To Boolean > String: other strings -> Undefined
    (1, U), (0, U), (1.5, U),               # To Boolean > Int / Decimal -> Undefined
    ([True], U), ({"a": True}, U),          # To Boolean > Array / Object -> Undefined
    (None, U), (U, U),                      # To Boolean > Null / Undefined -> Undefined
])
def test_to_boolean(operand, negated):
    msg = {} if operand is U else {"x": operand}
    check(value("NOT x", msg), negated)


# Data types > Conversions > To string: Int in standard notation; Decimal as text, possibly in
# scientific notation; Boolean "true"/"false" (lower case); String itself; Array and Object as JSON
# (strings quoted; numbers, Booleans, null not); Null and Undefined -> Undefined. Checked through
# + (Operators > +: with a String on one side, the other side gets this conversion).
@pytest.mark.parametrize("operand, text", [
    (5, "5"), (-12, "-12"),                                  # To string > Int
    (41.5, "41.5"), (-0.25, "-0.25"),                        # To string > Decimal
    (0.000001, "0.000001"), (1.5e-7, "1.5E-7"), (1.5e300, "1.5E+300"),  # ... scientific notation when tiny/huge
    (True, "true"), (False, "false"),                        # To string > Boolean: lower case
    ("Ab", "Ab"),                                            # To string > String: the original value
    ([1, "a", True, None, 2.5], '[1,"a",true,null,2.5]'),    # To string > Array: JSON, strings quoted
    ({"a": 1, "b": "x", "c": [False]}, '{"a":1,"b":"x","c":[false]}'),  # To string > Object: JSON
    ({"q": 'say "hi"'}, '{"q":"say \\"hi\\""}'),             # ... JSON escaping inside strings
    (None, U), (U, U),                                       # To string > Null / Undefined -> Undefined
])
def test_to_string(operand, text):
    msg = {} if operand is U else {"x": operand}
    check(value("'' + x", msg), text)


# ============================================================================ Operators

@pytest.mark.parametrize("a, b, expected", [
    (True, True, True), (True, False, False),            # AND > Boolean, Boolean: true if both are true
    ("TRUE", "true", True), ("true", False, False),      # AND > String/Boolean: "true"/"false" strings as Booleans
    (1, True, U), ("yes", True, U), (None, True, U),     # AND > Other value -> Undefined
    (False, U, U),                                       # AND > Other value (Undefined): no short-circuit row
    ([True], True, U),
])
def test_and(a, b, expected):
    check(binary("AND", a, b), expected)


@pytest.mark.parametrize("a, b, expected", [
    (True, False, True), (False, False, False),          # OR > Boolean, Boolean: true if either is true
    ("false", "FALSE", False), (False, "True", True),    # OR > String/Boolean: converted to Booleans
    (True, U, U), (True, 1, U), (True, "x", U),          # OR > Other value -> Undefined (even with a true side)
])
def test_or(a, b, expected):
    check(binary("OR", a, b), expected)


@pytest.mark.parametrize("op, a, b, expected", [
    (">", 2, 1, True), (">", 2.5, 3, False),             # > > Int/Decimal: compared as Decimals
    (">", "10", 9, True),                                # > > String/Int/Decimal: numeric strings are Decimals
    (">", "10", "9", True),                              # ... two Strings compare as numbers, not as text
    (">", "b", "a", U), (">", "abc", 1, U),              # ... a String that is not a number -> Undefined
    (">", " 5", 1, U),                                   # ... whitespace is not part of a number
    (">", True, False, U), (">", None, 1, U),            # > > Other value -> Undefined
    (">", [2], [1], U), (">", U, 1, U),
    (">=", 1, 1.0, True), (">=", "1.5", 1.5, True),      # >= rows: as for >
    (">=", 1, U, U),
    ("<", -1, "-0.5", True), ("<", 1, "x", U),           # < rows: as for >
    ("<", 0.1, 0.10000000000000001, False),              # ... equal Decimals are not less
    ("<=", "1e2", 100, True), ("<=", {"a": 1}, 1, U),    # <= rows: as for >
])
def test_ordering(op, a, b, expected):
    check(binary(op, a, b), expected)


@pytest.mark.parametrize("a, b, expected", [
    (1, 1, True), (1, 2, False),                         # = > Int, Int
    (1.5, 1.5, True), (1, 1.0, True), (2, 2.5, False),   # = > Decimal, Decimal: an Int is converted to Decimal
    ("a", "a", True), ("a", "A", False),                 # = > String, String: exact, case-sensitive
    ([1, "x"], [1, "x"], True), ([1, 2], [2, 1], False),  # = > Array, Array: same items, same order
    ([1], [1.0], True), ([True], [1], False),            # ... items compare by these same rules
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),          # = > Object, Object: key order unimportant
    ({"a": 1}, {"a": 2}, False), ({"a": 1}, {"a": 1, "b": 1}, False),
    ("a", U, U), (U, "a", U), (U, U, U),                 # = > Any value, Undefined -> Undefined
    ("1", 1, False), (True, "true", False),              # = > Mismatched types -> False (no conversion)
    (None, 0, False), ([1], 1, False), (1, True, False),
    (None, None, True),                                  # no = row for Null; <> says Null <> Null is False
    (True, True, True), (True, False, False),            # no Boolean row: the operator's description (equal -> true)
])
def test_equals(a, b, expected):
    check(binary("=", a, b), expected)
    # Operators > <>: the same rows negated (Mismatched types -> True, Null <> Null -> False), Undefined kept.
    check(binary("<>", a, b), U if expected is U else not expected)


@pytest.mark.parametrize("a, b, expected", [
    ("a", "b", "ab"),                                    # + > String, Any value: concatenation
    ("1", "2", "12"),                                    # ... even when both strings are numbers: no conversion
    ("1", 2, "12"), (2, "1", "21"),                      # + > String, Any / Any, String: the other side as a String
    ("a", True, "atrue"), ("a", 1.5, "a1.5"),            # ... by the standard conversion to String
    ("v", 1.5e-7, "v1.5E-7"),
    ("a", None, U), ("a", U, U), (U, "a", U),            # ... Null and Undefined have no String: Undefined
    (1, 2, 3), (-1, 1, 0),                               # + > Int, Int: an Int
    (1, 2.5, 3.5), (0.1, 0.2, 0.3),                      # + > Int/Decimal, Int/Decimal: a Decimal (34 digits)
    (1.5, 1.5, 3),                                       # ... a whole Decimal is an Int (V2)
    (10 ** 30, 1, 10 ** 30 + 1),                         # ... Ints stay exact
    (True, 1, U), (True, False, U), (None, 1, U),        # + > Other value -> Undefined
    (U, 1, U),
])
def test_plus(a, b, expected):
    check(binary("+", a, b), expected)


def test_plus_with_arrays_and_objects():
    # + > String, Any value: an Array or Object is converted to its JSON text; two Arrays -> Other value.
    check(value("s + a", {"s": "a", "a": [1, "x"]}), 'a[1,"x"]')
    check(value("o + s", {"s": "!", "o": {"k": None}}), '{"k":null}!')
    check(value("a + a", {"a": [1]}), U)


@pytest.mark.parametrize("op, a, b, expected", [
    ("-", 5, 3, 2), ("-", 3, 5, -2),                     # - > Int, Int: an Int
    ("-", 5.5, 0.5, 5), ("-", 0.3, 0.1, 0.2),            # - > Int/Decimal: a Decimal (whole -> Int)
    ("-", "5", 3, 2), ("-", "5.5", "0.5", 5),            # - > String/Int/Decimal: numeric strings converted
    ("-", "a", 1, U), ("-", True, 1, U), ("-", None, 1, U),  # ... otherwise Undefined
    ("*", 6, 7, 42),                                     # * > Int, Int
    ("*", 2.2, 1000, 2200),                              # * > Int/Decimal: 34-digit decimal, not binary floating point
    ("*", 1.1, 1.1, 1.21),
    ("*", "3", "4", 12), ("*", "x", 2, U), ("*", [2], 2, U),  # * > String/Int/Decimal, Other value
    ("/", 7, 2, 3), ("/", -7, 2, -3),                    # / > Int, Int: an Int (truncated toward zero)
    ("/", 10 ** 30 + 1, 1, 10 ** 30 + 1),                # ... exact for large Ints
    ("/", 2.5, 2, 1.25), ("/", 7.5, 2.5, 3),             # / > Int/Decimal: a Decimal (whole -> Int)
    ("/", 1, 3.5, 0.2857142857142857),
    ("/", "7", 2, 3.5),                                  # / > String/Int/Decimal: a Decimal, so not truncated
    ("/", 1, 0, U), ("/", 1.5, 0, U), ("/", "1", "0", U),  # no row for a zero divisor: Undefined
    ("/", "a", 1, U), ("/", False, 1, U),
    ("%", 7, 3, 1), ("%", -7, 3, -1), ("%", 7, -3, 1),   # % > Int, Int: an Int; sign of the dividend (no row: Java's)
    ("%", 7.5, 2, 1.5), ("%", "7", 2, 1),                # % > String/Int/Decimal: a Decimal (whole -> Int)
    ("%", 5, 0, U), ("%", True, 2, U), ("%", U, 2, U),   # zero divisor (no row), Other value -> Undefined
])
def test_arithmetic(op, a, b, expected):
    check(binary(op, a, b), expected)


@pytest.mark.parametrize("operand, expected", [
    (5, -5), (-2.5, 2.5), ("5", -5), ("-1.5", 1.5),      # no unary row: taken as 0 - x (the - table)
    ("a", U), (True, U), (None, U), (U, U),
])
def test_unary_minus(operand, expected):
    msg = {} if operand is U else {"x": operand}
    check(value("-x", msg), expected)


def test_select_and_where_examples_from_the_reference():
    # SELECT clause > example: (temperature - 32) * 5 / 9 with temperature 50 is 10; upper(color).
    out = Rule("SELECT (temperature - 32) * 5 / 9 AS celsius, upper(color) as my_color FROM 'topic/subtopic'").apply(
        {"color": "red", "temperature": 50}, topic="topic/subtopic")
    check(out, {"celsius": 10, "my_color": "RED"})
    # WHERE clause > example: temperature 40 is not > 50, so the actions do not run.
    rule = Rule("SELECT color AS my_color FROM 'topic/subtopic' WHERE temperature > 50 AND color <> 'red'")
    assert rule.apply({"color": "red", "temperature": 40}, topic="topic/subtopic") is None
    assert rule.apply({"color": "blue", "temperature": 60}, topic="topic/subtopic") == {"my_color": "blue"}


def test_double_quoted_text_is_a_string():
    # JSON extensions > get() examples compare with "myValue" and Functions examples pass "strings"
    # in double quotes: a double-quoted token is a String literal, not an attribute name.
    assert value('"FAULT"') == "FAULT"
    assert Rule("SELECT * FROM 'a' WHERE event = \"FAULT\"").apply({"event": "FAULT"}, topic="a") is not None


def test_only_boolean_true_fires_the_rule():
    # WHERE clause: the actions run when the condition is true. The page does not say that WHERE
    # converts, so the string "true", a number or Undefined do not fire.
    for cond, fires in (("flag", True), ("text", False), ("one", False), ("missing", False), ("NOT flag", False)):
        out = Rule("SELECT 1 AS x FROM 'a' WHERE " + cond).apply({"flag": True, "text": "true", "one": 1}, topic="a")
        assert (out is not None) is fires, cond


# ============================================================================ Functions

@pytest.mark.parametrize("operand, expected", [
    (-5, 5), (5, 5),                          # abs > Int: Int
    (-5.5, 5.5),                              # abs > Decimal: Decimal
    ("-5.123", 5.123), ("-5", 5),             # abs > String: the converted Decimal's absolute value (abs("-5.123"))
    ("x", U), (" 5", U),                      # abs > String that does not convert: Undefined
    (True, U), ([1], U), ({"a": 1}, U), (None, U), (U, U),  # abs > Boolean/Array/Object/Null/Undefined: Undefined
])
def test_abs(operand, expected):
    msg = {} if operand is U else {"x": operand}
    check(value("abs(x)", msg), expected)


@pytest.mark.parametrize("fn, operand, expected", [
    ("lower", "HELLO", "hello"), ("upper", "hello", "HELLO"),  # lower/upper: the String's lower/upper case
    ("lower", ["HELLO"], '["hello"]'),        # lower example: lower(["HELLO"]) is the text ["hello"]
    ("upper", ["hello"], '["HELLO"]'),        # upper example
    ("lower", 5, "5"), ("upper", True, "TRUE"), ("upper", 1.5e-7, "1.5E-7"),  # non-Strings: standard conversion first
    ("lower", {"K": "V"}, '{"k":"v"}'),
    ("lower", None, U), ("upper", U, U),      # no String for Null / Undefined: Undefined
])
def test_lower_upper(fn, operand, expected):
    msg = {} if operand is U else {"x": operand}
    check(value("%s(x)" % fn, msg), expected)


@pytest.mark.parametrize("args, msg, expected", [
    ("", {}, U),                                            # concat > 0 arguments: Undefined (example concat())
    ("a3, 4", {"a3": [1, 2, 3]}, [1, 2, 3, 4]),             # example: concat([1, 2, 3], 4)
    ("a3, 'hello'", {"a3": [1, 2, 3]}, [1, 2, 3, "hello"]),  # example: concat([1, 2, 3], "hello")
    ("'con', 'cat'", {}, "concat"),                         # example: concat("con", "cat")
    ("1, 'hello'", {}, "1hello"),                           # example: concat(1, "hello")
    ("'he', 'is', 'man'", {}, "heisman"),                   # example: concat("he","is","man")
    ("a3, 'hello', b3", {"a3": [1, 2, 3], "b3": [4, 5, 6]}, [1, 2, 3, "hello", 4, 5, 6]),  # example
    ("a, n", {"a": [1], "n": None}, [1, None]),             # 2+ with an Array: all the arguments, null included
    ("'x', true, 2.5, o", {"o": {"k": 1}}, 'xtrue2.5{"k":1}'),  # 2+ with a String: standard conversions
    ("1, 2", {}, U),                                        # no row for no Array and no String: Undefined
    ("'a', n", {"n": None}, U),                             # Null has no String form: Undefined
    ("'a', missing", {}, U), ("a, missing", {"a": [1]}, U),  # an Undefined argument: Undefined
])
def test_concat(args, msg, expected):
    check(value("concat(%s)" % args, msg), expected)


@pytest.mark.parametrize("operand, expected", [
    (5, False), (1.5, False), (True, False), ("x", False),  # isUndefined > Int/Decimal/Boolean/String: false
    ([1], False), ({"a": 1}, False), (None, False),         # isUndefined > Array/Object/Null: false
    (U, True),                                              # isUndefined > Undefined: true
])
def test_isundefined(operand, expected):
    msg = {} if operand is U else {"x": operand}
    check(value("isUndefined(x)", msg), expected)
    check(value("isUndefined(1 / 0)"), True)  # a zero divisor is Undefined (see test_arithmetic)


@pytest.mark.parametrize("arg, msg, expected", [
    ("", {}, "devices/m1/events"),                  # topic(): the whole topic
    ("1", {}, "devices"), ("3", {}, "events"),      # topic(n): levels counted from 1
    ("'2'", {}, "m1"),                              # a String argument converts to Decimal
    ("n", {"n": 2}, "m1"), ("n", {"n": "3"}, "events"),
    ("4", {}, U), ("0", {}, U), ("-1", {}, U),      # no row for a level that does not exist: Undefined
    ("1.5", {}, U), ("'x'", {}, U), ("true", {}, U), ("n", {}, U),  # no row for non-whole/non-numbers: Undefined
])
def test_topic(arg, msg, expected):
    check(value("topic(%s)" % arg, msg), expected)


def test_clientid_timestamp_newuuid():
    # clientid(): the publishing client's id; timestamp(): the engine's time in epoch ms;
    # newuuid(): a random 16-byte UUID as text.
    assert value("clientid()") == "m1"
    check(value("timestamp()"), NOW)
    a, b = value("newuuid()"), value("newuuid()")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", a) and a != b


@pytest.mark.parametrize("args, msg, expected", [
    ("'yyyy-MM-dd HH:mm:ss.SSS', 1700000000123", {}, "2023-11-14 22:13:20.123"),  # Joda fields, UTC by default
    ("'yyyy/MM/dd/HH', t", {"t": 1700000000000}, "2023/11/14/22"),
    # the page's example (100000000 ms in America/Belize), without its G and z fields:
    ("'yyyy.MM.dd ''at'' HH:mm:ss', 100000000, 'America/Belize'", {}, "1970.01.01 at 21:46:40"),
    ("\"yyyy-MM-dd'T'HH:mm\", t, 'UTC'", {"t": 1700000000000}, "2023-11-14T22:13"),  # quoted literal text
    ("\"HH 'o''clock'\", t", {"t": 1700000000000}, "22 o'clock"),  # '' inside quotes is a quote
    ("'yyyy', t", {"t": "1700000000000"}, "2023"),  # the time converts as To int (a String: parsed)
    ("'SSS', t", {"t": "1700000000123.9"}, "123"),   # To int > String: the decimal places truncated
    ("'SSS', t", {"t": 1700000000123.6}, "124"),     # To int > Decimal: rounded to the nearest Int
    ("'yyyy', t", {"t": "soon"}, U), ("'yyyy', t", {"t": None}, U), ("'yyyy', t", {}, U),
    ("'yyyy', t", {"t": True}, U), ("'yyyy', t", {"t": 10 ** 20}, U),  # no calendar date that far: Undefined
])
def test_parse_time(args, msg, expected):
    check(value("parse_time(%s)" % args, msg), expected)


def test_templates_write_values_as_strings():
    # Substitution templates: expressions on the incoming message, written by the To string conversion;
    # Data types > Undefined: serialized by itself it is the empty string.
    render = compile_template("${t}|${r}|${missing}|${flag}|${concat('a', topic(2))}|${0.1 + 0.2}")
    ctx = Context({"t": 41.5, "r": {"a": [1, "x"]}, "flag": True}, TOPIC, "m1", now_ms=NOW)
    assert render(ctx) == '41.5|{"a":[1,"x"]}||true|am1|0.3'


# ============================================================================ refused at load

@pytest.mark.parametrize("sql, why", [
    ("SELECT * FROM 'a' WHERE x != 1", "<>"),                       # Operators: <> only
    ("SELECT * FROM 'a' WHERE x IN (1, 2)", "IN"),
    ("SELECT * FROM 'a' WHERE 1 < x < 3", "chained"),
    ("SELECT {'a': 1} AS o FROM 'a'", "object"),                    # Literals: not implemented locally
    ("SELECT [1, 2] AS a FROM 'a'", "array"),
    ("SELECT x + 1 FROM 'a'", "AS"),                                 # an unnamed expression's key is not documented
    ("SELECT topic(2) FROM 'a'", "AS"),
    ("SELECT concat(x) AS c FROM 'a'", "single argument"),          # concat: table and example disagree
    ("SELECT get(x, 'k') AS g FROM 'a'", "not supported"),          # functions not implemented locally
    ("SELECT cast(x AS Int) AS g FROM 'a'", "AS"),
    ("SELECT lower() AS l FROM 'a'", "takes 1"),                    # wrong argument counts
    ("SELECT abs(1, 2) AS l FROM 'a'", "takes 1"),
    ("SELECT parse_time(f, 1) AS t FROM 'a'", "literal pattern"),
    ("SELECT parse_time('yyyy', 1, z) AS t FROM 'a'", "literal time zone"),
    ("SELECT parse_time('EEE', 1) AS t FROM 'a'", "'EEE'"),
    ("SELECT parse_time('yy', 1) AS t FROM 'a'", "'yy'"),
    ("SELECT parse_time(\"yyyy 'x\", 1) AS t FROM 'a'", "unterminated"),
    ("SELECT parse_time('yyyy', 1, 'Mars/Olympus') AS t FROM 'a'", "time zone"),
    ("SET @x = 1 SELECT * FROM 'a'", "SET"),
    ("SELECT * FROM \"a\"", "single quotes"),                       # FROM: the filter is in single quotes
    ("SELECT 1e5000 AS big FROM 'a'", "Decimal range"),
])
def test_refused_at_load_with_a_reason(sql, why):
    with pytest.raises(SqlError, match=re.escape(why)):
        Rule(sql)
