"""Building ADF expressions (`@...` strings): literals, JSON quoting, GraphQL bodies and tags."""

from __future__ import annotations

import json
from collections.abc import Sequence


def lit(text: str) -> str:
    """An ADF expression string literal (single quotes, doubled inside)."""
    return "'" + text.replace("'", "''") + "'"


def json_quote(expr: str) -> str:
    """ADF expression: the JSON string literal (quotes, escapes) of the string `expr` evaluates to.

    ADF has no JSON-escape function; `string(createArray(x))` serializes `["x"]` with proper escaping,
    and the brackets are cut off.
    """
    serialized = f"string(createArray({expr}))"
    return f"substring({serialized}, 1, sub(length({serialized}), 2))"


def expression(expr: str) -> dict[str, str]:
    """An ADF property whose value is the expression `expr`."""
    return {"value": "@" + expr, "type": "Expression"}


def graphql_body(query: str, variables_json_parts: Sequence[str]) -> dict[str, str]:
    """A Web activity body: `{"query": ..., "variables": ...}` with the variables spliced in."""
    return expression(
        "json(concat("
        + ", ".join([lit('{"query":' + json.dumps(query) + ',"variables":'), *variables_json_parts, lit("}")])
        + "))"
    )


def tag(key: str, value_expr: str) -> str:
    """ADF expression: the Dagster tag object `{"key": key, "value": <what value_expr evaluates to>}`."""
    head = lit(json.dumps({"key": key}, separators=(",", ":"))[:-1] + ',"value":')
    return f"json(concat({head}, {json_quote(value_expr)}, '}}'))"


def timespan_seconds(expr: str) -> str:
    """ADF expression: the whole seconds of the ADF timespan `expr` evaluates to (`d.hh:mm:ss` or
    `hh:mm:ss`, the form of an Until's `timeout`)."""
    clock = f"split({expr}, ':')"
    head = f"split(first({clock}), '.')"  # ["d", "hh"] or ["hh"]
    days = f"if(contains(first({clock}), '.'), int(first({head})), 0)"
    hours = f"int(last({head}))"
    minutes = f"int({clock}[1])"
    seconds = f"int(last({clock}))"
    return f"add(add(mul({days}, 86400), mul({hours}, 3600)), add(mul({minutes}, 60), {seconds}))"
