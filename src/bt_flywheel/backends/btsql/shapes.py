"""Data sources as DuckDB subqueries: the three Braintrust shapes, ANY_SPAN()/FILTER_SPANS(), UNPIVOT.

- spans (default): one row per span.
- traces: every span of each trace in which one span satisfies the whole WHERE (ANY_SPAN(c) terms
  may be satisfied by other spans of the trace; FILTER_SPANS(c) terms narrow the returned spans
  without changing which traces are selected).
- summary: one row per selected trace: the root span's fields, `scores` averaged per name over
  the trace's spans, and `metrics` rolled up (token sums, estimated_cost sum, start/end, duration,
  llm_calls, tool_calls, errors).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from bt_flywheel.backends.btsql.functions import estimated_cost_sql
from bt_flywheel.core.errors import InputError
from bt_flywheel.core.sqltext import sql_string

EXTRA_COLUMN = "__bt_extra"
SHAPES = ("spans", "traces", "summary")
_ID_COLUMNS = ("experiment_id", "dataset_id", "log_id")
TOPICS_COLUMNS = ("facets", "classifications")
_NUMERIC_FIELDS = ("scores", "metrics")


@dataclass
class SourceRef:
    """One table function call in the query."""

    kind: str                    # project_logs | experiment | dataset
    refs: list[str]
    shape: str = "spans"
    alias: str | None = None


def base_sql(ref: SourceRef, object_ids: list[str], absent: frozenset[str]) -> str:
    """All spans of the source, with Braintrust's columns."""
    object_type = ref.kind
    ids = ", ".join(sql_string(i) for i in object_ids)
    if object_type == "project_logs":
        project = "object_id"
        own = {"log_id": "'g'"}
    else:
        project = (f"(SELECT o.project_id FROM objects o WHERE o.object_type = {sql_string(object_type)} "
                   "AND o.id = spans.object_id)")
        own = {f"{object_type}_id": "object_id"}
    ids_sql = ", ".join(f"{own.get(c, 'NULL::VARCHAR')} AS {c}" for c in _ID_COLUMNS)
    topics = ", ".join(f"NULL::JSON AS {c}" if c in absent else c for c in TOPICS_COLUMNS)
    return (f"SELECT id, span_id, root_span_id, span_parents, is_root, created, _xact_id, "
            f"lpad(CAST(_xact_id AS VARCHAR), 20, '0') || ':' || id AS _pagination_key, input, output, expected, "
            f"metadata, scores, metrics, span_attributes, tags, error, origin, {topics}, "
            f"json_extract(extra, '/context') AS context, "
            f"{project} AS project_id, {ids_sql}, extra AS {EXTRA_COLUMN} "
            f"FROM spans WHERE object_type = {sql_string(object_type)} AND object_id IN ({ids})")


def _summary_sql(base: str) -> str:
    cost = estimated_cost_sql()
    span_type = "json_extract_string(span_attributes, '$.type')"

    def metric(key: str) -> str:
        return f"TRY_CAST(json_extract_string(metrics, '$.{key}') AS DOUBLE)"

    rollup = (
        "SELECT root_span_id AS _r, "
        f"json_object('prompt_tokens', sum({metric('prompt_tokens')}), "
        f"'completion_tokens', sum({metric('completion_tokens')}), 'tokens', sum({metric('tokens')}), "
        f"'estimated_cost', sum({cost}), 'start', min({metric('start')}), 'end', max({metric('end')}), "
        f"'duration', max({metric('end')}) - min({metric('start')}), "
        f"'llm_calls', count(*) FILTER (WHERE {span_type} = 'llm'), "
        f"'tool_calls', count(*) FILTER (WHERE {span_type} = 'tool'), "
        "'errors', count(*) FILTER (WHERE error IS NOT NULL)) AS _metrics, "
        "count(*) AS _spans FROM _b GROUP BY root_span_id")
    score_rows = ("SELECT root_span_id AS _r, _k, "
                  "avg(TRY_CAST(json_extract_string(scores, '$.\"' || replace(_k, '\"', '\\\"') || '\"') AS DOUBLE)) "
                  "AS _v FROM (SELECT root_span_id, scores, unnest(json_keys(scores)) AS _k FROM _b "
                  "WHERE json_type(scores) = 'OBJECT') GROUP BY root_span_id, _k")
    scores = "SELECT _r, json_group_object(_k, _v) AS _scores FROM (" + score_rows + ") GROUP BY _r"
    root = ("SELECT * FROM _b WHERE is_root OR (root_span_id = id) QUALIFY row_number() OVER "
            "(PARTITION BY root_span_id ORDER BY is_root DESC NULLS LAST, created) = 1")
    columns = ("r.id, r.span_id, r.root_span_id, r.span_parents, r.is_root, r.created, r._xact_id, r._pagination_key, "
               "r.input, r.output, r.expected, r.metadata, s._scores::JSON AS scores, m._metrics::JSON AS metrics, "
               "r.span_attributes, r.tags, r.error, r.origin, r.facets, r.classifications, r.context, r.project_id, "
               f"r.experiment_id, r.dataset_id, r.log_id, r.{EXTRA_COLUMN}")
    return (f"WITH _b AS ({base}) SELECT {columns} FROM ({root}) r JOIN ({rollup}) m ON m._r = r.root_span_id "
            f"LEFT JOIN ({scores}) s ON s._r = r.root_span_id")


def _conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    inner = node
    while isinstance(inner, exp.Paren):
        inner = inner.this
    if isinstance(inner, exp.And):
        return _conjuncts(inner.left) + _conjuncts(inner.right)
    return [inner if _is_call(inner, "filter_spans") else node]


def _is_call(node: exp.Expression, name: str) -> bool:
    return isinstance(node, exp.Anonymous) and str(node.this).lower() == name


def _one_arg(node: exp.Anonymous, name: str) -> exp.Expression:
    if len(node.expressions) != 1:
        raise InputError(f"sql: {name.upper()}() takes one condition, e.g. {name.upper()}(span_attributes.type = 'llm')")
    return node.expressions[0]


def expand_any_span(where: exp.Expression, base: str) -> exp.Expression:
    """ANY_SPAN(c) -> the row's trace has a span (any span) satisfying c."""
    for node in list(where.find_all(exp.Anonymous)):
        if _is_call(node, "any_span"):
            cond = _one_arg(node, "any_span").sql(dialect="duckdb")
            node.replace(exp.Paren(this=sqlglot.parse_one(
                f"root_span_id IN (SELECT root_span_id FROM ({base}) AS _any WHERE {cond})", read="duckdb")))
    return where


def _and(parts: list[exp.Expression]) -> exp.Expression | None:
    result = None
    for part in parts:
        term = part.copy()
        if not isinstance(term, exp.Paren | exp.Predicate | exp.Not | exp.Anonymous | exp.Func | exp.Column):
            term = exp.Paren(this=term)   # an OR (or anything looser than AND) keeps its own parentheses
        result = term if result is None else exp.And(this=result, expression=term)
    return result


def source_subquery(ref: SourceRef, object_ids: list[str], where: exp.Expression | None, alias: str,
                    absent: frozenset[str]) -> tuple[exp.Expression, exp.Expression | None]:
    """(the FROM subquery for this source, the WHERE left for the outer SELECT)."""
    base = base_sql(ref, object_ids, absent)
    parts = _conjuncts(where)
    narrow = [_one_arg(p, "filter_spans") for p in parts if _is_call(p, "filter_spans")]
    select_by = [p for p in parts if not _is_call(p, "filter_spans")]
    for part in parts:
        for node in part.find_all(exp.Anonymous):
            if _is_call(node, "filter_spans") and node is not part:
                raise InputError("sql: FILTER_SPANS() must be a top-level AND term of WHERE",
                                 hint="e.g. WHERE created > now() - interval 1 day AND FILTER_SPANS(error IS NOT NULL)")
    selection = _and(select_by)
    if selection is not None:
        selection = expand_any_span(selection, base)
    if ref.shape == "spans":
        remaining = _and([*([selection] if selection is not None else []), *narrow])
        sql = base
    else:
        sql = base
        if selection is not None:
            cond = selection.sql(dialect="duckdb")
            sql = (f"SELECT * FROM ({base}) AS _all WHERE root_span_id IN "
                   f"(SELECT root_span_id FROM ({base}) AS _m WHERE {cond})")
        if ref.shape == "summary":
            if narrow:
                raise InputError("sql: FILTER_SPANS() has no meaning on shape => 'summary' (one row per trace)",
                                 hint="use shape => 'traces' to narrow the returned spans")
            sql = _summary_sql(sql)
        remaining = _and(narrow)
    return embedded(sql, alias), remaining


def embedded(sql: str, alias: str) -> exp.Subquery:
    """`(sql) AS alias` for SQL this module wrote. sqlglot would parse it only to print it again (most
    of a translation's time), so the tree holds a placeholder that `splice` swaps for the text."""
    token = f"_fw_source_{uuid.uuid4().hex}"
    node = exp.Subquery(this=exp.Table(this=exp.to_identifier(token)),
                        alias=exp.TableAlias(this=exp.to_identifier(alias)))
    node.meta["embedded_sql"] = (token, sql)
    return node


def embedded_sql(node: exp.Expression) -> str:
    """The SQL inside a source subquery (an `embedded` one's own text)."""
    held = node.meta.get("embedded_sql") if isinstance(node, exp.Subquery) else None
    return held[1] if held else node.this.sql(dialect="duckdb")


def splice(tree: exp.Expression) -> str:
    """The tree as DuckDB SQL, each `embedded` placeholder replaced by its SQL."""
    text = tree.sql(dialect="duckdb")
    for node in tree.find_all(exp.Subquery):
        held = node.meta.get("embedded_sql")
        if held:
            token, sql = held
            if text.count(f"({token})") != 1:
                raise AssertionError(f"shapes.splice: placeholder {token} printed {text.count(token)} times")
            text = text.replace(f"({token})", f"({sql})")
    return text


# UNPIVOT ----------------------------------------------------------------------------------

def unpivot(subquery: exp.Expression, pivot: exp.Pivot, alias: str) -> exp.Expression:
    """`UNPIVOT (value FOR name IN (field))` over a JSON field: one row per key of an object (per
    element of an array, `name` = its 0-based index), other columns kept; null values dropped."""
    values = pivot.expressions
    fields = pivot.args.get("fields") or []
    if len(values) != 1 or len(fields) != 1 or len(fields[0].expressions) != 1:
        raise InputError("sql: UNPIVOT takes one value column, one name column and one field, "
                         "e.g. UNPIVOT (value FOR score IN (scores))")
    value_col = values[0].name
    name_col = fields[0].this.name
    field = fields[0].expressions[0]
    field_name = field.name if isinstance(field, exp.Column | exp.Identifier) else ""
    if not field_name:
        raise InputError(f"sql: UNPIVOT ... IN ({field.sql()}): give a JSON field such as scores, metrics or tags")
    inner = embedded_sql(subquery)
    f = f'"{field_name}"'
    key = "'$.\"' || replace(_k, '\"', '\\\"') || '\"'"
    if field_name in _NUMERIC_FIELDS:
        value = f"TRY_CAST(json_extract_string({f}, {key}) AS DOUBLE)"
    else:
        value = f"CASE WHEN json_type({f}) = 'ARRAY' THEN json_extract_string({f}, '$[' || _k || ']') " \
                f"ELSE json_extract_string({f}, {key}) END"
    keys = (f"CASE WHEN json_type({f}) = 'OBJECT' THEN json_keys({f}) WHEN json_type({f}) = 'ARRAY' "
            f"THEN CAST(range(CAST(json_array_length({f}) AS BIGINT)) AS VARCHAR[]) END")
    sql = (f"SELECT * EXCLUDE (_k, _v), _k AS \"{name_col}\", _v AS \"{value_col}\" FROM "
           f"(SELECT *, {value} AS _v FROM (SELECT *, unnest({keys}) AS _k FROM ({inner}) AS _s)) WHERE _v IS NOT NULL")
    return embedded(sql, alias)
