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
- `search('term')` and `<expr> MATCH 'term'` are full-text filters: every alphanumeric token of
  the term must occur as a whole token (case-insensitive) in the string values of input, output
  and metadata (search) or of the expression (MATCH). JSON object keys are not searched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ParseError, TokenError
from sqlglot.parser import binary_range_parser
from sqlglot.tokens import TokenType

from bt_flywheel.core.errors import InputError

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
EXTRA_COLUMN = "__bt_extra"
_RANGE_BOUNDS = frozenset({"created", "_xact_id", "_pagination_key"})
_ID_BOUNDS = frozenset({"root_span_id", "id"})
_NUMERIC_ROOTS = frozenset({"scores", "metrics"})
_DENIED_PREFIXES = ("read_", "glob", "getenv", "query", "pragma", "duckdb_", "sniff_", "parquet_", "iceberg_",
                    "delta_", "sqlite_", "postgres_", "mysql_", "http", "load", "install", "current_setting",
                    "set_", "which_secret", "list_files", "system", "import", "export", "attach", "detach",
                    "checkpoint", "copy", "ducklake", "arrow_scan", "json_execute", "test_", "enable_", "disable_")
_NUMERIC_AGGS = (exp.Avg, exp.Sum, exp.Min, exp.Max, exp.Stddev, exp.StddevPop, exp.StddevSamp, exp.Variance,
                 exp.VariancePop, exp.Quantile, exp.ApproxQuantile, exp.Median)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_ARITH = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.IntDiv)


class BtMatch(exp.Expression, exp.Binary, exp.Predicate):
    """`<expr> MATCH 'term'` (Braintrust full-text match)."""


def _search(args: list[exp.Expression]) -> exp.Expression:
    return exp.Anonymous(this="search", expressions=args)


class BraintrustSQL(DuckDB):
    """DuckDB's grammar plus Braintrust's `MATCH` operator and one-argument `search()`.
    Array subscripts are 0-based as in Braintrust (`classifications.Task[0].label`)."""

    INDEX_OFFSET = 0

    class Tokenizer(DuckDB.Tokenizer):
        KEYWORDS = {**DuckDB.Tokenizer.KEYWORDS, "MATCH": TokenType.MATCH}

    class Parser(DuckDB.Parser):
        FUNCTIONS = {**DuckDB.Parser.FUNCTIONS, "SEARCH": _search}
        RANGE_PARSERS = {**DuckDB.Parser.RANGE_PARSERS, TokenType.MATCH: binary_range_parser(BtMatch)}


@dataclass
class SourceRef:
    """One table function call in the query."""

    kind: str                    # project_logs | experiment | dataset
    refs: list[str]
    shape: str = "spans"
    alias: str | None = None


@dataclass
class Translation:
    sql: str
    sources: list[SourceRef] = field(default_factory=list)


# A resolver maps (kind, [id or name, ...]) to the object ids (project ids for project_logs).
Resolver = Callable[[str, list[str]], list[str]]


def parse_one_select(query: str) -> exp.Select:
    """Parse and check: exactly one SELECT statement, nothing that writes, reads files or sets config."""
    if not query or not query.strip():
        raise InputError("sql: empty query")
    try:
        statements = [s for s in sqlglot.parse(query, dialect=BraintrustSQL) if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"sql: cannot parse the query: {first}") from None
    if len(statements) != 1:
        raise InputError(f"sql: expected exactly one SELECT statement, got {len(statements)} statements")
    tree = statements[0]
    if not isinstance(tree, exp.Select):
        kind = tree.key.upper() if isinstance(tree, exp.Expression) else type(tree).__name__
        raise InputError(f"sql: only a single SELECT is allowed, got {kind}")
    for node in tree.walk():
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


def _func_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this)
    try:
        return node.sql_name()
    except Exception:  # pragma: no cover - exotic sqlglot nodes
        return type(node).__name__


def translate(query: str, resolve: Resolver, *, project: str | None = None,
              force_ignore_linter: bool = False, absent_columns: frozenset[str] = frozenset()) -> Translation:
    """Braintrust SQL -> DuckDB SQL over the store's tables (see module docstring).

    `absent_columns`: store columns an older, not yet migrated store lacks; they read as NULL."""
    tree = parse_one_select(query)
    sources = _collect_sources(tree, project)
    if not force_ignore_linter:
        lint(tree)
    for select in list(tree.find_all(exp.Select)):
        _rewrite_select(select, resolve, absent_columns)
    return Translation(sql=tree.sql(dialect="duckdb"), sources=sources)


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
        if shape not in ("spans", "traces"):
            raise InputError(f"sql: {name}(): shape => '{shape}' is not supported locally (use 'spans' or 'traces')")
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
    group_keys = _group_keys(select, aliases)
    # search()/MATCH first: they wrap whole JSON columns
    for node in list(select.find_all(exp.Anonymous)):
        if _owner(node) is select and str(node.this).lower() == "search":
            node.replace(_search_expr(node))
    for node in list(select.find_all(BtMatch)):
        if _owner(node) is select:
            node.replace(_match_expr(node, aliases, group_keys))
    _rewrite_order(select, aliases, group_keys)
    for node in list(select.find_all(*_PATH_NODES)):
        if _owner(node) is not select or node.parent is None or _inside_path(node):
            continue
        path = _path_parts(node, aliases)
        if path is None:
            continue
        if len(path) == 1:
            if path[0] in BASE_COLUMNS:
                node.replace(exp.column(path[0], quoted=True))
            continue
        replacement = _path_expr(path, _context(node, path), path in group_keys)
        if node.parent is select and node in select.expressions:
            replacement = exp.Alias(this=replacement, alias=exp.to_identifier(path[-1], quoted=True))
        node.replace(replacement)
    traces = [t for t in tables if t.meta["bt_source"].shape == "traces"]
    where = select.args.get("where")
    for table in tables:
        ref: SourceRef = table.meta["bt_source"]
        condition = where.this.copy() if (where is not None and ref.shape == "traces") else None
        table.replace(_source_subquery(ref, resolve(ref.kind, ref.refs), condition, table.alias or "t", absent))
    if traces and where is not None:
        select.set("where", None)


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
    if isinstance(node, (*_NUMERIC_AGGS, exp.Count)):
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
    """json | text | number | bool: how the value of a JSON path is used where it appears."""
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
    if isinstance(parent, (*_NUMERIC_AGGS, *_ARITH)):
        return "number"
    if isinstance(parent, _COMPARISONS):
        other = parent.right if child is parent.left else parent.left
        if isinstance(other, exp.Boolean):
            return "bool"
        if _is_numeric(other):
            return "number"
        return "text"
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


# sources as subqueries -----------------------------------------------------------------

def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_ID_COLUMNS = ("experiment_id", "dataset_id", "log_id")
_TOPICS_COLUMNS = ("facets", "classifications")


def _source_subquery(ref: SourceRef, object_ids: list[str], traces_filter: exp.Expression | None,
                     alias: str, absent: frozenset[str] = frozenset()) -> exp.Expression:
    object_type = ref.kind
    ids = ", ".join(_quote(i) for i in object_ids)
    if object_type == "project_logs":
        project = "object_id"
        own = {"log_id": "'g'"}
    else:
        project = (f"(SELECT o.project_id FROM objects o WHERE o.object_type = {_quote(object_type)} "
                   "AND o.id = spans.object_id)")
        own = {f"{object_type}_id": "object_id"}
    ids_sql = ", ".join(f"{own.get(c, 'NULL::VARCHAR')} AS {c}" for c in _ID_COLUMNS)
    topics = ", ".join(f"NULL::JSON AS {c}" if c in absent else c for c in _TOPICS_COLUMNS)
    base = (f"SELECT id, span_id, root_span_id, span_parents, is_root, created, _xact_id, "
            f"lpad(CAST(_xact_id AS VARCHAR), 20, '0') AS _pagination_key, input, output, expected, metadata, "
            f"scores, metrics, span_attributes, tags, error, origin, {topics}, "
            f"json_extract(extra, '/context') AS context, "
            f"{project} AS project_id, {ids_sql}, extra AS {EXTRA_COLUMN} "
            f"FROM spans WHERE object_type = {_quote(object_type)} AND object_id IN ({ids})")
    if traces_filter is not None:
        inner = traces_filter.sql(dialect="duckdb")
        base = (f"SELECT * FROM ({base}) AS _all WHERE root_span_id IN "
                f"(SELECT root_span_id FROM ({base}) AS _m WHERE {inner})")
    subquery = sqlglot.parse_one(f"SELECT * FROM ({base}) AS x", read="duckdb").args["from_"].this
    subquery.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    return subquery
