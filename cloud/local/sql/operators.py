"""The AWS IoT SQL operators (2016-03-23), one function per operator, each following its type table
in the AWS IoT SQL reference > Operators (iot-sql-operators). Every function takes evaluated
operands (UNDEFINED included) and returns a value or UNDEFINED.

Where the reference has no row for a case, the comment says so and the result is Undefined.
"""

from __future__ import annotations

from .conversions import (DECIMAL, DECIMAL_ERRORS, UNDEFINED, from_decimal, is_number, kind, to_bool, to_decimal_value,
                          to_number, to_string)


# ----------------------------------------------------------------------------- logic
# Operators > AND / OR: Boolean operands, or the strings "true"/"false" (any case) taken as Booleans;
# any other operand, Undefined included, makes the result Undefined. The table has no short-circuit
# row, so `false AND <Undefined>` is Undefined, and so is `true OR <Undefined>`.
# Operators > NOT: likewise for its one operand.

def op_and(a, b):
    a, b = to_bool(a), to_bool(b)
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    return a and b


def op_or(a, b):
    a, b = to_bool(a), to_bool(b)
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    return a or b


def op_not(a):
    a = to_bool(a)
    return UNDEFINED if a is UNDEFINED else not a


# ----------------------------------------------------------------------------- equality
# Operators > = and <>: Int with Int, Decimal with Decimal (an Int is converted to Decimal first, so
# Int and Decimal compare by value), String with String, Array with Array (same items in the same
# order), Object with Object (same keys and values, in any order); Undefined on either side gives
# Undefined; operands of mismatched types are not equal (= False, <> True); <> has Null with Null
# -> False, so Null = Null is True.
# Boolean with Boolean has no row in either table; each operator's description (true when the
# operands are equal / not equal) decides it: true = true is True. Nested values compare by these
# same rules (true is not equal to 1, though Python says so).

def values_equal(a, b) -> bool:
    """= on two defined values."""
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is list:
            return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
        if ta is dict:
            return a.keys() == b.keys() and all(values_equal(x, b[k]) for k, x in a.items())
        return a == b
    if (ta is int and tb is float) or (ta is float and tb is int):
        return a == b  # exact in Python, as Int-to-Decimal is exact in AWS
    return _equal_slow(a, b)


def _equal_slow(a, b) -> bool:
    # Subclasses of the JSON types (a payload built by hand rather than parsed), and tuples as arrays.
    ka, kb = kind(a), kind(b)
    if ka in ("Int", "Decimal") and kb in ("Int", "Decimal"):
        return a == b
    if ka != kb:
        return False
    if ka == "Array":
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if ka == "Object":
        return a.keys() == b.keys() and all(values_equal(x, b[k]) for k, x in a.items())
    return a == b


def op_eq(a, b):
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    return values_equal(a, b)


def op_ne(a, b):
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    return not values_equal(a, b)


# ----------------------------------------------------------------------------- ordering
# Operators > > >= < <=: both operands are converted to Decimal (Int and Decimal as they are, a
# String only when it is a number as Data types > Conversions > To decimal defines it) and compared;
# any other operand (Boolean, Array, Object, Null, a non-numeric String, Undefined) gives Undefined.
# Strings are never compared as text.

def _ordered(a, b):
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a, b
    return to_number(a), to_number(b)


def op_gt(a, b):
    a, b = _ordered(a, b)
    return UNDEFINED if a is UNDEFINED or b is UNDEFINED else a > b


def op_ge(a, b):
    a, b = _ordered(a, b)
    return UNDEFINED if a is UNDEFINED or b is UNDEFINED else a >= b


def op_lt(a, b):
    a, b = _ordered(a, b)
    return UNDEFINED if a is UNDEFINED or b is UNDEFINED else a < b


def op_le(a, b):
    a, b = _ordered(a, b)
    return UNDEFINED if a is UNDEFINED or b is UNDEFINED else a <= b


# ----------------------------------------------------------------------------- arithmetic
# Operators > - * / %: Int with Int -> Int; Int/Decimal with Int/Decimal -> Decimal; when a String
# takes part, every String must be a number (To decimal) and the result is a Decimal (the table's
# String/Int/Decimal row: so '7' / 2 is 3.5 while 7 / 2 is the Int 3); anything else -> Undefined.
# A Decimal result that is a whole number is an Int (SQL V2). The reference has no row for a zero
# divisor: Undefined. Int / Int truncates toward zero; % is the remainder of that truncating
# division (it takes the dividend's sign, as Java's % and BigDecimal.remainder do; the reference
# does not say).

def _int_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


_DECIMAL_OPS = {"add": DECIMAL.add, "subtract": DECIMAL.subtract, "multiply": DECIMAL.multiply,
                "divide": DECIMAL.divide, "remainder": DECIMAL.remainder}


def _decimal_op(name, a, b):
    try:
        return from_decimal(_DECIMAL_OPS[name](to_decimal_value(a), to_decimal_value(b)))
    except DECIMAL_ERRORS:
        return UNDEFINED


def _numeric(name, a, b):
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        if name == "subtract":
            return a - b
        if name == "multiply":
            return a * b
        if b == 0:
            return UNDEFINED
        if name == "divide":
            return _int_div(a, b)
        return a - b * _int_div(a, b)
    if not ((ta is int or ta is float) and (tb is int or tb is float)):
        a, b = to_number(a), to_number(b)
        if a is UNDEFINED or b is UNDEFINED:
            return UNDEFINED
    if b == 0 and (name == "divide" or name == "remainder"):
        return UNDEFINED
    return _decimal_op(name, a, b)


def op_sub(a, b):
    return _numeric("subtract", a, b)


def op_mul(a, b):
    return _numeric("multiply", a, b)


def op_div(a, b):
    return _numeric("divide", a, b)


def op_mod(a, b):
    return _numeric("remainder", a, b)


# Operators > +: overloaded. A String on either side makes it concatenation: the other operand is
# converted to a String (Data types > Conversions > To string: "1" + 2 is "12", "a" + true is
# "atrue", "a" + [1] is "a[1]"); when that conversion gives Undefined (Null, Undefined) so does +.
# Int + Int -> Int; Int/Decimal + Int/Decimal -> Decimal (whole -> Int, V2); anything else (two
# Booleans, Null, Arrays, Objects, Undefined) -> Undefined. Unlike - * / %, + never turns a String
# into a number: the + table has no String/Int/Decimal row.

def op_add(a, b):
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return a + b
    if ta is str or tb is str or isinstance(a, str) or isinstance(b, str):
        a, b = to_string(a), to_string(b)
        if a is UNDEFINED or b is UNDEFINED:
            return UNDEFINED
        return a + b
    if (ta is int or ta is float) and (tb is int or tb is float):
        return _decimal_op("add", a, b)
    if is_number(a) and is_number(b):
        return _decimal_op("add", a, b)
    return UNDEFINED


# Unary minus: the Operators page documents only the binary -. -x is taken as 0 - x, so it follows
# the - table: Int -> Int, Decimal -> Decimal, a numeric String -> its negation, anything else Undefined.

def op_neg(a):
    t = type(a)
    if t is int or t is float:
        return -a
    return op_sub(0, a)


BINARY = {"AND": op_and, "OR": op_or, "=": op_eq, "<>": op_ne, ">": op_gt, ">=": op_ge, "<": op_lt, "<=": op_le,
          "+": op_add, "-": op_sub, "*": op_mul, "/": op_div, "%": op_mod}
