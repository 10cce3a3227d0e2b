"""Splits an AWS IoT SQL statement into tokens, refusing what the local engine cannot parse.

Tokens are (kind, text) pairs: num, str ('single-quoted', the only form FROM accepts), dstr
("double-quoted": AWS's own examples use it for string arguments, e.g. get(x, "key")), op, id, kw
(a keyword, upper-cased), and a final ("end", "").
"""

from __future__ import annotations

import re

from .conversions import SqlError

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|[0-9]+(?:[eE][-+]?[0-9]+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<dstr>"[^"]*")
  | (?P<op><>|<=|>=|=|<|>|\+|-|\*|/|%|\(|\)|,|\.)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
""", re.X)

KEYWORDS = {"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "TRUE", "FALSE", "NULL"}

# AWS IoT SQL that the local engine does not implement: refused wherever it appears.
REFUSED = {"GROUP", "ORDER", "LIMIT", "HAVING", "JOIN", "UNION", "CASE", "IN", "LIKE", "BETWEEN", "IS", "VALUE",
           "DISTINCT", "INTO", "SET"}

_NOT_HERE = {
    "!": "'!=' is not an operator in the AWS IoT SQL reference: use <>",
    "{": "JSON object literals are not supported by the local rules engine",
    "[": "array literals are not supported by the local rules engine",
    "@": "SET variables are not supported by the local rules engine",
    "`": "backquoted names are not part of AWS IoT SQL",
    ";": "one statement only, without ';'",
}


def tokenize(text: str):
    pos = 0
    out = []
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if not m:
            c = text[pos]
            if c in _NOT_HERE:
                raise SqlError("%s (position %d)" % (_NOT_HERE[c], pos))
            if c in "'\"":
                raise SqlError("unterminated string starting at position %d" % pos)
            raise SqlError("unexpected character %r at position %d" % (c, pos))
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        value = m.group()
        if kind == "id":
            up = value.upper()
            if up in KEYWORDS:
                kind, value = "kw", up
            elif up in REFUSED:
                raise SqlError("%s is not supported by the local rules engine" % up)
        out.append((kind, value))
    out.append(("end", ""))
    return out
