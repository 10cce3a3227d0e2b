"""AWS IoT SQL values and the standard conversions between them (2016-03-23).

Source: AWS IoT SQL reference > Data types (iot-sql-data-types), its "Supported data types" table
and its "Conversions" tables (to Decimal, to Int, to Boolean, to String).

How the SQL types are held in Python here:

    Int        int (never bool)             Boolean    bool
    Decimal    float (IEEE double)          String     str
    Array      list                         Object     dict
    Null       None                         Undefined  UNDEFINED (this module)

AWS keeps a Decimal to 34 significant digits; the engine receives payloads already parsed to doubles
(orjson), so a Decimal is a double here. Operators on Decimals compute in 34-digit decimal
arithmetic (the context below) and round the result back to a double, so 0.1 + 0.2 is 0.3 and
2.2 * 1000 is the Int 2200, as in AWS, though digits past a double's ~17 are lost between steps.
SQL V2 (2016-03-23) treats a whole-number Decimal such as 10.0 as the Int 10: `whole` does that.
"""

from __future__ import annotations

import decimal
import json
import re


class SqlError(ValueError):
    """The statement is not valid, or uses SQL this engine does not support."""


class _Undefined:
    """Not a value: a missing attribute, or what a function or operator gives for arguments it cannot take."""

    __slots__ = ()

    def __repr__(self):
        return "Undefined"

    def __bool__(self):
        return False

    def __reduce__(self):
        return (_undefined, ())


def _undefined():
    return UNDEFINED


UNDEFINED = _Undefined()

# The Decimal type's limits (Data types > Supported data types > Decimal): 34 digits of precision,
# magnitudes from 1E-999 to 9.999...E999. Overflow, division by zero and invalid operations raise,
# and the operators turn that into Undefined.
DECIMAL = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN, Emax=999, Emin=-999,
                          traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])
DECIMAL_ERRORS = (decimal.DecimalException, ValueError, OverflowError)
_INT_LIMIT = 10 ** 34  # Int: at most 34 digits
_D = decimal.Decimal

# Conversions > To decimal > String: only strings of this form are numbers: an optional minus sign,
# digits, optionally a point followed by digits, optionally E or e, an optional minus and digits. So
# no plus sign, no leading or trailing whitespace, no ".5" or "5.", no "E+3", no "NaN"/"Infinity".
# [0-9] rather than \d (which in Python also matches non-ASCII digits) and fullmatch rather than $
# (which in Python also matches before a final newline).
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE]-?[0-9]+)?")


def kind(v) -> str:
    """The SQL type name of a Python value: Int, Decimal, Boolean, String, Array, Object, Null, Undefined."""
    t = _KINDS.get(type(v))
    if t is not None:
        return t
    if v is UNDEFINED:
        return "Undefined"
    for cls, name in ((bool, "Boolean"), (int, "Int"), (float, "Decimal"), (str, "String"), (list, "Array"),
                      (tuple, "Array"), (dict, "Object")):
        if isinstance(v, cls):
            return name
    raise TypeError("no AWS IoT SQL type for %r" % type(v).__name__)


_KINDS = {int: "Int", float: "Decimal", bool: "Boolean", str: "String", list: "Array", dict: "Object",
          type(None): "Null", _Undefined: "Undefined"}


def is_number(v) -> bool:
    """Int or Decimal (a bool is neither)."""
    t = type(v)
    return t is int or t is float or (isinstance(v, (int, float)) and not isinstance(v, bool))


def whole(v):
    """SQL V2: a Decimal holding a whole number is the Int of that number (10.0 -> 10)."""
    if type(v) is float and v.is_integer() and -_INT_LIMIT < v < _INT_LIMIT:
        return int(v) if -9007199254740992.0 <= v <= 9007199254740992.0 else int(_D(repr(v)))
    return v


def from_decimal(d):
    """A decimal.Decimal result as the engine's value: a double, and an Int when that double is a whole
    number (V2); Undefined when it is outside what a double can hold (overflow, or a non-zero value
    that would round to 0)."""
    f = float(d)
    if f.is_integer():
        if -9007199254740992.0 <= f <= 9007199254740992.0:
            return int(f)
        if -_INT_LIMIT < d < _INT_LIMIT and d == d.to_integral_value():
            return int(d)  # a large whole number, kept exact
        return whole(f)
    if f != f or f == _INF or f == -_INF or (f == 0.0 and d != 0):
        return UNDEFINED
    return f


_INF = float("inf")


def to_decimal_value(v):
    """A number as decimal.Decimal for 34-digit arithmetic (a double through its shortest repr)."""
    return _D(v) if type(v) is int else _D(repr(v))


def parse_number(s: str):
    """Conversions > To decimal > String: the number a string spells (Int when whole, V2), else Undefined."""
    m = _NUMBER.fullmatch(s)
    if m is None:
        return UNDEFINED
    if m.group(1) is None and m.group(2) is None and len(s) <= 34:
        return int(s)
    try:
        return from_decimal(DECIMAL.create_decimal(s))
    except DECIMAL_ERRORS:
        return UNDEFINED


def to_number(v):
    """Conversions > To decimal, as operators and numeric functions use it: Int and Decimal are kept,
    a String is parsed (parse_number), everything else is Undefined. (The table maps Null to Null,
    but every operator and implemented function that converts has Undefined for a Null operand.)"""
    t = type(v)
    if t is int or t is float:
        return v
    if t is str:
        return parse_number(v)
    if isinstance(v, str):
        return parse_number(str(v))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    return UNDEFINED


def to_int(v):
    """Conversions > To int: Int kept; a Decimal rounded to the nearest Int (the table does not say
    which way a half goes: half away from zero here); a String parsed as a Decimal and then truncated
    (the table's own words: truncates the decimal places); Null -> Null; everything else Undefined."""
    if v is None:
        return None
    t = type(v)
    if t is str or isinstance(v, str):
        n = parse_number(v)
        if type(n) is float:
            return int(n)  # int() truncates toward zero
        return n
    if t is int:
        return v
    if t is float:
        try:
            return int(to_decimal_value(v).to_integral_value(rounding=decimal.ROUND_HALF_UP))
        except DECIMAL_ERRORS:
            return UNDEFINED
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return to_int(int(v) if isinstance(v, int) else float(v))
    return UNDEFINED


def to_bool(v):
    """Conversions > To Boolean: a Boolean is kept; the strings "true"/"false" in any case are the
    Booleans; every other value (numbers included: only cast() maps numbers) is Undefined."""
    if v is True or v is False:
        return v
    if isinstance(v, str):
        low = v.lower()
        if low == "true":
            return True
        if low == "false":
            return False
    return UNDEFINED


def to_string(v):
    """Conversions > To string: Int in plain notation; Decimal as text, in scientific notation for
    very large or small magnitudes; Boolean as "true"/"false"; a String as itself; Array and Object
    as compact JSON (strings quoted; numbers, Booleans and null not); Null and Undefined -> Undefined."""
    t = type(v)
    if t is str:
        return v
    if t is int:
        return str(v)
    if t is bool:
        return "true" if v else "false"
    if t is float:
        return decimal_text(v)
    if v is None or v is UNDEFINED:
        return UNDEFINED
    if isinstance(v, (list, tuple, dict)):
        return json_text(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return decimal_text(float(v))
    return UNDEFINED


def decimal_text(f: float) -> str:
    """A Decimal as text. Whole numbers are Ints (V2). Otherwise the decimal number's text in the
    notation Java's BigDecimal.toString uses (the rules engine is a JVM service; the reference only
    says "possibly in scientific notation"): plain unless the exponent is positive or the magnitude is
    below 1E-6, e.g. 41.5, 0.000001, 1.5E-7, 1.5E+300. Python's decimal module follows the same rule."""
    w = whole(f)
    if type(w) is int:
        return str(w)
    return str(_D(repr(f)))


def json_text(v) -> str:
    """An Array or Object serialized as compact JSON, values written as to_string writes them."""
    t = type(v)
    if t is str or isinstance(v, str):
        return json.dumps(str(v), ensure_ascii=False)
    if v is None:
        return "null"
    if t is bool or isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + json_text(x) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(json_text(x) for x in v) + "]"
    if isinstance(v, float):
        return decimal_text(float(v))
    if isinstance(v, int):
        return str(int(v))
    raise TypeError("cannot serialize %r" % (v,))


def value_text(v) -> str:
    """A value written into a substitution template: as to_string; Undefined (and Null, which has no
    string form) as the empty string and "null"."""
    if v is UNDEFINED:
        return ""  # Data types > Undefined: serialized by itself, Undefined is the empty string
    if v is None:
        return "null"
    s = to_string(v)
    return "" if s is UNDEFINED else s
