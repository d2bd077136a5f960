"""Braintrust SQL functions and operators that DuckDB lacks or spells differently.

Two passes around the path rewrite in `sql_translate`:

- `before_paths(select)` turns Braintrust forms into nodes whose arguments still hold the user's
  dotted paths, so those paths get typed by their new context: `day(x)`/`hour`/`week`/`month`/
  `year` -> `date_trunc(unit, x)` (a TIMESTAMP truncated to that unit, as in Braintrust, never a
  day-of-month integer); `date_trunc('15 minutes', x)` -> `time_bucket`; `percentile(x, p)` ->
  `quantile_cont`; `count_distinct(x)` -> `count(DISTINCT x)`; `json_extract(x, path)`,
  `x IN ('a', ...)` on JSON values and `x INCLUDES v` -> marker nodes.
- `after_paths(select)` turns the marker nodes into DuckDB SQL once their arguments are DuckDB
  expressions, and expands `estimated_cost()`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import sqlglot
from sqlglot import exp

from bt_flywheel.backends.btsql.dialect import BtIncludes
from bt_flywheel.core.errors import InputError
from bt_flywheel.core.sqltext import sql_string

TIME_UNITS = ("second", "minute", "hour", "day", "week", "month", "year")
_PLURAL = {f"{u}s": u for u in ("second", "minute", "hour", "day")}


class BtIn(exp.Expression):
    """`<json value> IN ('a', ...)`: for an array, true when any element is one of the values."""

    arg_types = {"this": True, "expressions": True}


class BtJsonExtract(exp.Expression):
    """`json_extract(<field holding JSON text>, '<path>')`, typed by where it is used."""

    arg_types = {"this": True, "path": True}


def _name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower() if isinstance(node, exp.Func) else ""


def _string_arg(node: exp.Expression | None, what: str) -> str:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.JSONPath):   # sqlglot pre-parses json_extract's path
        return node.sql(dialect="duckdb").strip("'")
    if not isinstance(node, exp.Literal) or not node.is_string:
        raise InputError(f"sql: {what} must be a quoted string")
    return node.this


def _bucket(unit_text: str, value: exp.Expression) -> exp.Expression:
    """date_trunc(unit, x) with Braintrust's units: a unit, or a positive multiple of
    second(s)/minute(s)/hour(s)/day(s) such as '15 minutes'."""
    parts = unit_text.strip().lower().split()
    if len(parts) == 1 and parts[0] in TIME_UNITS:
        return exp.Anonymous(this="date_trunc", expressions=[exp.Literal.string(parts[0]), value])
    if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) > 0:
        unit = _PLURAL.get(parts[1], parts[1] if parts[1] in _PLURAL.values() else None)
        if unit:
            interval = exp.Interval(this=exp.Literal.string(parts[0]), unit=exp.Var(this=unit.upper()))
            return exp.Anonymous(this="time_bucket", expressions=[interval, value])
    raise InputError(f"sql: date_trunc('{unit_text}', ...): unknown interval",
                     hint="use 'second', 'minute', 'hour', 'day', 'week', 'month', 'year', or a multiple "
                          "such as '15 minutes' (week, month and year take no multiples)")


def _percentile(node: exp.Expression) -> exp.Expression:
    args = node.expressions if isinstance(node, exp.Anonymous) else [node.this, *node.expressions]
    if len(args) != 2:
        raise InputError("sql: percentile() takes two arguments: percentile(expr, p) with p between 0 and 1")
    fraction = args[1]
    if isinstance(fraction, exp.Literal) and not fraction.is_string:
        value = float(fraction.this)
        if not 0 <= value <= 1:
            raise InputError(f"sql: percentile(expr, {fraction.this}): p must be between 0 and 1 (0.95 for p95)")
    return exp.Anonymous(this="quantile_cont", expressions=[args[0], fraction])


def _json_path(text: str) -> str:
    text = text.strip()
    if text.startswith(("$", "/")):
        return text
    return "$." + text if not text.startswith("[") else "$" + text


def before_paths(select: exp.Select, owns, is_json) -> None:  # noqa: ANN001 - owns/is_json: node -> bool
    """Rewrite Braintrust functions/operators of this SELECT (not of nested ones) before path typing.
    `is_json(node)`: whether the node is a JSON field or a path into one."""
    for node in list(select.find_all(exp.Func, exp.In, BtIncludes)):
        if not owns(node):
            continue
        if isinstance(node, exp.In):
            if is_json(node.this):
                _mark_membership(node)
            continue
        if isinstance(node, BtIncludes):
            continue
        name = _name(node)
        args = list(node.expressions) if isinstance(node, exp.Anonymous) else [a for a in node.args.values()
                                                                                if isinstance(a, exp.Expression)]
        if name in ("second", "minute", "hour", "day", "week", "month", "year") and len(args) == 1:
            node.replace(_bucket(name, args[0]))
        elif name in ("date_trunc", "datetrunc", "timestamptrunc", "timestamp_trunc") and isinstance(
                node, exp.DateTrunc | exp.TimestampTrunc | exp.Anonymous):
            _date_trunc(node)
        elif name == "percentile":
            node.replace(_percentile(node))
        elif name == "count_distinct" and len(args) == 1:
            node.replace(exp.Count(this=exp.Distinct(expressions=[args[0]])))
        elif name in ("json_extract", "jsonextract") and len(args) == 2:
            node.replace(BtJsonExtract(this=args[0], path=exp.Literal.string(_json_path(
                _string_arg(args[1], "json_extract(): the path")))))


def _date_trunc(node: exp.Expression) -> None:
    if isinstance(node, exp.Anonymous):
        unit, value = node.expressions[0], node.expressions[1]
        node.replace(_bucket(_string_arg(unit, "date_trunc(): the interval"), value))
        return
    unit = node.args.get("unit")
    text = unit.name if isinstance(unit, exp.Var | exp.Literal) else unit.sql() if unit else ""
    node.replace(_bucket(text, node.this))


def _mark_membership(node: exp.In) -> None:
    values = node.expressions
    if node.args.get("query") or not values or not all(isinstance(v, exp.Literal) and v.is_string for v in values):
        return
    node.replace(BtIn(this=node.this, expressions=list(values)))


# after the paths -------------------------------------------------------------------------

def after_paths(select: exp.Select, owns, context) -> None:  # noqa: ANN001 - owns/context: callables
    """Expand marker nodes and `estimated_cost()` into DuckDB SQL."""
    for node in list(select.find_all(BtIn, BtIncludes, BtJsonExtract, exp.Anonymous)):
        if not owns(node):
            continue
        if isinstance(node, BtIn):
            node.replace(_membership(node.this, [v.this for v in node.expressions]))
        elif isinstance(node, BtIncludes):
            node.replace(_includes(node))
        elif isinstance(node, BtJsonExtract):
            node.replace(_typed_json(node, context(node)))
        elif str(node.this).lower() == "estimated_cost":
            if node.expressions:
                raise InputError("sql: estimated_cost() takes no arguments")
            node.replace(exp.Paren(this=sqlglot.parse_one(estimated_cost_sql(), read="duckdb")))


def _sql(node: exp.Expression) -> str:
    return node.sql(dialect="duckdb")


def _list(values: list[str]) -> str:
    return "[" + ", ".join(sql_string(v) for v in values) + "]"


def _membership(value: exp.Expression, values: list[str]) -> exp.Expression:
    j = _sql(value)
    text = (f"CASE WHEN json_type(({j})::JSON) = 'ARRAY' THEN list_has_any(json_extract_string(({j})::JSON, '$[*]'), "
            f"{_list(values)}) ELSE json_extract_string(({j})::JSON, '$') IN ({_list(values)[1:-1]}) END")
    return exp.Paren(this=sqlglot.parse_one(text, read="duckdb"))


def _includes(node: BtIncludes) -> exp.Expression:
    right = node.expression
    while isinstance(right, exp.Paren):
        right = right.this
    if isinstance(right, exp.Array):
        items = right.expressions
    else:
        items = [right]
    if not items or not all(isinstance(i, exp.Literal) for i in items):
        raise InputError("sql: INCLUDES takes a quoted value or a list of quoted values, e.g. tags INCLUDES 'triage'",
                         hint="or use IN: tags IN ('triage')")
    values = [i.this for i in items]
    j = _sql(node.this)
    every = " AND ".join(
        f"list_contains(CASE json_type(({j})::JSON) WHEN 'ARRAY' THEN json_extract_string(({j})::JSON, '$[*]') "
        f"WHEN 'OBJECT' THEN json_extract_string(({j})::JSON, '$.*') "
        f"ELSE [json_extract_string(({j})::JSON, '$')] END, '{v.replace(chr(39), chr(39) * 2)}')" for v in values)
    return exp.Paren(this=sqlglot.parse_one(every, read="duckdb"))


def _typed_json(node: BtJsonExtract, mode: str) -> exp.Expression:
    source = f"TRY_CAST(({_sql(node.this)}) AS JSON)"
    path = node.args["path"].sql(dialect="duckdb")
    if mode == "json":
        text = f"json_extract({source}, {path})"
    elif mode == "number":
        text = f"TRY_CAST(json_extract_string({source}, {path}) AS DOUBLE)"
    elif mode == "bool":
        text = f"TRY_CAST(json_extract_string({source}, {path}) AS BOOLEAN)"
    else:
        text = f"json_extract_string({source}, {path})"
    return sqlglot.parse_one(text, read="duckdb")


# estimated cost --------------------------------------------------------------------------

@cache
def _prices() -> dict[str, tuple[float, float]]:
    """USD per 1M (prompt, completion) tokens by model name prefix (backends/btsql/prices.json)."""
    text = resources.files("bt_flywheel.backends.btsql").joinpath("prices.json").read_text(encoding="utf-8")
    table = json.loads(text)["models"]
    return {name: (float(p["input"]), float(p["output"])) for name, p in table.items()}


def _metric(key: str) -> str:
    return f"TRY_CAST(json_extract_string(metrics, '$.{key}') AS DOUBLE)"


def estimated_cost_sql() -> str:
    """`metrics.estimated_cost` when logged, else prompt/completion tokens priced by the span's model
    (`metadata.model`); NULL for spans without tokens or with an unknown model."""
    model = "lower(coalesce(json_extract_string(metadata, '$.model'), ''))"
    # longest prefix first so 'gpt-4o-mini' is not priced as 'gpt-4o'
    names = sorted(_prices(), key=len, reverse=True)
    input_case = " ".join(f"WHEN starts_with({model}, '{n}') THEN {_prices()[n][0]}" for n in names)
    output_case = " ".join(f"WHEN starts_with({model}, '{n}') THEN {_prices()[n][1]}" for n in names)
    priced = (f"(coalesce({_metric('prompt_tokens')}, 0) * (CASE {input_case} END) + "
              f"coalesce({_metric('completion_tokens')}, 0) * (CASE {output_case} END)) / 1000000.0")
    has_tokens = f"({_metric('prompt_tokens')} IS NOT NULL OR {_metric('completion_tokens')} IS NOT NULL)"
    return f"coalesce({_metric('estimated_cost')}, CASE WHEN {has_tokens} THEN {priced} END)"


def duration_sql() -> str:
    """Braintrust's `duration`: seconds from metrics.start to metrics.end."""
    return f"({_metric('end')} - {_metric('start')})"
