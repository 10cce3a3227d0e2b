"""AWS IoT SQL (version 2016-03-23), the part MotorGuard's rules and their tests use, with AWS's
semantics, and a refusal at load time for anything outside it.

    rule = parse("SELECT *, topic(2) AS thing FROM 'devices/+/events' WHERE event = 'FAULT'")
    out = rule.apply(message_dict, topic="devices/m1/events", clientid="m1")   # None: did not fire

Supported: SELECT * | expressions [AS name], FROM '<topic filter>' (+ and #; 'a/#' does not match
'a'), WHERE with = <> != < <= > >= AND OR NOT and parentheses; literals (numbers, 'strings',
true, false, null); attribute paths (a.b.c); arithmetic + - * / % and unary minus; functions
topic(), topic(n), clientid(), timestamp(), isUndefined(x), newuuid(), parse_time(fmt, ms),
abs(x), lower(s), upper(s), concat(a, b, ...).

Semantics (docs.aws.amazon.com/iot/latest/developerguide/iot-sql-*.html):
- A missing attribute is Undefined, not null. Undefined fields are left out of the SELECT output.
- Operators and functions given Undefined or the wrong types return Undefined; WHERE fires only on
  Boolean true, so an Undefined condition does not fire.
- AND/OR/NOT need Booleans or the strings "true"/"false" (any case); anything else is Undefined.
- < <= > >= convert both sides to Decimal (numbers, numeric strings); otherwise Undefined.
- = and <> compare values of the same type (Int and Decimal compare numerically); values of
  different types are not equal; Undefined on either side gives Undefined.
- Arithmetic converts numeric strings to numbers; division or modulo by zero is Undefined.
- WHERE is evaluated on the incoming message and cannot see SELECT aliases.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
import uuid


class SqlError(ValueError):
    """The statement is not valid, or uses SQL this engine does not support."""


class _Undefined:
    __slots__ = ()

    def __repr__(self):
        return "Undefined"

    def __bool__(self):
        return False


UNDEFINED = _Undefined()

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\d*\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<qid>"(?:[^"])*")
  | (?P<op><>|!=|<=|>=|=|<|>|\+|-|\*|/|%|\(|\)|,|\.)
  | (?P<id>[A-Za-z_$][A-Za-z0-9_$]*)
""", re.X)

_KEYWORDS = {"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "TRUE", "FALSE", "NULL"}
_REFUSED = {"GROUP", "ORDER", "LIMIT", "HAVING", "JOIN", "UNION", "CASE", "IN", "LIKE", "BETWEEN", "IS",
            "VALUE", "DISTINCT", "INTO"}
_FUNCTIONS = {"topic", "clientid", "timestamp", "isundefined", "newuuid", "parse_time", "abs", "lower", "upper",
              "concat"}


def tokenize(text: str):
    pos = 0
    out = []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SqlError("unexpected character %r at position %d" % (text[pos], pos))
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        value = m.group()
        if kind == "id" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        elif kind == "id" and value.upper() in _REFUSED:
            raise SqlError("%s is not supported by the local rules engine" % value.upper())
        out.append((kind, value))
    out.append(("end", ""))
    return out


# ------------------------------------------------------------------ expression nodes
# Each node is a tuple; eval_expr interprets it against a context.


class _Parser:
    def __init__(self, text):
        self.toks = tokenize(text)
        self.i = 0

    def peek(self, offset=0):
        return self.toks[self.i + offset]

    def next(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    def accept(self, kind, value=None):
        t = self.peek()
        if t[0] == kind and (value is None or t[1] == value):
            self.i += 1
            return t
        return None

    def expect(self, kind, value=None, what=None):
        t = self.accept(kind, value)
        if t is None:
            got = self.peek()
            raise SqlError("expected %s, found %r" % (what or value or kind, got[1] or "end of statement"))
        return t

    # expr := or
    def expr(self):
        return self.or_()

    def or_(self):
        node = self.and_()
        while self.accept("kw", "OR"):
            node = ("or", node, self.and_())
        return node

    def and_(self):
        node = self.not_()
        while self.accept("kw", "AND"):
            node = ("and", node, self.not_())
        return node

    def not_(self):
        if self.accept("kw", "NOT"):
            return ("not", self.not_())
        return self.cmp()

    def cmp(self):
        node = self.add()
        t = self.peek()
        if t[0] == "op" and t[1] in ("=", "<>", "!=", "<", "<=", ">", ">="):
            self.next()
            op = "<>" if t[1] == "!=" else t[1]
            node = ("cmp", op, node, self.add())
        return node

    def add(self):
        node = self.mul()
        while self.peek()[0] == "op" and self.peek()[1] in ("+", "-"):
            op = self.next()[1]
            node = ("arith", op, node, self.mul())
        return node

    def mul(self):
        node = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in ("*", "/", "%"):
            op = self.next()[1]
            node = ("arith", op, node, self.unary())
        return node

    def unary(self):
        if self.accept("op", "-"):
            return ("neg", self.unary())
        return self.primary()

    def primary(self):
        t = self.next()
        kind, value = t
        if kind == "num":
            return ("lit", _normal(float(value)))  # SQL V2: 10.0 is the Int 10
        if kind == "str":
            return ("lit", value[1:-1].replace("''", "'"))
        if kind == "kw" and value in ("TRUE", "FALSE"):
            return ("lit", value == "TRUE")
        if kind == "kw" and value == "NULL":
            return ("lit", None)
        if kind == "op" and value == "(":
            if self.peek() == ("kw", "SELECT"):
                raise SqlError("nested SELECT is not supported by the local rules engine")
            node = self.expr()
            self.expect("op", ")")
            return node
        if kind in ("id", "qid"):
            name = value[1:-1] if kind == "qid" else value
            if kind == "id" and self.accept("op", "("):
                return self.call(name)
            path = [name]
            while self.accept("op", "."):
                t2 = self.next()
                if t2[0] not in ("id", "qid"):
                    raise SqlError("expected a field name after '.', found %r" % t2[1])
                path.append(t2[1][1:-1] if t2[0] == "qid" else t2[1])
            return ("path", tuple(path))
        raise SqlError("unexpected %r" % (value or "end of statement"))

    def call(self, name):
        fn = name.lower()
        if fn not in _FUNCTIONS:
            raise SqlError("function %s() is not supported by the local rules engine" % name)
        args = []
        if not self.accept("op", ")"):
            while True:
                args.append(self.expr())
                if self.accept("op", ")"):
                    break
                self.expect("op", ",", "',' or ')'")
        arity = {"topic": (0, 1), "clientid": (0, 0), "timestamp": (0, 0), "isundefined": (1, 1), "newuuid": (0, 0),
                 "parse_time": (2, 3), "abs": (1, 1), "lower": (1, 1), "upper": (1, 1), "concat": (2, 99)}[fn]
        if not arity[0] <= len(args) <= arity[1]:
            raise SqlError("%s() takes %s arguments, got %d" % (name, "-".join(map(str, sorted(set(arity)))), len(args)))
        if fn == "parse_time":
            if args[0][0] != "lit" or not isinstance(args[0][1], str):
                raise SqlError("parse_time() needs a literal format string")
            java_format(args[0][1])  # refuse unsupported patterns now
        return ("call", fn, tuple(args))


def parse_expression(text: str):
    p = _Parser(text)
    node = p.expr()
    p.expect("end", what="end of expression")
    return node


# ------------------------------------------------------------------ statements


class Rule:
    """A parsed SELECT ... FROM ... [WHERE ...]."""

    def __init__(self, sql: str):
        self.sql = sql
        p = _Parser(sql)
        p.expect("kw", "SELECT")
        self.select = []  # [("*",) | (node, alias)]
        while True:
            if p.accept("op", "*"):
                self.select.append(("*",))
            else:
                node = p.expr()
                alias = None
                if p.accept("kw", "AS"):
                    t = p.next()
                    if t[0] not in ("id", "qid"):
                        raise SqlError("expected a name after AS, found %r" % t[1])
                    alias = t[1][1:-1] if t[0] == "qid" else t[1]
                self.select.append((node, alias or _default_name(node)))
            if not p.accept("op", ","):
                break
        p.expect("kw", "FROM")
        t = p.expect("str", what="a quoted topic filter after FROM")
        self.topic_filter = t[1][1:-1]
        check_filter(self.topic_filter)
        self.where = None
        if p.accept("kw", "WHERE"):
            self.where = p.expr()
        p.expect("end", what="end of statement")

    def matches(self, topic: str) -> bool:
        return topic_matches(self.topic_filter, topic)

    def apply(self, message, topic: str, clientid: str = "", now_ms: int | None = None):
        """The SELECT output for message, or None when the rule does not fire (WHERE not true)."""
        ctx = Context(message, topic, clientid, now_ms)
        if self.where is not None and eval_expr(self.where, ctx) is not True:
            return None
        return project(self.select, ctx)


def _default_name(node):
    if node[0] == "path":
        return node[1][-1]
    if node[0] == "call":
        return node[1]
    return "_%d" % id(node)


class Context:
    def __init__(self, message, topic, clientid="", now_ms=None):
        self.message = message
        self.topic = topic
        self.clientid = clientid
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms


def project(select, ctx):
    out = {}
    for item in select:
        if item[0] == "*":
            if isinstance(ctx.message, dict):
                out.update(ctx.message)
            continue
        node, name = item
        value = eval_expr(node, ctx)
        if value is not UNDEFINED:
            out[name] = value
    return out


# ------------------------------------------------------------------ topics


def check_filter(f: str):
    if not f:
        raise SqlError("empty topic filter")
    levels = f.split("/")
    for i, lv in enumerate(levels):
        if "#" in lv and (lv != "#" or i != len(levels) - 1):
            raise SqlError("'#' must be a whole last level in %r" % f)
        if "+" in lv and lv != "+":
            raise SqlError("'+' must be a whole level in %r" % f)


def topic_matches(f: str, topic: str) -> bool:
    fl = f.split("/")
    tl = topic.split("/")
    for i, lv in enumerate(fl):
        if lv == "#":
            return len(tl) > i  # AWS: 'a/#' matches 'a/b' and deeper, not 'a' itself
        if i >= len(tl):
            return False
        if lv != "+" and lv != tl[i]:
            return False
    return len(tl) == len(fl)


# ------------------------------------------------------------------ evaluation


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _to_num(v):
    if _is_num(v):
        return v
    if isinstance(v, str):
        try:
            n = float(v)
        except ValueError:
            return UNDEFINED
        return int(n) if n.is_integer() and re.fullmatch(r"\s*-?\d+\s*", v) else n
    return UNDEFINED


def _to_bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return UNDEFINED


def _normal(v):
    # SQL V2: whole-number decimals are Ints.
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return int(v)
    return v


def eval_expr(node, ctx):
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "path":
        v = ctx.message
        for key in node[1]:
            if isinstance(v, dict) and key in v:
                v = v[key]
            else:
                return UNDEFINED
        return v
    if kind == "and" or kind == "or":
        a = _to_bool(eval_expr(node[1], ctx))
        b = _to_bool(eval_expr(node[2], ctx))
        if a is UNDEFINED or b is UNDEFINED:
            return UNDEFINED
        return (a and b) if kind == "and" else (a or b)
    if kind == "not":
        a = _to_bool(eval_expr(node[1], ctx))
        return UNDEFINED if a is UNDEFINED else (not a)
    if kind == "neg":
        a = _to_num(eval_expr(node[1], ctx))
        return UNDEFINED if a is UNDEFINED else -a
    if kind == "cmp":
        return _compare(node[1], eval_expr(node[2], ctx), eval_expr(node[3], ctx))
    if kind == "arith":
        a = _to_num(eval_expr(node[2], ctx))
        b = _to_num(eval_expr(node[3], ctx))
        if a is UNDEFINED or b is UNDEFINED:
            return UNDEFINED
        op = node[1]
        if op == "+":
            return _normal(a + b)
        if op == "-":
            return _normal(a - b)
        if op == "*":
            return _normal(a * b)
        if b == 0:
            return UNDEFINED
        if op == "/":
            if isinstance(a, int) and isinstance(b, int):
                return int(a / b)  # Int / Int is Int, truncated toward zero
            return _normal(a / b)
        return _normal(a - b * int(a / b)) if isinstance(a, int) and isinstance(b, int) else _normal(a % b)
    if kind == "call":
        return _call(node[1], node[2], ctx)
    raise SqlError("cannot evaluate %r" % (node,))


def _compare(op, a, b):
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    if op in ("=", "<>"):
        if _is_num(a) and _is_num(b):
            eq = a == b
        elif type(a) is type(b):
            eq = a == b
        else:
            eq = False
        return eq if op == "=" else not eq
    x, y = _to_num(a), _to_num(b)
    if x is UNDEFINED or y is UNDEFINED:
        return UNDEFINED
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


_JAVA = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]


def java_format(fmt: str) -> str:
    """A Java date pattern (the subset parse_time needs here) as a strftime format."""
    out = ""
    i = 0
    while i < len(fmt):
        for j, s in _JAVA:
            if fmt.startswith(j, i):
                out += s
                i += len(j)
                break
        else:
            c = fmt[i]
            if c.isalpha():
                raise SqlError("parse_time pattern letter %r is not supported (use yyyy MM dd HH mm ss)" % c)
            out += "%%" if c == "%" else c
            i += 1
    return out


def _call(fn, args, ctx):
    if fn == "topic":
        parts = ctx.topic.split("/")
        if not args:
            return ctx.topic
        n = eval_expr(args[0], ctx)
        if not _is_num(n) or int(n) != n or not 1 <= n <= len(parts):
            return UNDEFINED
        return parts[int(n) - 1]
    if fn == "clientid":
        return ctx.clientid
    if fn == "timestamp":
        return ctx.now_ms
    if fn == "newuuid":
        return str(uuid.uuid4())
    values = [eval_expr(a, ctx) for a in args]
    if fn == "isundefined":
        return values[0] is UNDEFINED
    if any(v is UNDEFINED for v in values):
        return UNDEFINED
    if fn == "parse_time":
        ms = _to_num(values[1])
        if ms is UNDEFINED:
            return UNDEFINED
        tz = _dt.timezone.utc
        return _dt.datetime.fromtimestamp(ms / 1000.0, tz).strftime(java_format(values[0]))
    if fn == "abs":
        n = _to_num(values[0])
        return UNDEFINED if n is UNDEFINED else abs(n)
    if fn in ("lower", "upper"):
        s = values[0]
        if not isinstance(s, str):
            return UNDEFINED
        return s.lower() if fn == "lower" else s.upper()
    if fn == "concat":
        if all(isinstance(v, str) for v in values):
            return "".join(values)
        if all(isinstance(v, list) for v in values):
            return [x for v in values for x in v]
        return UNDEFINED
    raise SqlError("function %s() is not supported" % fn)


# ------------------------------------------------------------------ substitution templates


_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


def compile_template(text: str):
    """'raw/${topic(2)}/${newuuid()}.json' -> a function of a Context (expressions checked now)."""
    parts = []
    pos = 0
    for m in _TEMPLATE.finditer(text):
        parts.append(("lit", text[pos:m.start()]))
        parts.append(("expr", parse_expression(m.group(1))))
        pos = m.end()
    parts.append(("lit", text[pos:]))

    def render(ctx):
        out = []
        for kind, value in parts:
            if kind == "lit":
                out.append(value)
            else:
                v = eval_expr(value, ctx)
                out.append("" if v is UNDEFINED else (value_text(v)))
        return "".join(out)

    return render


def value_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return str(v)
