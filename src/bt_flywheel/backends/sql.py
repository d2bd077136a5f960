"""Braintrust SQL in, rows out, on the local store (DuckDB) or remotely (`POST /btql`).

`run_query(store_path, query)` is the library entry other modules use. It translates the query
(`sql_translate`), then runs it on a read-only DuckDB connection with
`enable_external_access=false` and `lock_configuration=true`, so no query can read files,
ATTACH, COPY, INSTALL or change settings whatever the parser missed. JSON values come back as
Python objects, timestamps as ISO 8601 strings (UTC, `Z`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from bt_flywheel.backends.btsql import paging
from bt_flywheel.backends.btsql.messages import engine_refusal
from bt_flywheel.backends.sql_translate import EXTRA_COLUMN, LINT_ERROR, LINT_HINT, LINT_MESSAGE, translate
from bt_flywheel.core.errors import InputError

if TYPE_CHECKING:
    from bt_flywheel.backends.store import Store

__all__ = ["LINT_ERROR", "LINT_HINT", "LINT_MESSAGE", "QueryResult", "run_query", "bt_document"]

@dataclass
class QueryResult:
    """Rows as dicts (JSON values decoded) plus a JSON-Schema-like `schema` like Braintrust's."""

    rows: list[dict[str, Any]]
    schema: dict[str, Any]
    columns: list[str] = field(default_factory=list)
    sql: str | None = None          # the DuckDB SQL that ran (local backend)
    cursor: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)   # other top-level keys of a remote response

    def document(self) -> dict[str, Any]:
        """What `flywheel sql --json` prints: the shape of `bt sql --json`."""
        return bt_document(self)


def bt_document(result: QueryResult) -> dict[str, Any]:
    return {"data": result.rows, "schema": result.schema, "cursor": result.cursor, **result.extras}


def schema_for(columns: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "object", "properties": dict(columns)}}


def run_query(store_path: str | Path | Store, query: str, *, project: str | None = None,
              force_ignore_linter: bool = False) -> QueryResult:
    """Run Braintrust SQL on the local store. Raises InputError (bad/hostile query, lint,
    unknown object) or BackendError/StoreBusy (store cannot be opened).

    `store_path` may also be an open `Store`. A sandboxed one (`Store(path, read_only=True,
    sandboxed=True)`) runs the query on its connection, so many queries share one open. A writable
    one (for callers already holding the write lock in this process) runs it on a cursor: the same
    AST checks apply but DuckDB's own sandbox settings cannot be switched on for an open database.
    """
    from bt_flywheel.backends.store import Store, require_store

    if isinstance(store_path, Store) and store_path.sandboxed:
        return _run_on(store_path.con, query, project=project, force_ignore_linter=force_ignore_linter)
    if isinstance(store_path, Store):
        con = store_path.con.cursor()
        con.execute("SET TimeZone = 'UTC'")
        try:
            return _run_on(con, query, project=project, force_ignore_linter=force_ignore_linter)
        finally:
            con.close()
    require_store(Path(store_path))     # before the query's own problems, as when the store opened first
    opened = _OpenedOnFirstUse(Path(store_path))
    try:
        return _run_on(opened, query, project=project, force_ignore_linter=force_ignore_linter)
    finally:
        opened.close()


class _OpenedOnFirstUse:
    """A sandboxed store connection opened when the translation first needs the store: a query
    refused by the parser or the linter never opens (nor waits on) the store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: Store | None = None

    def execute(self, *args: Any) -> Any:
        if self.store is None:
            from bt_flywheel.backends.store import Store

            self.store = Store(self.path, read_only=True, sandboxed=True)
        return self.store.con.execute(*args)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _run_on(con: Any, query: str, *, project: str | None, force_ignore_linter: bool) -> QueryResult:
    import duckdb

    translation = translate(query, _resolver(con, project), project=project,
                            force_ignore_linter=force_ignore_linter, absent_columns=lambda: _absent_columns(con))
    try:
        cursor = con.execute(translation.sql)
        description = cursor.description or []
        values = cursor.fetchall()
    except duckdb.Error as exc:
        message, hint = engine_refusal(str(exc))
        raise InputError(message, hint=hint) from None
    result = _result(description, values, translation.sql)
    pages = translation.paging
    if pages is not None and result.rows and len(result.rows) >= pages.limit:
        result.cursor = paging.encode(result.rows[-1][paging.CURSOR_COLUMN], pages.descending)
    for row in result.rows:
        row.pop(paging.CURSOR_COLUMN, None)
    result.columns = [c for c in result.columns if c != paging.CURSOR_COLUMN]
    if isinstance(result.schema, dict):
        result.schema.get("items", {}).get("properties", {}).pop(paging.CURSOR_COLUMN, None)
    return result


def _absent_columns(con: Any) -> frozenset[str]:
    """Topics columns a store made before they existed lacks (opened read-only, not migrated)."""
    present = {c[0] for c in con.execute("SELECT * FROM spans LIMIT 0").description}
    return frozenset(c for c in ("facets", "classifications") if c not in present)


def _resolver(con: Any, project: str | None):
    def project_row(ref: str) -> tuple[str] | None:
        return con.execute("SELECT id FROM projects WHERE id = ? OR name = ? ORDER BY (id = ?) DESC LIMIT 1",
                           [ref, ref, ref]).fetchone()

    def resolve(kind: str, refs: list[str]) -> list[str]:
        row = project_row(project) if project and kind != "project_logs" else None
        project_id = row[0] if row else None
        ids = []
        for ref in refs:
            if kind == "project_logs":
                row = project_row(ref)
            else:
                row = None
                if project_id:
                    row = con.execute(
                        "SELECT id FROM objects WHERE object_type = ? AND (id = ? OR name = ?) AND project_id = ? "
                        "ORDER BY (id = ?) DESC, created DESC LIMIT 1", [kind, ref, ref, project_id, ref]).fetchone()
                if row is None:
                    row = con.execute(
                        "SELECT id FROM objects WHERE object_type = ? AND (id = ? OR name = ?) "
                        "ORDER BY (id = ?) DESC, created DESC LIMIT 1", [kind, ref, ref, ref]).fetchone()
            if row is None:
                what = "project" if kind == "project_logs" else kind
                raise InputError(f"sql: {kind}('{ref}'): no {what} with this id or name in the local store",
                                 hint="check the name, or load it with `flywheel ingest`")
            ids.append(row[0])
        return ids

    return resolve


def _json_type(type_name: str) -> dict[str, Any]:
    name = type_name.upper()
    if name == "JSON":
        return {}
    if name == "BOOLEAN":
        return {"type": "boolean"}
    if name in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                "UBIGINT", "UHUGEINT"):
        return {"type": "integer"}
    if name in ("FLOAT", "DOUBLE", "REAL") or name.startswith("DECIMAL"):
        return {"type": "number"}
    if name.startswith("TIMESTAMP"):
        return {"type": "string", "format": "date-time"}
    if name == "DATE":
        return {"type": "string", "format": "date"}
    if name.endswith("[]") or name.startswith(("LIST", "STRUCT", "MAP")):
        return {"type": "array"} if name.endswith("[]") or name.startswith("LIST") else {"type": "object"}
    return {"type": "string"}


def _convert(value: Any, is_json: bool) -> Any:
    if value is None:
        return None
    if is_json and isinstance(value, str):
        return json.loads(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_convert(v, False) for v in value]
    if isinstance(value, dict):
        return {str(k): _convert(v, False) for k, v in value.items()}
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _result(description: list[Any], values: list[tuple[Any, ...]], sql: str) -> QueryResult:
    names = [d[0] for d in description]
    types = [str(d[1]) for d in description]
    is_json = [t.upper() == "JSON" for t in types]
    extra_index = names.index(EXTRA_COLUMN) if EXTRA_COLUMN in names else None
    columns = [(n, _json_type(t)) for i, (n, t) in enumerate(zip(names, types, strict=True)) if i != extra_index]
    rows = []
    for value_row in values:
        row: dict[str, Any] = {}
        for i, name in enumerate(names):
            if i == extra_index:
                continue
            row[name] = _convert(value_row[i], is_json[i])
        if extra_index is not None and value_row[extra_index]:
            for key, value in json.loads(value_row[extra_index]).items():
                row.setdefault(key, value)
        rows.append(row)
    return QueryResult(rows=rows, schema=schema_for(columns), columns=[c for c, _ in columns], sql=sql)
