"""Braintrust SQL -> DuckDB SQL over the local store (DESIGN.md §5).

The query is parsed with sqlglot (never regex), checked (exactly one SELECT; only our table
functions; no file/extension/settings functions), linted like Braintrust's server (a
`project_logs()` scan needs a bound on created/_xact_id/_pagination_key or an id/root_span_id
filter), then rewritten:

- `project_logs('<id or name>' [, shape => 'traces'])`, `experiment('<id or name>'[, ...])`,
  `dataset('<id or name>')` (and `logs` with a project) become subqueries over `spans`;
- a dotted path into a JSON column (`input.metadata.facet_name`, `scores."Factuality"`,
  `span_attributes.name`) becomes a DuckDB JSON extraction typed by its context: a number under
  arithmetic, avg/sum/min/max or comparison with a number; text under comparison with a string,
  LIKE/ILIKE/MATCH, IN ('a', ...) and IS NULL; JSON when selected or grouped (decoded back to JSON
  values on output); ORDER BY a path sorts numbers numerically, then text;
- Braintrust's functions, operators, shapes and paging are in `backends/btsql/` (dialect,
  functions, shapes, paging, messages); see docs/sql-differences.md for what still differs;
- `search('term')` and `<expr> MATCH 'term'` are full-text filters: every alphanumeric token of
  the term must occur as a whole token (case-insensitive) in the string values of input, output
  and metadata (search) or of the expression (MATCH). JSON object keys are not searched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from bt_flywheel.backends.btsql import functions, paging, shapes
from bt_flywheel.backends.btsql.dialect import BraintrustSQL, BtIncludes, BtMatch
from bt_flywheel.backends.btsql.messages import parse_refusal
from bt_flywheel.backends.btsql.shapes import EXTRA_COLUMN, SourceRef
from bt_flywheel.core.errors import InputError

__all__ = ["BraintrustSQL", "EXTRA_COLUMN", "LINT_ERROR", "LINT_HINT", "LINT_MESSAGE", "SourceRef", "Translation",
           "parse_one_select", "translate"]

LINT_MESSAGE = ("No filters available for segment elimination. Add a range filter on created, _xact_id, "
                "or _pagination_key, or scope to a specific root_span_id or id.")
LINT_ERROR = f"Query blocked due to lint failures - {LINT_MESSAGE}"
LINT_HINT = "add e.g. `created >= NOW() - INTERVAL 7 day`, or rerun with --force-ignore-linter"

SOURCE_FUNCTIONS = ("project_logs", "experiment", "dataset")
JSON_COLUMNS = frozenset({"input", "output", "expected", "metadata", "scores", "metrics", "span_attributes",
                          "tags", "error", "origin", "span_parents", "context", "facets", "classifications"})
SCALAR_COLUMNS = frozenset({"id", "span_id", "root_span_id", "is_root", "created", "_xact_id",
                            "_pagination_key", "project_id", "experiment_id", "dataset_id", "log_id"})
BASE_COLUMNS = JSON_COLUMNS | SCALAR_COLUMNS
VIRTUAL_COLUMNS = {"duration": functions.duration_sql}
_RANGE_BOUNDS = frozenset({"created", "_xact_id", "_pagination_key"})
_ID_BOUNDS = frozenset({"root_span_id", "id"})
_NUMERIC_ROOTS = frozenset({"scores", "metrics"})
_DENIED_PREFIXES = ("read_", "glob", "getenv", "query", "pragma", "duckdb_", "sniff_", "parquet_", "iceberg_",
                    "delta_", "sqlite_", "postgres_", "mysql_", "http", "load", "install", "current_setting",
                    "set_", "which_secret", "list_files", "system", "import", "export", "attach", "detach",
                    "checkpoint", "copy", "ducklake", "arrow_scan", "json_execute", "test_", "enable_", "disable_")
_NUMERIC_AGGS = (exp.Avg, exp.Sum, exp.Min, exp.Max, exp.Stddev, exp.StddevPop, exp.StddevSamp, exp.Variance,
                 exp.VariancePop, exp.Quantile, exp.ApproxQuantile, exp.Median)
_NUMERIC_SCALARS = (exp.Round, exp.Abs, exp.Ceil, exp.Floor, exp.Sqrt, exp.Ln, exp.Log, exp.Exp, exp.Pow,
                    exp.Greatest, exp.Least)
_NUMERIC_NAMED = frozenset({"quantile_cont", "quantile_disc", "round", "abs", "ceil", "floor", "sqrt", "ln", "log",
                            "exp", "pow", "power"})
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_ARITH = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.IntDiv)
_UNSUPPORTED = ((exp.Join, "JOIN"), (exp.Union, "UNION"), (exp.Intersect, "INTERSECT"), (exp.Except, "EXCEPT"),
                (exp.Window, "window functions (OVER ...)"))


@dataclass
class Translation:
    sql: str
    sources: list[SourceRef] = field(default_factory=list)
    paging: paging.Paging | None = None


# A resolver maps (kind, [id or name, ...]) to the object ids (project ids for project_logs).
Resolver = Callable[[str, list[str]], list[str]]


def parse_one_select(query: str) -> exp.Select:
    """Parse and check: exactly one SELECT statement, nothing that writes, reads files or sets config."""
    if not query or not query.strip():
        raise InputError("sql: empty query")
    try:
        statements = [s for s in sqlglot.parse(query, dialect=BraintrustSQL) if s is not None]
    except ParseError as exc:
        raise InputError(parse_refusal(exc.errors), hint=_PARSE_HINT) from None
    except TokenError:
        raise InputError("sql: cannot parse the query (an unterminated string or quote?)", hint=_PARSE_HINT) from None
    if len(statements) != 1:
        raise InputError(f"sql: expected exactly one SELECT statement, got {len(statements)} statements")
    tree = statements[0]
    for kind, what in _UNSUPPORTED:
        if isinstance(tree, kind):
            raise InputError(f"sql: {what} is not supported by Braintrust SQL",
                             hint="run one SELECT per source and combine the answers yourself")
    if not isinstance(tree, exp.Select):
        kind = tree.key.upper() if isinstance(tree, exp.Expression) else type(tree).__name__
        raise InputError(f"sql: only a single SELECT is allowed, got {kind}")
    for node in tree.walk():
        for kind, what in _UNSUPPORTED:
            if isinstance(node, kind):
                raise InputError(f"sql: {what} is not supported by Braintrust SQL",
                                 hint="query one source per statement; use GROUP BY root_span_id with any_value(), "
                                      "shape => 'traces' or ANY_SPAN() to combine spans of a trace")
        if isinstance(node, exp.Subquery) and node.alias in BASE_COLUMNS:
            raise InputError(f"sql: the subquery alias `{node.alias}` is also a field name, so fields inside it "
                             "cannot be resolved (Braintrust answers `Field not found`)",
                             hint="rename the alias to something that is no field name, e.g. AS unpivoted")
        if isinstance(node, exp.With):
            raise InputError("sql: WITH (common table expressions) is not supported; use a subquery in FROM")
        if isinstance(node, exp.Into):
            raise InputError("sql: SELECT ... INTO is not allowed")
        if isinstance(node, exp.Command | exp.Pragma | exp.Set | exp.Create | exp.Drop | exp.Insert
                      | exp.Update | exp.Delete | exp.Copy | exp.Attach | exp.Detach | exp.Use):
            raise InputError(f"sql: {node.key.upper()} is not allowed; only a single SELECT is")
        if isinstance(node, exp.Func):
            name = _func_name(node)
            if name and name.lower().startswith(_DENIED_PREFIXES) and name.lower() not in SOURCE_FUNCTIONS:
                raise InputError(f"sql: function {name}() is not allowed in flywheel sql")
    return tree


_PARSE_HINT = ("Braintrust SQL: SELECT ... FROM project_logs('<project>') WHERE ... GROUP BY ... ORDER BY ... LIMIT n; "
               "see docs/sql-differences.md")


def _func_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this)
    try:
        return node.sql_name()
    except Exception:  # pragma: no cover - exotic sqlglot nodes
        return type(node).__name__


def translate(query: str, resolve: Resolver, *, project: str | None = None, force_ignore_linter: bool = False,
              absent_columns: frozenset[str] | Callable[[], frozenset[str]] = frozenset()) -> Translation:
    """Braintrust SQL -> DuckDB SQL over the store's tables (see module docstring).

    `absent_columns`: store columns an older, not yet migrated store lacks; they read as NULL (a
    callable is asked only once the query has passed the parser and the linter)."""
    tree = parse_one_select(query)
    sources = _collect_sources(tree, project)
    if not force_ignore_linter:
        lint(tree)
    spans_source = any(t.meta.get("bt_source") and t.meta["bt_source"].shape != "summary" and not t.args.get("pivots")
                       for t in _own_tables(tree))
    pages = paging.prepare(tree, spans_source)
    absent = absent_columns() if callable(absent_columns) else absent_columns
    for select in list(tree.find_all(exp.Select)):
        _rewrite_select(select, resolve, absent)
    return Translation(sql=shapes.splice(tree), sources=sources, paging=pages)


# sources ------------------------------------------------------------------------------------

def _source_of(table: exp.Table, project: str | None) -> SourceRef:
    func = table.this
    alias = table.alias or None
    if isinstance(func, exp.Anonymous | exp.Func) and not isinstance(func, exp.Identifier):
        name = _func_name(func).lower()
        if name not in SOURCE_FUNCTIONS:
            raise InputError(f"sql: table function {name}() is not allowed; use project_logs(), experiment() "
                             "or dataset()")
        refs: list[str] = []
        shape = "spans"
        for arg in func.expressions:
            if isinstance(arg, exp.Kwarg | exp.PropertyEQ | exp.EQ):
                key = arg.this.name.lower()
                value = arg.expression
                if key != "shape" or not isinstance(value, exp.Literal) or not value.is_string:
                    raise InputError(f"sql: {name}(): unknown argument {arg.sql()}")
                shape = value.this.lower()
            elif isinstance(arg, exp.Literal) and arg.is_string:
                refs.append(arg.this)
            else:
                raise InputError(f"sql: {name}(): arguments must be quoted ids or names, got {arg.sql()}")
        if not refs:
            raise InputError(f"sql: {name}(): give the id or name of the {name.replace('_', ' ')}")
        if shape not in shapes.SHAPES:
            raise InputError(f"sql: {name}(): unknown shape => '{shape}' (use 'spans', 'traces' or 'summary')")
        if name != "experiment" and len(refs) > 1:
            raise InputError(f"sql: {name}() takes one id or name, got {len(refs)}")
        return SourceRef(name, refs, shape, alias)
    name = table.name.lower()
    if name in ("logs", "project_logs") and not table.db:
        if not project:
            raise InputError(f"sql: FROM {table.name} needs a project", hint="pass --project NAME")
        return SourceRef("project_logs", [project], "spans", alias)
    raise InputError(f"sql: unknown table {table.sql()!s}; use project_logs('<project>'), "
                     "experiment('<id or name>') or dataset('<id or name>')")


def _collect_sources(tree: exp.Select, project: str | None) -> list[SourceRef]:
    sources = []
    for table in tree.find_all(exp.Table):
        ref = _source_of(table, project)
        table.meta["bt_source"] = ref
        sources.append(ref)
    if not sources:
        raise InputError("sql: no FROM source; use FROM project_logs('<project>'), experiment(...) or dataset(...)")
    return sources


# lint --------------------------------------------------------------------------------------

def lint(tree: exp.Select) -> None:
    """Refuse a project_logs scan without a bound, like Braintrust's strict lint mode."""
    for select in tree.find_all(exp.Select):
        tables = [t for t in _own_tables(select) if t.meta.get("bt_source") and
                  t.meta["bt_source"].kind == "project_logs"]
        if not tables:
            continue
        where = select.args.get("where")
        aliases = {t.alias for t in tables if t.alias}
        if where is None or not _has_bound(where.this, aliases):
            raise InputError(LINT_ERROR, hint=LINT_HINT)


def _own_tables(select: exp.Select) -> list[exp.Table]:
    tables = []
    from_ = select.args.get("from") or select.args.get("from_")
    nodes = [from_.this] if from_ else []
    nodes += [j.this for j in select.args.get("joins") or []]
    for node in nodes:
        if isinstance(node, exp.Table):
            tables.append(node)
    return tables


def _bound_column(node: exp.Expression, aliases: set[str]) -> str | None:
    if isinstance(node, exp.Column) and (not node.table or node.table in aliases) and not node.args.get("db"):
        return node.name
    return None


def _has_bound(node: exp.Expression, aliases: set[str]) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _has_bound(node.left, aliases) or _has_bound(node.right, aliases)
    if isinstance(node, exp.Or):
        return _has_bound(node.left, aliases) and _has_bound(node.right, aliases)
    if isinstance(node, exp.EQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
        names = {_bound_column(node.left, aliases), _bound_column(node.right, aliases)}
        allowed = _RANGE_BOUNDS | _ID_BOUNDS if isinstance(node, exp.EQ) else _RANGE_BOUNDS
        return bool(names & allowed)
    if isinstance(node, exp.Between):
        return _bound_column(node.this, aliases) in _RANGE_BOUNDS
    if isinstance(node, exp.In):
        return _bound_column(node.this, aliases) in _ID_BOUNDS | _RANGE_BOUNDS
    return False


# rewriting ---------------------------------------------------------------------------------

def _rewrite_select(select: exp.Select, resolve: Resolver, absent: frozenset[str]) -> None:
    tables = [t for t in _own_tables(select) if t.meta.get("bt_source")]
    aliases = {t.alias for t in tables if t.alias}

    def owns(node: exp.Expression) -> bool:
        return _owner(node) is select

    if tables:
        _quoted_strings(select)
        _inline_aliases(select)
    def is_json(node: exp.Expression) -> bool:
        path = _path_parts(node, aliases) if tables and isinstance(node, _PATH_NODES) else None
        return bool(path) and (len(path) > 1 or path[0] in JSON_COLUMNS)

    functions.before_paths(select, owns, is_json)
    group_keys = _group_keys(select, aliases)
    # search()/MATCH first: they wrap whole JSON columns
    for node in list(select.find_all(exp.Anonymous)):
        if owns(node) and str(node.this).lower() == "search":
            node.replace(_search_expr(node))
    for node in list(select.find_all(BtMatch)):
        if owns(node):
            node.replace(_match_expr(node, aliases, group_keys))
    _rewrite_order(select, aliases, group_keys)
    if tables:
        _rewrite_paths(select, aliases, group_keys)
    functions.after_paths(select, owns, lambda node: _context(node, ()))
    where = select.args.get("where")
    for table in tables:
        ref: SourceRef = table.meta["bt_source"]
        subquery, remaining = shapes.source_subquery(ref, resolve(ref.kind, ref.refs),
                                                     where.this if where is not None else None,
                                                     table.alias or "_bt_source", absent)
        for pivot in table.args.get("pivots") or []:
            if pivot.args.get("unpivot"):
                subquery = shapes.unpivot(subquery, pivot, table.alias or "_bt_source")
            else:
                subquery.append("pivots", pivot.copy())
        if table.args.get("sample") is not None:
            raise InputError("sql: TABLESAMPLE is not supported by the local backend",
                             hint="use ORDER BY RANDOM() LIMIT n for a random sample, or run it with --remote")
        table.replace(subquery)
        select.set("where", exp.Where(this=remaining) if remaining is not None else None)


def _rewrite_paths(select: exp.Select, aliases: set[str], group_keys: set[tuple[str, ...]]) -> None:
    selected = {e.alias for e in select.expressions if isinstance(e, exp.Alias)}
    for node in list(select.find_all(*_PATH_NODES)):
        if _owner(node) is not select or node.parent is None or _inside_path(node):
            continue
        path = _path_parts(node, aliases)
        if path is None:
            if isinstance(node, exp.Column) and not node.table and node.name in VIRTUAL_COLUMNS \
                    and node.name not in selected:
                virtual = exp.Paren(this=sqlglot.parse_one(VIRTUAL_COLUMNS[node.name](), read="duckdb"))
                if node.parent is select and node in select.expressions:
                    virtual = exp.Alias(this=virtual, alias=exp.to_identifier(node.name))
                node.replace(virtual)
            continue
        if len(path) == 1:
            if path[0] in BASE_COLUMNS:
                node.replace(exp.column(path[0], quoted=True))
            continue
        replacement = _path_expr(path, _context(node, path), path in group_keys)
        if node.parent is select and node in select.expressions:
            replacement = exp.Alias(this=replacement, alias=exp.to_identifier(path[-1], quoted=True))
        node.replace(replacement)


def _quoted_strings(select: exp.Select) -> None:
    """Braintrust filters accept double-quoted string literals (`metadata.model = "gpt-4"`): in WHERE
    and HAVING, a double-quoted name that is no field and no SELECT alias is a string."""
    names = BASE_COLUMNS | set(VIRTUAL_COLUMNS) | {e.alias for e in select.expressions if isinstance(e, exp.Alias)}
    for clause in (select.args.get("where"), select.args.get("having")):
        if clause is None:
            continue
        for node in list(clause.find_all(exp.Column)):
            ident = node.this
            if (isinstance(ident, exp.Identifier) and ident.quoted and not node.table and node.name not in names
                    and not isinstance(node.parent, exp.Dot)):
                node.replace(exp.Literal.string(node.name))


def _inline_aliases(select: exp.Select) -> None:
    """A SELECT alias used in WHERE (`... AS category ... WHERE category = 'support'`) stands for its
    expression, so a JSON path behind it is typed by the comparison like a path written there."""
    where = select.args.get("where")
    if where is None:
        return
    by_alias = {e.alias: e.this for e in select.expressions
                if isinstance(e, exp.Alias) and not any(isinstance(n, exp.AggFunc) for n in e.this.find_all(exp.AggFunc))}
    for node in list(where.find_all(exp.Column)):
        if not node.table and node.name in by_alias and node.name not in BASE_COLUMNS \
                and not isinstance(node.parent, exp.Dot):
            node.replace(by_alias[node.name].copy())


def _owner(node: exp.Expression) -> exp.Select | None:
    parent = node.parent
    while parent is not None and not isinstance(parent, exp.Select):
        parent = parent.parent
    return parent


_PATH_NODES = (exp.Column, exp.Dot, exp.Bracket)


def _inside_path(node: exp.Expression) -> bool:
    """True for the inner part of a longer path (`a.b` inside `a.b.c` or `a.b[0]`)."""
    parent = node.parent
    return isinstance(parent, exp.Dot) or (isinstance(parent, exp.Bracket) and parent.this is node)


def _subscript(node: exp.Bracket) -> str | None:
    """The key of `x[0]` / `x['key']` as a JSON pointer segment, or None if not a constant."""
    if len(node.expressions) != 1:
        return None
    index = node.expressions[0]
    if isinstance(index, exp.Literal):
        return index.this if index.is_string else str(int(index.this)) if index.this.isdigit() else None
    return None


def _path_parts(node: exp.Expression, aliases: set[str]) -> tuple[str, ...] | None:
    parts: list[str] = []
    cur = node
    trailing: list[str] = []
    while isinstance(cur, exp.Dot | exp.Bracket):
        segment = (cur.expression.this if isinstance(cur, exp.Dot) and isinstance(cur.expression, exp.Identifier)
                   else _subscript(cur) if isinstance(cur, exp.Bracket) else None)
        if segment is None:
            return None
        trailing.insert(0, segment)
        cur = cur.this
    if not isinstance(cur, exp.Column) or isinstance(cur.this, exp.Star):
        return None
    for key in ("catalog", "db", "table"):
        part = cur.args.get(key)
        if part is not None:
            parts.append(part.this if isinstance(part, exp.Identifier) else part.name)
    parts.append(cur.this.this if isinstance(cur.this, exp.Identifier) else cur.name)
    parts += trailing
    if len(parts) > 1 and parts[0] in aliases and parts[1] in BASE_COLUMNS:
        parts = parts[1:]
    if parts[0] not in BASE_COLUMNS:
        return None
    if len(parts) > 1 and parts[0] not in JSON_COLUMNS:
        raise InputError(f"sql: {'.'.join(parts)}: {parts[0]} is not a JSON field")
    return tuple(parts)


def _group_keys(select: exp.Select, aliases: set[str]) -> set[tuple[str, ...]]:
    group = select.args.get("group")
    if not group:
        return set()
    by_alias: dict[str, exp.Expression] = {}
    items = select.expressions
    for item in items:
        if isinstance(item, exp.Alias):
            by_alias[item.alias] = item.this
    keys = set()
    for expr in group.expressions:
        target = expr
        if isinstance(expr, exp.Literal) and not expr.is_string and expr.this.isdigit():
            index = int(expr.this) - 1
            if 0 <= index < len(items):
                target = items[index].this if isinstance(items[index], exp.Alias) else items[index]
        elif isinstance(expr, exp.Column) and not expr.table and expr.name in by_alias:
            target = by_alias[expr.name]
        if isinstance(target, _PATH_NODES):
            path = _path_parts(target, aliases)
            if path and len(path) > 1:
                keys.add(path)
    return keys


def _pointer(parts: tuple[str, ...]) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _path_expr(path: tuple[str, ...], mode: str, grouped: bool) -> exp.Expression:
    column = exp.column(path[0], quoted=True)
    pointer = exp.Literal.string(_pointer(path[1:]))
    as_json = exp.Anonymous(this="json_extract", expressions=[column, pointer])
    if mode == "json":
        return as_json
    if grouped:
        text: exp.Expression = exp.Anonymous(this="json_extract_string", expressions=[as_json, exp.Literal.string("$")])
    else:
        text = exp.Anonymous(this="json_extract_string", expressions=[column, pointer])
    if mode == "text":
        return text
    target = "DOUBLE" if mode == "number" else "BOOLEAN"
    return exp.TryCast(this=text, to=exp.DataType.build(target))


def _is_numeric(node: exp.Expression) -> bool:
    while isinstance(node, exp.Paren | exp.Neg):
        node = node.this
    if isinstance(node, exp.Literal):
        return not node.is_string
    if isinstance(node, _ARITH):
        return True
    if isinstance(node, (*_NUMERIC_AGGS, *_NUMERIC_SCALARS, exp.Count)):
        return True
    if isinstance(node, exp.If):
        return _is_numeric(node.args["true"]) and (node.args.get("false") is None or _is_numeric(node.args["false"]))
    if isinstance(node, exp.Case):
        branches = [i.args["true"] for i in node.args.get("ifs") or []] + ([node.args["default"]]
                                                                         if node.args.get("default") else [])
        return bool(branches) and all(_is_numeric(b) for b in branches)
    if isinstance(node, exp.Anonymous) and str(node.this).lower() in _NUMERIC_NAMED:
        return True
    if isinstance(node, _PATH_NODES):
        parts = _path_parts(node, set())
        return bool(parts) and parts[0] in _NUMERIC_ROOTS and len(parts) > 1
    return False


def _is_string(node: exp.Expression) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    return isinstance(node, exp.Literal) and node.is_string


def _context(node: exp.Expression, path: tuple[str, ...]) -> str:
    """json | text | number | bool: how the value of a JSON path is used where it appears.
    Scores and metrics are numbers wherever the context does not say otherwise."""
    mode = _context_of(node)
    if mode == "text" and path and path[0] in _NUMERIC_ROOTS and not _compared_with_string(node):
        return "number"
    return mode


def _compared_with_string(node: exp.Expression) -> bool:
    child, parent = node, node.parent
    while isinstance(parent, exp.Paren):
        child, parent = parent, parent.parent
    if isinstance(parent, _COMPARISONS):
        return _is_string(parent.right if child is parent.left else parent.left)
    if isinstance(parent, exp.In | exp.Between | exp.Like | exp.ILike | BtMatch):
        return True
    return False


def _context_of(node: exp.Expression) -> str:
    child, parent = node, node.parent
    while isinstance(parent, exp.Paren):
        child, parent = parent, parent.parent
    if parent is None:
        return "json"
    if isinstance(parent, exp.Select):
        return "json" if child in parent.expressions else "bool"
    if isinstance(parent, exp.Alias):
        return "json"
    if isinstance(parent, exp.Group):
        return "json"
    if isinstance(parent, (*_NUMERIC_AGGS, *_ARITH, *_NUMERIC_SCALARS)):
        return "number"
    if isinstance(parent, exp.Anonymous) and str(parent.this).lower() in _NUMERIC_NAMED:
        return "number"
    if isinstance(parent, functions.BtIn | BtIncludes) and child is parent.this:
        return "json"
    if isinstance(parent, functions.BtJsonExtract):
        return "text"
    if isinstance(parent, _COMPARISONS):
        other = parent.right if child is parent.left else parent.left
        if isinstance(other, exp.Boolean):
            return "bool"
        if _is_numeric(other):
            return "number"
        return "text"
    if isinstance(parent, exp.If | exp.Case) and child is not parent.this:
        return _context_of(parent) if _context_of(parent) != "bool" else "text"
    if isinstance(parent, exp.Between):
        if child is parent.this and (_is_numeric(parent.args["low"]) or _is_numeric(parent.args["high"])):
            return "number"
        return "text"
    if isinstance(parent, exp.In):
        values = parent.expressions
        if child is parent.this and values and all(_is_numeric(v) for v in values):
            return "number"
        return "text"
    if isinstance(parent, exp.Not | exp.And | exp.Or | exp.Where | exp.Having):
        return "bool"
    if isinstance(parent, exp.Cast | exp.TryCast):
        return "json" if parent.to.is_type("json") else "text"
    if isinstance(parent, exp.Coalesce):
        siblings = [parent.this, *parent.expressions]
        if any(_is_numeric(s) for s in siblings if s is not child):
            return "number"
        return "text"
    return "text"


def _rewrite_order(select: exp.Select, aliases: set[str], group_keys: set[tuple[str, ...]]) -> None:
    order = select.args.get("order")
    if not order:
        return
    keys: list[exp.Expression] = []
    for ordered in order.expressions:
        target = ordered.this
        path = _path_parts(target, aliases) if isinstance(target, _PATH_NODES) else None
        if not path or len(path) < 2:
            keys.append(ordered)
            continue
        grouped = path in group_keys
        for mode in ("number", "text"):
            keys.append(exp.Ordered(this=_path_expr(path, mode, grouped), desc=ordered.args.get("desc"),
                                    nulls_first=ordered.args.get("nulls_first")))
    order.set("expressions", keys)


# full text ------------------------------------------------------------------------------

def _tokens(term: str) -> list[str]:
    out, cur = [], []
    for ch in term.lower():
        if ch.isascii() and ch.isalnum():
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def _text_of(sql_expr: str) -> str:
    """Lower-cased string values of a JSON expression: keys and escape sequences blanked."""
    no_keys = f"regexp_replace(CAST({sql_expr} AS VARCHAR), '\"(?:[^\"\\\\]|\\\\.)*\"\\s*:', ' ', 'g')"
    no_escapes = f"regexp_replace({no_keys}, '\\\\(?:u[0-9a-fA-F]{{4}}|.)', ' ', 'g')"
    return f"lower(coalesce({no_escapes}, ''))"


def _token_filter(document: str, term_node: exp.Expression, what: str) -> exp.Expression:
    if not _is_string(term_node):
        raise InputError(f"sql: {what}: the search term must be a quoted string")
    while isinstance(term_node, exp.Paren):
        term_node = term_node.this
    tokens = _tokens(term_node.this)
    if not tokens:
        return exp.false()
    clauses = [f"regexp_matches({document}, '(^|[^a-z0-9]){t}([^a-z0-9]|$)')" for t in tokens]
    return exp.Paren(this=sqlglot.parse_one(" AND ".join(clauses), read="duckdb"))


def _search_expr(node: exp.Anonymous) -> exp.Expression:
    if len(node.expressions) != 1:
        raise InputError("sql: search() takes one quoted term")
    document = " || ' ' || ".join(_text_of(f'"{c}"') for c in ("input", "output", "metadata"))
    return _token_filter(f"({document})", node.expressions[0], "search()")


def _match_expr(node: BtMatch, aliases: set[str], group_keys: set[tuple[str, ...]]) -> exp.Expression:
    left = node.left
    if isinstance(left, _PATH_NODES):
        path = _path_parts(left, aliases)
        if path and len(path) > 1:
            left = _path_expr(path, "json", False)
        elif path:
            left = exp.column(path[0], quoted=True)
    return _token_filter(_text_of(left.sql(dialect="duckdb")), node.right, "MATCH")
