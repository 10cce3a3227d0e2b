"""Parses AWS IoT SQL (2016-03-23) into a small tree of tuples:

    ("lit", value)                 a literal: Int, Decimal, String, Boolean or Null
    ("path", ("a", "b", ...))      an attribute of the message, a.b...
    ("and"|"or", left, right)      ("not", operand)      ("neg", operand)
    ("cmp", op, left, right)       op: = <> < <= > >=
    ("arith", op, left, right)     op: + - * / %
    ("call", name, (args...))      name lower-cased, checked against the functions table
    ("payload",)                   '*' as a function argument: the whole payload (encode() only)

Precedence, loosest first: OR, AND, NOT, comparisons (not chained), + -, * / %, unary minus.
"""

from __future__ import annotations

from . import functions
from .conversions import DECIMAL, DECIMAL_ERRORS, UNDEFINED, SqlError, from_decimal, whole
from .tokenizer import tokenize

PAYLOAD = ("payload",)


def number_literal(text: str):
    """A numeric literal: digits only -> Int (exactly); otherwise a Decimal, whole ones as Ints (SQL V2:
    10.0 is the Int 10; Data types > Supported data types > Decimal)."""
    if text.isdigit():
        return int(text)
    try:
        v = from_decimal(DECIMAL.create_decimal(text))
    except DECIMAL_ERRORS:
        v = UNDEFINED
    if v is UNDEFINED:
        raise SqlError("number %s is out of the Decimal range" % text)
    return whole(v)


class Parser:
    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def next(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    def accept(self, kind, value=None):
        t = self.toks[self.i]
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

    # ------------------------------------------------------------------ expressions

    def expr(self):
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
        if t[0] == "op" and t[1] in ("=", "<>", "<", "<=", ">", ">="):
            self.next()
            node = ("cmp", t[1], node, self.add())
            t = self.peek()
            if t[0] == "op" and t[1] in ("=", "<>", "<", "<=", ">", ">="):
                raise SqlError("comparisons cannot be chained (%r after a comparison): use AND" % t[1])
        return node

    def add(self):
        node = self.mul()
        while True:
            t = self.peek()
            if t[0] == "op" and t[1] in ("+", "-"):
                self.next()
                node = ("arith", t[1], node, self.mul())
            else:
                return node

    def mul(self):
        node = self.unary()
        while True:
            t = self.peek()
            if t[0] == "op" and t[1] in ("*", "/", "%"):
                self.next()
                node = ("arith", t[1], node, self.unary())
            else:
                return node

    def unary(self):
        if self.accept("op", "-"):
            operand = self.unary()
            if operand[0] == "lit" and type(operand[1]) in (int, float):
                return ("lit", -operand[1])  # a negative number literal
            return ("neg", operand)
        return self.primary()

    def primary(self):
        kind, value = self.next()
        if kind == "num":
            return ("lit", number_literal(value))
        if kind == "str":
            return ("lit", value[1:-1].replace("''", "'"))
        if kind == "dstr":
            return ("lit", value[1:-1])
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
        if kind == "id":
            if self.accept("op", "("):
                return self.call(value)
            path = [value]
            while self.accept("op", "."):
                k, name = self.next()
                if k != "id":
                    raise SqlError("expected a field name after '.', found %r (names with other characters need "
                                   "get(), which the local rules engine does not support)" % (name or "end"))
                path.append(name)
            return ("path", tuple(path))
        if kind == "op" and value == "*":
            raise SqlError("'*' is allowed only as a SELECT item of its own or as encode()'s first argument")
        raise SqlError("unexpected %r" % (value or "end of statement"))

    def call(self, name):
        args = []
        if not self.accept("op", ")"):
            while True:
                args.append(PAYLOAD if self.accept("op", "*") else self.expr())
                if self.accept("op", ")"):
                    break
                self.expect("op", ",", "',' or ')'")
        key = functions.check_call(name, len(args))
        # Functions > encode(): "You can specify * to encode the entire payload". aws_lambda() also
        # takes *, but is not implemented locally; no other function does.
        if PAYLOAD in args and (key != "encode" or args[0] != PAYLOAD):
            raise SqlError("'*' as an argument is supported only as encode()'s first argument")
        return ("call", key, tuple(args))

    # ------------------------------------------------------------------ statement

    def statement(self):
        """SELECT items FROM 'filter' [WHERE condition] -> (items, filter, where-or-None).
        items: [("*",) | (node, name)]."""
        self.expect("kw", "SELECT")
        items = []
        while True:
            if self.accept("op", "*"):
                items.append(("*",))
            else:
                node = self.expr()
                if self.accept("kw", "AS"):
                    t = self.next()
                    if t[0] != "id":
                        raise SqlError("expected a name after AS, found %r" % (t[1] or "end of statement"))
                    name = t[1]
                elif node[0] == "path":
                    name = node[1][-1]  # SELECT a.b names its output b
                else:
                    # The reference does not say what an unnamed expression is called in the output.
                    raise SqlError("a SELECT expression other than an attribute needs a name: add AS <name>")
                items.append((node, name))
            if not self.accept("op", ","):
                break
        self.expect("kw", "FROM")
        t = self.expect("str", what="a topic filter in single quotes after FROM")
        topic_filter = t[1][1:-1].replace("''", "'")
        where = None
        if self.accept("kw", "WHERE"):
            where = self.expr()
        self.expect("end", what="end of statement")
        return items, topic_filter, where


def parse_expression_tree(text: str):
    p = Parser(text)
    node = p.expr()
    p.expect("end", what="end of expression")
    return node
