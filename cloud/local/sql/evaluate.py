"""Evaluation: the parse tree (parser.py) turned, once when a rule loads, into nested Python functions
of a Context, so that each message costs only the calls its expressions need. Operands that are all
literals are computed at load. Semantics live in operators.py, functions.py and conversions.py;
this module only wires them up, with fast paths for the common cases that give the same results.
"""

from __future__ import annotations

import json
import time

from . import functions, operators
from .conversions import UNDEFINED, SqlError, whole


class Context:
    """What an expression can see: the message (a parsed JSON value), its topic, the publishing
    client's id, the time the rules engine took it (epoch ms), and the payload's bytes as published
    (what encode(*, ...) reads, JSON or not)."""

    __slots__ = ("message", "topic", "clientid", "now_ms", "payload", "_levels")

    def __init__(self, message, topic, clientid="", now_ms=None, payload=None):
        self.message = message
        self.topic = topic
        self.clientid = clientid
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.payload = payload
        self._levels = None

    def raw(self) -> bytes:
        """The payload's bytes. A context made from a parsed message alone (Rule.apply in a test)
        has none: then they are that message as compact JSON."""
        if self.payload is None:
            self.payload = json.dumps(self.message, separators=(",", ":")).encode()
        return self.payload

    def levels(self):
        """The topic's levels (split once, on first use)."""
        lv = self._levels
        if lv is None:
            lv = self._levels = self.topic.split("/")
        return lv


_UNARY = {"not": operators.op_not, "neg": operators.op_neg}


def fold(node):
    """The tree with every operator whose operands are all literals replaced by its value."""
    kind = node[0]
    if kind in ("and", "or"):
        a, b = fold(node[1]), fold(node[2])
        node = (kind, a, b)
        if a[0] == "lit" and b[0] == "lit":
            return ("lit", operators.BINARY[kind.upper()](a[1], b[1]))
        return node
    if kind in _UNARY:
        a = fold(node[1])
        if a[0] == "lit":
            return ("lit", _UNARY[kind](a[1]))
        return (kind, a)
    if kind in ("cmp", "arith"):
        a, b = fold(node[2]), fold(node[3])
        if a[0] == "lit" and b[0] == "lit":
            return ("lit", operators.BINARY[node[1]](a[1], b[1]))
        return (kind, node[1], a, b)
    if kind == "call":
        return (kind, node[1], tuple(fold(x) for x in node[2]))
    return node


def compile_expr(node):
    """A function ctx -> value for a parse tree (SqlError for a call the local engine refuses)."""
    return _compile(fold(node))


def _constant(v):
    return lambda ctx: v


def _path(keys):
    if len(keys) == 1:
        key = keys[0]

        def attribute(ctx):
            m = ctx.message
            if type(m) is dict or isinstance(m, dict):
                v = m.get(key, UNDEFINED)
                return whole(v) if type(v) is float else v
            return UNDEFINED

        return attribute

    def nested(ctx):
        v = ctx.message
        for k in keys:
            if type(v) is dict or isinstance(v, dict):
                v = v.get(k, UNDEFINED)
                if v is UNDEFINED:
                    return v
            else:
                return UNDEFINED
        return whole(v) if type(v) is float else v

    return nested


def _equals_string(fa, s, negate):
    # = / <> with a String literal: a String compares by value, Undefined gives Undefined, any other
    # type is a mismatch (= False, <> True). Same results as operators.op_eq / op_ne.
    if negate:
        def not_equal(ctx):
            a = fa(ctx)
            if type(a) is str:
                return a != s
            return UNDEFINED if a is UNDEFINED else not (isinstance(a, str) and a == s)
        return not_equal

    def equal(ctx):
        a = fa(ctx)
        if type(a) is str:
            return a == s
        return UNDEFINED if a is UNDEFINED else (isinstance(a, str) and a == s)

    return equal


def _binary(op, fa, fb):
    return lambda ctx: op(fa(ctx), fb(ctx))


def _logic(kind, fa, fb):
    # Fast path for two Booleans; everything else through operators.op_and / op_or.
    is_and = kind == "and"
    slow = operators.op_and if is_and else operators.op_or

    def logic(ctx):
        a, b = fa(ctx), fb(ctx)
        if (a is True or a is False) and (b is True or b is False):
            return (a and b) if is_and else (a or b)
        return slow(a, b)
    return logic


def _compile(node):
    kind = node[0]
    if kind == "lit":
        return _constant(node[1])
    if kind == "path":
        return _path(node[1])
    if kind == "payload":  # '*' as a function argument (only encode() takes it: parser.py)
        return lambda ctx: ctx.raw()
    if kind in ("and", "or"):
        return _logic(kind, _compile(node[1]), _compile(node[2]))
    if kind in _UNARY:
        op, fa = _UNARY[kind], _compile(node[1])
        return lambda ctx: op(fa(ctx))
    if kind == "cmp" or kind == "arith":
        op, left, right = node[1], node[2], node[3]
        if kind == "cmp" and op in ("=", "<>"):
            if right[0] == "lit" and type(right[1]) is str:
                return _equals_string(_compile(left), right[1], op == "<>")
            if left[0] == "lit" and type(left[1]) is str:
                return _equals_string(_compile(right), left[1], op == "<>")
        return _binary(operators.BINARY[op], _compile(left), _compile(right))
    if kind == "call":
        args = node[2]
        return functions.build(node[1], args, [_compile(a) for a in args])
    raise SqlError("cannot evaluate %r" % (node,))


def eval_expr(expr, ctx):
    """The value of an expression (compiled, or a parse tree) for a context."""
    if callable(expr):
        return expr(ctx)
    return compile_expr(expr)(ctx)


def project(select, ctx):
    """The SELECT output: '*' copies the message's attributes; other items are added under their
    names, except those that are Undefined (Data types > Undefined: left out of the JSON)."""
    out = {}
    for item in select:
        if item[0] == "*":
            if isinstance(ctx.message, dict):
                out.update(ctx.message)
            continue
        expr, name = item
        value = expr(ctx) if callable(expr) else eval_expr(expr, ctx)
        if value is not UNDEFINED:
            out[name] = value
    return out
