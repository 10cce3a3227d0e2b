"""Statements: a rule's SQL (SELECT ... FROM ... [WHERE ...]), its topic filter, and the
${expression} substitution templates of rule actions."""

from __future__ import annotations

import re

from .conversions import SqlError, value_text
from .evaluate import Context, compile_expr, project
from .parser import Parser, parse_expression_tree


class Rule:
    """A parsed and compiled SELECT ... FROM ... [WHERE ...].

    select: [("*",) | (expression, name)]; where: an expression or None. Expressions are functions of
    a Context (cloud.local.sql.eval_expr evaluates them). reads_json: whether the SELECT needs the
    payload as JSON (it has * or names an attribute); one that does not (encode(*, 'base64'),
    topic(), timestamp() ...) reads any payload ("Working with binary payloads")."""

    def __init__(self, sql: str):
        self.sql = sql
        items, self.topic_filter, where = Parser(sql).statement()
        check_filter(self.topic_filter)
        self.reads_json = any(item[0] == "*" or reads_attributes(item[0]) for item in items)
        self.select = [item if item[0] == "*" else (compile_expr(item[0]), item[1]) for item in items]
        self.where = None if where is None else compile_expr(where)

    def matches(self, topic: str) -> bool:
        return topic_matches(self.topic_filter, topic)

    def apply(self, message, topic: str, clientid: str = "", now_ms: int | None = None, payload: bytes | None = None):
        """The SELECT output for message (parsed from payload, the bytes encode(*) reads, when
        given), or None when the rule does not fire.

        WHERE clause (iot-sql-where): the actions run only when the condition is true; here only the
        Boolean true fires (a condition that is Undefined, false, or of another type, the string
        "true" included, does not: the reference does not say that WHERE converts)."""
        ctx = Context(message, topic, clientid, now_ms, payload)
        if self.where is not None and self.where(ctx) is not True:
            return None
        return project(self.select, ctx)


def reads_attributes(node) -> bool:
    """Whether a parse tree names an attribute of the message anywhere (a rule's SQL: small)."""
    kind = node[0]
    if kind == "path":
        return True
    if kind == "call":
        return any(reads_attributes(a) for a in node[2])
    if kind in ("lit", "payload"):
        return False
    return any(reads_attributes(x) for x in node[1:] if isinstance(x, tuple))


def parse_expression(text: str):
    """One expression (as in a substitution template), compiled: a function of a Context."""
    return compile_expr(parse_expression_tree(text))


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


# ------------------------------------------------------------------ substitution templates


_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


def compile_template(text: str):
    """'raw/${topic(2)}/${newuuid()}.json' -> a function of a Context (expressions checked now).

    Substitution templates (iot-substitution-templates): each ${expression} is evaluated on the
    incoming message, like WHERE (SELECT aliases are not visible), and written as text: Undefined
    as the empty string, other values by the standard conversion to String."""
    parts = []
    pos = 0
    for m in _TEMPLATE.finditer(text):
        if m.start() > pos:
            parts.append(text[pos:m.start()])
        parts.append(parse_expression(m.group(1)))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])

    def render(ctx):
        return "".join(p if isinstance(p, str) else value_text(p(ctx)) for p in parts)

    return render


