"""AWS IoT SQL (version 2016-03-23), the part MotorGuard's rules and their tests use, with AWS's
semantics, and a refusal at load time (SqlError when the rule is parsed) for anything outside it.

    rule = Rule("SELECT *, topic(2) AS thing FROM 'devices/+/events' WHERE event = 'FAULT'")
    out = rule.apply(message_dict, topic="devices/m1/events", clientid="m1")   # None: did not fire

Supported: SELECT * | expressions [AS name] (an expression other than an attribute needs AS),
FROM '<topic filter>' (+ and #; 'a/#' does not match 'a'), WHERE; operators AND OR NOT = <> < <= >
>= + - * / % and unary minus, parentheses; literals: numbers, 'strings' and "strings", true, false,
null; attribute paths a.b.c; functions topic(), topic(n), clientid(), timestamp(), isUndefined(x),
newuuid(), abs(x), lower(x), upper(x), concat(...), parse_time(pattern, ms[, zone]), encode(*, 'base64')
(the payload's bytes, JSON or not) and encode(x, 'base64').

Refused at load: other functions, '*' as an argument anywhere but encode()'s first, an encoding other
than the literal 'base64', CASE, IN, LIKE, nested SELECT, SELECT VALUE, SET variables, JSON
object/array literals, `!=`, chained comparisons, unnamed non-attribute SELECT expressions, wrong
argument counts, concat() with one argument, parse_time() with a non-literal pattern or zone, or a
pattern field other than yyyy MM dd HH mm ss SSS.

The semantics follow the AWS IoT SQL reference (docs.aws.amazon.com/iot/latest/developerguide/):
Data types and their conversions (conversions.py), Operators (operators.py), Functions
(functions.py); tests/cloud/local/sql/test_sql_types.py checks each documented row.

Modules: tokenizer -> parser (a tree of tuples) -> evaluate (compiled to functions of a Context)
-> rule (statements, topic filters, substitution templates).
"""

from .conversions import UNDEFINED, SqlError, to_bool, to_number, to_string, value_text
from .evaluate import Context, compile_expr, eval_expr, project
from .parser import parse_expression_tree
from .rule import Rule, check_filter, compile_template, parse_expression, topic_matches
from .tokenizer import tokenize

__all__ = ["UNDEFINED", "SqlError", "Rule", "Context", "eval_expr", "project", "compile_expr", "parse_expression",
           "parse_expression_tree", "compile_template", "check_filter", "topic_matches", "tokenize", "value_text",
           "to_bool", "to_number", "to_string"]
