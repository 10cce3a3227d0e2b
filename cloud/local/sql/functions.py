"""The AWS IoT SQL functions the local engine implements, each following its entry in the AWS IoT
SQL reference > Functions (iot-sql-functions). Any other function is refused when the rule loads.

Each function is built once, when the rule loads: `build(name, arg_nodes, arg_fns)` checks the call
(number of arguments, the literal arguments some functions need) and returns a function of the
evaluation context. AWS returns Undefined for a call with the wrong number of arguments; the local
engine refuses such a rule instead, as it could never do anything useful.
"""

from __future__ import annotations

import base64
import datetime as _dt
import uuid

from .conversions import UNDEFINED, SqlError, parse_number, to_int, to_string

_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)


def _literal(node):
    return node[1] if node[0] == "lit" else UNDEFINED


# ----------------------------------------------------------------------------- topic, clientid, ...

def _topic(args, fns):
    # Functions > topic(Decimal): no argument -> the whole topic (the Basic Ingest prefix
    # $aws/rules/<rule>/ already removed by the engine); topic(n) -> the n-th level, counting from 1.
    # The reference says nothing of a level past the end, of 0, of a non-whole n or of a non-number:
    # those give Undefined. A String argument goes through the standard conversion to Decimal.
    if not args:
        return lambda ctx: ctx.topic
    const = _literal(args[0])
    if const is not UNDEFINED:
        n = _topic_index(const)
        if n is UNDEFINED:
            return lambda ctx: UNDEFINED

        def topic_n(ctx, i=n - 1):
            levels = ctx.levels()
            return levels[i] if i < len(levels) else UNDEFINED

        return topic_n
    fn = fns[0]

    def topic_expr(ctx):
        n = _topic_index(fn(ctx))
        if n is UNDEFINED:
            return UNDEFINED
        levels = ctx.levels()
        return levels[n - 1] if n <= len(levels) else UNDEFINED

    return topic_expr


def _topic_index(v):
    if type(v) is str:
        v = parse_number(v)
    if type(v) is float and v.is_integer():
        v = int(v)
    if type(v) is not int or v < 1:
        return UNDEFINED
    return v


def _clientid(args, fns):
    # Functions > clientid(): the id of the MQTT client that published (the engine passes what it knows).
    return lambda ctx: ctx.clientid


def _timestamp(args, fns):
    # Functions > timestamp(): milliseconds since 1970-01-01T00:00:00Z, as the rules engine sees it.
    return lambda ctx: ctx.now_ms


def _newuuid(args, fns):
    # Functions > newuuid(): a random 16-byte UUID, as text.
    return lambda ctx: str(uuid.uuid4())


def _isundefined(args, fns):
    # Functions > isUndefined(): true for Undefined and false for every other type, Null included.
    fn = fns[0]
    return lambda ctx: fn(ctx) is UNDEFINED


# ----------------------------------------------------------------------------- numbers

def _abs(args, fns):
    # Functions > abs(Decimal): Int -> Int; Decimal -> Decimal; a String -> the Decimal it converts
    # to (a whole number being an Int, V2), Undefined when it does not convert; Boolean, Array,
    # Object, Null and Undefined -> Undefined.
    fn = fns[0]

    def abs_(ctx):
        v = fn(ctx)
        t = type(v)
        if t is int or t is float:
            return abs(v)
        if t is str:
            v = parse_number(v)
            return v if v is UNDEFINED else abs(v)
        return UNDEFINED

    return abs_


# ----------------------------------------------------------------------------- strings

def _case(method):
    # Functions > lower(String) / upper(String): a non-String argument is first converted with the
    # standard conversion to String (Data types > Conversions > To string): lower(5) is "5",
    # upper(true) is "TRUE", lower(["A"]) is '["a"]'; Null and Undefined have no String: Undefined.
    def build(args, fns):
        fn = fns[0]

        def change_case(ctx):
            s = to_string(fn(ctx))
            return s if s is UNDEFINED else method(s)

        return change_case

    return build


def _concat(args, fns):
    # Functions > concat(): no argument -> Undefined. Two or more: if any argument is an Array, one
    # Array of all the arguments (Array arguments spliced in, others added as items); else, if any
    # argument is a String, the concatenation of every argument converted to String (Data types >
    # Conversions > To string). Not covered by the reference, so Undefined: no Array and no String
    # among the arguments (concat(1, 2)); an Undefined argument; in the String case, an argument with
    # no String form (Null). With exactly one argument the reference contradicts itself (its table:
    # the argument unchanged; its example: concat(1) = "1"), so the local engine refuses that call.
    if not fns:
        return lambda ctx: UNDEFINED
    if len(fns) == 1:
        raise SqlError("concat() with a single argument is refused: the AWS IoT SQL reference gives two different "
                       "results for it (the argument unchanged, and the argument as a string)")
    fns = tuple(fns)

    def concat(ctx):
        values = [f(ctx) for f in fns]
        has_array = has_string = False
        for v in values:
            if v is UNDEFINED:
                return UNDEFINED
            if isinstance(v, (list, tuple)):
                has_array = True
            elif isinstance(v, str):
                has_string = True
        if has_array:
            out = []
            for v in values:
                if isinstance(v, (list, tuple)):
                    out.extend(v)
                else:
                    out.append(v)
            return out
        if has_string:
            parts = [to_string(v) for v in values]
            if any(p is UNDEFINED for p in parts):
                return UNDEFINED
            return "".join(parts)
        return UNDEFINED

    return concat


# ----------------------------------------------------------------------------- encode

ENCODINGS = {"base64": base64.b64encode}


def _encode(args, fns):
    # Functions > encode(value, encodingScheme) (iot-sql-encode-payload), SQL 2016-03-23: value *
    # stands for the whole payload, JSON or not (its bytes as published);
    # any other value is converted to a String first (Data types > Conversions > To string) and its
    # UTF-8 bytes are encoded: Null and Undefined have no String, so they give Undefined. The scheme
    # is "a literal string"; "currently, only 'base64' is supported": anything else is refused at load.
    scheme = _literal(args[1])
    if scheme not in ENCODINGS:
        raise SqlError("encode() needs the literal encoding scheme 'base64' as its second argument (the only one "
                       "AWS IoT supports), got %s" % ("an expression" if scheme is UNDEFINED else repr(scheme)))
    scheme_of = ENCODINGS[scheme]
    if args[0] == ("payload",):
        return lambda ctx: scheme_of(ctx.raw()).decode("ascii")
    fn = fns[0]

    def encode(ctx):
        s = to_string(fn(ctx))
        return s if s is UNDEFINED else scheme_of(s.encode("utf-8", "surrogatepass")).decode("ascii")

    return encode


# ----------------------------------------------------------------------------- parse_time

def _parse_time(args, fns):
    # Functions > parse_time(String, Long[, String]): formats a time (ms since the epoch) with a
    # Joda-Time pattern, in the given time zone (default UTC). Locally the pattern and the zone must
    # be literals, the pattern may use only the fields below, and the zone must be one Python's
    # zoneinfo knows: anything else is refused when the rule loads. The time goes through the
    # standard conversion to Int (Data types > Conversions > To int); what is not a number (Null,
    # a non-numeric String, ...) or is out of the calendar's range gives Undefined.
    pattern = _literal(args[0])
    if not isinstance(pattern, str):
        raise SqlError("parse_time() needs a literal pattern string as its first argument")
    parts = joda_pattern(pattern)
    tz = _UTC
    if len(args) == 3:
        zone = _literal(args[2])
        if not isinstance(zone, str):
            raise SqlError("parse_time() needs a literal time zone string as its third argument")
        tz = time_zone(zone)
    fn = fns[1]

    def parse_time(ctx):
        ms = to_int(fn(ctx))
        if type(ms) is not int:
            return UNDEFINED
        try:
            t = (_EPOCH + _dt.timedelta(milliseconds=ms)).astimezone(tz)
        except (OverflowError, ValueError):
            return UNDEFINED
        return format_time(parts, t, ms)

    return parse_time


# Joda-Time pattern fields supported locally: year (4 digits), month, day of month, hour of day
# (0-23), minute, second (2 digits each), millisecond (3 digits). Text in single quotes is literal
# ('' is a quote); other non-letters are literal.
_FIELDS = {"yyyy": "year", "MM": "month", "dd": "day", "HH": "hour", "mm": "minute", "ss": "second", "SSS": "ms"}


def joda_pattern(fmt: str):
    """A Joda-Time pattern as a list of ("text", s) and ("field", name); SqlError for unsupported fields."""
    parts = []
    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c == "'":
            if fmt[i + 1:i + 2] == "'":  # '' outside quotes: one quote
                parts.append(("text", "'"))
                i += 2
                continue
            j, text = i + 1, []
            while True:
                if j >= n:
                    raise SqlError("parse_time pattern %r has an unterminated quote" % fmt)
                if fmt[j] == "'":
                    if fmt[j + 1:j + 2] == "'":  # '' inside quotes: one quote
                        text.append("'")
                        j += 2
                        continue
                    break
                text.append(fmt[j])
                j += 1
            parts.append(("text", "".join(text)))
            i = j + 1
        elif "a" <= c <= "z" or "A" <= c <= "Z":  # Joda: only ASCII letters are pattern letters
            j = i
            while j < n and fmt[j] == c:
                j += 1
            run = fmt[i:j]
            if run not in _FIELDS:
                raise SqlError("parse_time pattern field %r is not supported by the local rules engine (supported: "
                               "yyyy MM dd HH mm ss SSS and 'quoted text')" % run)
            parts.append(("field", _FIELDS[run]))
            i = j
        else:
            parts.append(("text", c))
            i += 1
    return parts


def format_time(parts, t, ms: int) -> str:
    out = []
    for kind, value in parts:
        if kind == "text":
            out.append(value)
        elif value == "year":
            out.append("%04d" % t.year)
        elif value == "ms":
            out.append("%03d" % (ms % 1000))
        else:
            out.append("%02d" % getattr(t, value))
    return "".join(out)


def time_zone(name: str):
    if name.upper() == "UTC":
        return _UTC
    try:
        import zoneinfo

        return zoneinfo.ZoneInfo(name)
    except Exception:  # noqa: BLE001 - unknown name, or no time zone data on this machine
        raise SqlError("parse_time() time zone %r is not known here" % name) from None


# ----------------------------------------------------------------------------- the table

# name (lower case) -> (fewest arguments, most arguments, builder)
FUNCTIONS = {
    "topic": (0, 1, _topic),
    "clientid": (0, 0, _clientid),
    "timestamp": (0, 0, _timestamp),
    "newuuid": (0, 0, _newuuid),
    "isundefined": (1, 1, _isundefined),
    "abs": (1, 1, _abs),
    "lower": (1, 1, _case(str.lower)),
    "upper": (1, 1, _case(str.upper)),
    "concat": (0, None, _concat),
    "encode": (2, 2, _encode),
    "parse_time": (2, 3, _parse_time),
}


def check_call(name: str, nargs: int) -> str:
    """The function's key, after checking it exists locally and takes nargs arguments (SqlError if not)."""
    key = name.lower()
    spec = FUNCTIONS.get(key)
    if spec is None:
        raise SqlError("function %s() is not supported by the local rules engine (supported: %s)"
                       % (name, ", ".join(sorted(FUNCTIONS))))
    lo, hi = spec[0], spec[1]
    if nargs < lo or (hi is not None and nargs > hi):
        want = str(lo) if lo == hi else ("%d or more" % lo if hi is None else "%d to %d" % (lo, hi))
        raise SqlError("%s() takes %s arguments, got %d" % (name, want, nargs))
    return key


def build(name: str, arg_nodes, arg_fns):
    key = check_call(name, len(arg_nodes))
    return FUNCTIONS[key][2](arg_nodes, arg_fns)
