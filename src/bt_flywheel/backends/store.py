"""The local backend: one DuckDB file holding project logs, datasets and experiments
in Braintrust's row shape (DESIGN.md §4).

Tables
  projects(id, name, created)
  objects(object_type, id, name, project_id, created, metadata)   -- experiments and datasets
  spans(object_type, object_id, id, <Braintrust row columns>, extra)
    object_type is 'project_logs' (object_id = project id), 'experiment' or 'dataset'.
    JSON-valued columns are stored as DuckDB JSON; unknown row keys are kept in `extra`.
    `facets` (facet name -> summary text) and `classifications` (name -> list of
    {"id", "label", "score"|"distance", ...}) are Braintrust Topics' columns on log rows: NULL
    unless a row (or the Topics step) sets them. Stores made before they existed gain them on
    their next writable open (`MIGRATIONS`).
    An id is unique within its object because every write goes through the loaders, which look
    each id up first (`merge_staged`, `native_ingest`). `spans` has no primary key on purpose:
    DuckDB keeps such an index in memory and maintains it on one thread, which at 10M spans
    outgrew the ingest's memory limit and was the slowest step of a load. A store made with the
    key loses it on its next writable open (`_drop_spans_key`, one copy of the table).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from bt_flywheel.core.errors import BackendError, InputError, StoreBusy
from bt_flywheel.core.sqltext import sql_string

_LIVE_STAGES: set[Path] = set()  # staging folders of this process's running bulk loads
OBJECT_TYPES = ("project_logs", "experiment", "dataset")
JSON_COLUMNS = ("span_parents", "input", "output", "expected", "metadata", "scores", "metrics",
                "span_attributes", "tags", "error", "origin", "facets", "classifications")
TOPICS_COLUMNS = ("facets", "classifications")   # left out of a row read back when NULL
ROW_COLUMNS = ("id", "span_id", "root_span_id", "span_parents", "is_root", "created", "_xact_id",
               *JSON_COLUMNS[1:])
_LOCAL_NAMESPACE = uuid.UUID("6f1d2c1e-5b0a-4c53-9a39-0f1e5c1b7a10")

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
  id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, created TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS objects (
  object_type VARCHAR NOT NULL, id VARCHAR NOT NULL, name VARCHAR NOT NULL,
  project_id VARCHAR NOT NULL, created TIMESTAMPTZ, metadata JSON,
  PRIMARY KEY (object_type, id)
);
CREATE TABLE IF NOT EXISTS spans (
  object_type VARCHAR NOT NULL, object_id VARCHAR NOT NULL, id VARCHAR NOT NULL,
  span_id VARCHAR, root_span_id VARCHAR, span_parents JSON, is_root BOOLEAN,
  created TIMESTAMPTZ, _xact_id BIGINT,
  input JSON, output JSON, expected JSON, metadata JSON, scores JSON, metrics JSON,
  span_attributes JSON, tags JSON, error JSON, origin JSON, extra JSON,
  facets JSON, classifications JSON
);
"""
# Columns added after the first release; applied on every writable open (idempotent).
MIGRATIONS = """
ALTER TABLE spans ADD COLUMN IF NOT EXISTS facets JSON;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS classifications JSON;
"""


def _drop_spans_key(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild a `spans` made with the old primary key without it: a native load writes a file's
    rows before it knows whether an id repeats, which that key would refuse."""
    if not any(column[5] for column in con.execute("PRAGMA table_info('spans')").fetchall()):   # pk
        return
    ddl = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS spans"):].replace(
        "CREATE TABLE IF NOT EXISTS spans", "CREATE TABLE _spans_unkeyed")
    columns = ", ".join(r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'spans' ORDER BY column_index").fetchall())
    con.execute("BEGIN")
    try:
        con.execute(ddl)
        con.execute(f"INSERT INTO _spans_unkeyed ({columns}) SELECT {columns} FROM spans")
        con.execute("DROP TABLE spans")
        con.execute("ALTER TABLE _spans_unkeyed RENAME TO spans")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def local_id(kind: str, name: str) -> str:
    """A deterministic id for a locally created project/dataset/experiment name."""
    return str(uuid.uuid5(_LOCAL_NAMESPACE, f"{kind}:{name}"))


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass
class UpsertResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged}


def require_store(path: Path) -> None:
    """InputError unless a store file is there (what a read of a store that was never made says)."""
    if not path.exists():
        raise InputError(f"{path}: no local store here yet",
                         hint="load traces with `flywheel ingest FILE --project NAME`")


# what a sandboxed (query) connection may not do: read or write files, ATTACH, COPY, INSTALL
SANDBOX_CONFIG = {"enable_external_access": False}


class Store:
    """A DuckDB file. Open read-only for queries; writers hold DuckDB's file lock.

    `sandboxed=True` (read-only only) opens it the way user SQL runs: no external access, UTC,
    and settings locked, so `sql.run_query` can run any number of queries on this one connection.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False, sandboxed: bool = False) -> None:
        if sandboxed and not read_only:
            raise ValueError("Store: sandboxed stores are read-only")
        self.path = Path(path)
        self.read_only = read_only
        self.sandboxed = sandboxed
        if read_only:
            require_store(self.path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = self._connect()
        if sandboxed:
            self._lock_sandbox()
        else:
            self.con.execute("SET enable_progress_bar = false")
        if not read_only:
            self.con.execute(SCHEMA)
            self.con.execute(MIGRATIONS)
            _drop_spans_key(self.con)
            self._remove_stale_stages()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """DuckDB's connection; a store another process is still creating (the file exists, its
        header is not written yet) is waited for briefly, then reads as in use like a locked one."""
        deadline = time.monotonic() + 5
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=self.read_only,
                                      config=dict(SANDBOX_CONFIG) if self.sandboxed else {})
            except duckdb.Error as exc:
                message = str(exc)
                if "different configuration" in message:
                    raise StoreBusy(f"{self.path}: the local store is already open in this process",
                                    hint="pass the open Store to run_query, or close it first") from None
                if "not a valid DuckDB database file" in message and self._being_created():
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    message = "lock"
                if "lock" in message.lower():
                    raise StoreBusy(f"{self.path}: the local store is in use by another flywheel process",
                                    hint="wait for it to finish, or use --store for a separate file") from None
                raise BackendError(f"{self.path}: cannot open the local store ({message.splitlines()[0]})") from None

    def _lock_sandbox(self) -> None:
        """UTC for every session (day()/date_trunc() buckets are UTC, as in Braintrust), then lock
        the settings. A second sandboxed open of the file in this process shares DuckDB's database
        instance, already set up and locked, so it only checks that."""
        if self.con.execute("SELECT current_setting('lock_configuration')").fetchone()[0]:
            return
        self.con.execute("SET enable_progress_bar = false")
        self.con.execute("SET GLOBAL TimeZone = 'UTC'")
        self.con.execute("SET lock_configuration = true")

    def _being_created(self) -> bool:
        try:
            stat = self.path.stat()
        except OSError:
            return True
        return stat.st_size < 3 * 4096 and time.time() - stat.st_mtime < 5

    @property
    def stage_prefix(self) -> str:
        return f".{self.path.name}.stage-"

    def _remove_stale_stages(self) -> None:
        """Staging folders left by a killed writer of this store file. We hold DuckDB's write
        lock, so no other process can be loading into it; only this process's live loaders count."""
        for stale in self.path.parent.glob(self.stage_prefix + "*"):
            if stale.is_dir() and stale not in _LIVE_STAGES:
                shutil.rmtree(stale, ignore_errors=True)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # projects and objects -------------------------------------------------

    def ensure_project(self, name_or_id: str) -> str:
        """Return the id of the project with this name or id, creating it by name if needed."""
        found = self.find_project(name_or_id)
        if found:
            return found
        project_id = local_id("project", name_or_id)
        self.con.execute("INSERT INTO projects VALUES (?, ?, ?)", [project_id, name_or_id, now_utc()])
        return project_id

    def find_project(self, name_or_id: str) -> str | None:
        row = self.con.execute(
            "SELECT id FROM projects WHERE id = ? OR name = ? ORDER BY (id = ?) DESC LIMIT 1",
            [name_or_id, name_or_id, name_or_id],
        ).fetchone()
        return row[0] if row else None

    def project_name(self, project_id: str) -> str | None:
        row = self.con.execute("SELECT name FROM projects WHERE id = ?", [project_id]).fetchone()
        return row[0] if row else None

    def create_object(self, object_type: str, name: str, project_id: str, *,
                      metadata: dict[str, Any] | None = None, object_id: str | None = None,
                      created: datetime | None = None) -> str:
        """Create (or return) a dataset/experiment by name within a project."""
        if object_type not in ("experiment", "dataset"):
            raise ValueError(object_type)
        existing = self.find_object(object_type, name, project_id=project_id)
        if existing:
            return existing
        object_id = object_id or local_id(object_type, f"{project_id}:{name}")
        self.con.execute(
            "INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?)",
            [object_type, object_id, name, project_id, created or now_utc(), json.dumps(metadata or {})],
        )
        return object_id

    def find_object(self, object_type: str, name_or_id: str, *, project_id: str | None = None) -> str | None:
        query = "SELECT id FROM objects WHERE object_type = ? AND (id = ? OR name = ?)"
        params: list[Any] = [object_type, name_or_id, name_or_id]
        if project_id:
            query += " AND project_id = ?"
            params.append(project_id)
        query += " ORDER BY (id = ?) DESC, created DESC LIMIT 1"
        params.append(name_or_id)
        row = self.con.execute(query, params).fetchone()
        return row[0] if row else None

    def require_object(self, object_type: str, name_or_id: str, *, project: str | None = None,
                       hint: str | None = None) -> str:
        """The id of a dataset/experiment (within `project` when given); InputError naming what is missing."""
        project_id = self.find_project(project) if project else None
        if project and not project_id:
            raise InputError(f"project {project!r}: not found in {self.path}")
        object_id = self.find_object(object_type, name_or_id, project_id=project_id)
        if not object_id:
            raise InputError(f"{object_type} {name_or_id!r}: not found in {self.path}", hint=hint)
        return object_id

    def object_info(self, object_type: str, object_id: str) -> dict[str, Any] | None:
        row = self.con.execute(
            "SELECT id, name, project_id, created, metadata FROM objects WHERE object_type = ? AND id = ?",
            [object_type, object_id],
        ).fetchone()
        if not row:
            return None
        return {"id": row[0], "name": row[1], "project_id": row[2], "created": row[3].isoformat(),
                "metadata": json.loads(row[4]) if row[4] else {}}

    def list_objects(self, object_type: str, project_id: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT id FROM objects WHERE object_type = ?"
        params: list[Any] = [object_type]
        if project_id:
            query += " AND project_id = ?"
            params.append(project_id)
        ids = [r[0] for r in self.con.execute(query + " ORDER BY created DESC", params).fetchall()]
        return [info for i in ids if (info := self.object_info(object_type, i))]

    # rows -------------------------------------------------------------------

    def upsert_rows(self, object_type: str, object_id: str, rows: Iterable[dict[str, Any]]) -> UpsertResult:
        """Insert or replace rows by (object, id). A row identical to the stored one is left alone.

        All rows go in one transaction (an invalid row raises ValueError and nothing is stored).
        Rows are staged in batches and merged set-wise, so a million rows take seconds, not hours.
        """
        if object_type not in OBJECT_TYPES:
            raise ValueError(object_type)
        with self.transaction():
            loader = self.bulk_loader(object_type, object_id)
            try:
                for row in rows:
                    loader.add(row)
                return loader.finish()
            finally:
                loader.close()

    @contextmanager
    def memory_limit(self, limit: str) -> Iterator[None]:
        """Cap DuckDB's memory (it spills to disk beyond it) for a bulk load, then restore it."""
        previous = self.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        self.con.execute(f"SET memory_limit = '{limit}'")
        try:
            yield
        finally:
            self.con.execute(f"SET memory_limit = '{previous}'")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One DuckDB transaction: committed on success, rolled back on any exception."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def bulk_loader(self, object_type: str, object_id: str, *, batch_size: int = 50_000) -> BulkLoader:
        """A streaming upserter; call inside `transaction()`; `add(row)` then `finish()`."""
        if object_type not in OBJECT_TYPES:
            raise ValueError(object_type)
        return BulkLoader(self, object_type, object_id, batch_size=batch_size)

    def iter_rows(self, object_type: str, object_id: str, *, where: str = "", params: list[Any] | None = None
                  ) -> Iterator[dict[str, Any]]:
        """Yield rows back in Braintrust's shape, ordered by created then id."""
        sql = (f"SELECT {', '.join(_RECORD_COLUMNS)} FROM spans WHERE object_type = ? AND object_id = ?"
               f"{(' AND ' + where) if where else ''} ORDER BY created, id")
        cursor = self.con.execute(sql, [object_type, object_id, *(params or [])])
        while batch := cursor.fetchmany(1000):
            for values in batch:
                yield record_to_row(dict(zip(_RECORD_COLUMNS, values, strict=True)))

    def iter_span_metrics(self, object_type: str, object_id: str) -> Iterator[dict[str, Any]]:
        """Every span's ids, `is_root`, `span_attributes`, `metrics` and `metadata.model` (what
        metric guards read), without the heavy input/output columns; ordered by created then id."""
        sql = ("SELECT id, span_id, root_span_id, is_root, span_attributes, metrics, "
               "json_extract_string(metadata, '$.model') FROM spans WHERE object_type = ? AND object_id = ? "
               "ORDER BY created, id")
        cursor = self.con.execute(sql, [object_type, object_id])
        while batch := cursor.fetchmany(1000):
            for span_id_, span, root, is_root, attrs, metrics, model in batch:
                yield {"id": span_id_, "span_id": span, "root_span_id": root, "is_root": is_root,
                       "span_attributes": json.loads(attrs) if isinstance(attrs, str) else attrs,
                       "metrics": json.loads(metrics) if isinstance(metrics, str) else metrics,
                       "metadata": {"model": model} if model is not None else {}}

    def list_projects(self) -> list[dict[str, Any]]:
        """Every project in the store: id, name, created (oldest first)."""
        rows = self.con.execute("SELECT id, name, created FROM projects ORDER BY created, name").fetchall()
        return [{"id": r[0], "name": r[1], "created": r[2]} for r in rows]

    def created_range(self, object_type: str, object_id: str) -> tuple[datetime | None, datetime | None, int]:
        """(first created, last created, rows) of one object's rows."""
        first, last, count = self.con.execute(
            "SELECT min(created), max(created), count(*) FROM spans WHERE object_type = ? AND object_id = ?",
            [object_type, object_id]).fetchone()
        return first, last, count

    def count_rows(self, object_type: str, object_id: str) -> int:
        return self.con.execute("SELECT count(*) FROM spans WHERE object_type = ? AND object_id = ?",
                                [object_type, object_id]).fetchone()[0]


_RECORD_COLUMNS = ("id", "span_id", "root_span_id", "span_parents", "is_root", "created", "_xact_id",
                   "input", "output", "expected", "metadata", "scores", "metrics", "span_attributes",
                   "tags", "error", "origin", "extra", "facets", "classifications")
_INSERT_SQL = (f"INSERT INTO spans (object_type, object_id, {', '.join(_RECORD_COLUMNS)}) "
               f"VALUES (?, ?, {', '.join('?' for _ in _RECORD_COLUMNS)})")
_KNOWN_KEYS = frozenset(_RECORD_COLUMNS) - {"extra"}


def parse_created(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"created: epoch seconds out of range: {value!r}") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"created: not an ISO 8601 timestamp: {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"created: expected an ISO 8601 string, got {type(value).__name__}")


def validate_row(row: dict[str, Any]) -> dict[str, Any]:
    """Check one Braintrust row; return it normalised (JSON values as Python objects, `created`
    as a UTC datetime, unknown keys gathered under `extra`). Raises ValueError("field: problem")."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    row_id = row.get("id")
    if not isinstance(row_id, str) or not row_id:
        raise ValueError("id: missing or not a non-empty string")
    record: dict[str, Any] = {"id": row_id}
    for key in ("span_id", "root_span_id"):
        value = row.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {type(value).__name__}")
        record[key] = value
    is_root = row.get("is_root")
    if is_root is None:
        parents = row.get("span_parents")
        is_root = not parents if "span_parents" in row else None
    if is_root is not None and not isinstance(is_root, bool):
        raise ValueError(f"is_root: expected true/false, got {is_root!r}")
    record["is_root"] = is_root
    record["created"] = parse_created(row.get("created"))
    xact = row.get("_xact_id")
    record["_xact_id"] = int(xact) if isinstance(xact, int | str) and str(xact).isdigit() else None
    if record["_xact_id"] is not None and record["_xact_id"] >= 2**63:
        raise ValueError(f"_xact_id: out of range for a 64-bit transaction id: {xact!r}")
    scores = row.get("scores")
    if scores is not None:
        if not isinstance(scores, dict):
            raise ValueError(f"scores: expected an object of name -> number, got {type(scores).__name__}")
        for name, value in scores.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"scores.{name}: expected a number or null, got {value!r}")
    for key in JSON_COLUMNS:
        record[key] = row.get(key)
    extra = {k: v for k, v in row.items() if k not in _KNOWN_KEYS and k != "_is_merge"}
    record["extra"] = extra or None
    return record


def row_to_record(row: dict[str, Any]) -> dict[str, Any]:
    """A Braintrust row dict -> column values for `spans` (JSON columns as JSON text)."""
    record = validate_row(row)
    for key in (*JSON_COLUMNS, "extra"):
        value = record[key]
        record[key] = None if value is None else json.dumps(value, ensure_ascii=False)
    return record


def record_to_row(record: dict[str, Any]) -> dict[str, Any]:
    """Column values -> a Braintrust row dict (the inverse of row_to_record)."""
    row: dict[str, Any] = {}
    for key in _RECORD_COLUMNS:
        value = record.get(key)
        if key == "extra":
            if value:
                row.update(json.loads(value))
            continue
        if key in JSON_COLUMNS and isinstance(value, str):
            value = json.loads(value)
        if key in TOPICS_COLUMNS and value is None:
            continue
        if key == "created" and isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        row[key] = value
    return row


def _same(stored: tuple[Any, ...], record: dict[str, Any]) -> bool:
    columns = [c for c in _RECORD_COLUMNS if c != "_xact_id"]
    for column, value in zip(columns, stored, strict=True):
        new = record[column]
        if column in JSON_COLUMNS or column == "extra":
            old = json.loads(value) if isinstance(value, str) else value
            new = json.loads(new) if isinstance(new, str) else new
            if old != new:
                return False
        elif column == "created":
            if (value and value.astimezone(UTC)) != (new and new.astimezone(UTC)):
                return False
        elif value != new:
            return False
    return True


def _deep_merge(base: Any, update: Any) -> Any:
    """Braintrust `_is_merge` semantics: objects merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = _deep_merge(base.get(key), value) if key in base else value
        return merged
    return update


_STAGE_TYPES = {"id": "VARCHAR", "span_id": "VARCHAR", "root_span_id": "VARCHAR", "span_parents": "JSON",
                "is_root": "BOOLEAN", "created": "TIMESTAMPTZ", "_xact_id": "BIGINT",
                **{c: "JSON" for c in JSON_COLUMNS if c != "span_parents"}, "extra": "JSON"}
_COMPARED = [c for c in _RECORD_COLUMNS if c not in ("id", "_xact_id")]
_TEXT_SAME = " AND ".join(
    f"s.{c}::VARCHAR IS NOT DISTINCT FROM t.{c}::VARCHAR" if _STAGE_TYPES[c] == "JSON"
    else f"s.{c} IS NOT DISTINCT FROM t.{c}" for c in _COMPARED)
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


class BulkLoader:
    """Streams validated rows into `spans` in batches: stage to a JSONL file, load it with DuckDB's
    reader, classify against stored rows set-wise (new / textually same / changed), and write only
    new and changed rows. Identical content (even with reordered keys) counts as unchanged."""

    def __init__(self, store: Store, object_type: str, object_id: str, *, batch_size: int = 50_000) -> None:
        self.store = store
        self.con = store.con
        self.object_type = object_type
        self.object_id = object_id
        self.batch_size = batch_size
        self.result = UpsertResult()
        self.pending: dict[str, dict[str, Any]] = {}
        self.tmpdir = Path(tempfile.mkdtemp(prefix=store.stage_prefix, dir=store.path.parent))
        _LIVE_STAGES.add(self.tmpdir)
        self.next_xact = next_xact_id(self.con)

    def add(self, row: dict[str, Any]) -> None:
        """Validate and queue one row (ValueError names the field on a bad row; nothing is queued)."""
        merge = isinstance(row, dict) and row.get("_is_merge") is True
        if merge:
            row = self._merged(row)
        record = validate_row(row)
        previous = self.pending.get(record["id"])
        if previous is not None and merge:
            pass    # the rest of the same row (`_is_merge`), not another version: no count of its own
        elif previous is not None:
            if _same_record(previous, record):
                self.result.unchanged += 1
                return
            self.result.updated += 1
        self.pending[record["id"]] = record
        if len(self.pending) >= self.batch_size:
            self.flush()

    def _merged(self, row: dict[str, Any]) -> dict[str, Any]:
        row_id = row.get("id")
        base: dict[str, Any] | None = None
        if isinstance(row_id, str) and row_id in self.pending:
            base = _record_as_row(self.pending[row_id])
        elif isinstance(row_id, str):
            base = next(self.store.iter_rows(self.object_type, self.object_id, where="id = ?", params=[row_id]), None)
        update = {k: v for k, v in row.items() if k != "_is_merge"}
        return update if base is None else _deep_merge(base, update)

    def flush(self) -> None:
        if not self.pending:
            return
        stage = self.tmpdir / "stage.jsonl"
        with open(stage, "w", encoding="utf-8") as handle:
            for record in self.pending.values():
                handle.write(_ENCODE(_stage_line(record)) + "\n")
        batch = len(self.pending)
        self.pending = {}
        columns = "{" + ", ".join(f"'{c}': '{t}'" for c, t in _STAGE_TYPES.items()) + "}"
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _flywheel_stage AS SELECT * FROM read_json({sql_string(stage)}, "
                         f"format='newline_delimited', columns={columns}, maximum_object_size=67108864)")
        new, updated = merge_staged(self.con, "_flywheel_stage", self.object_type, self.object_id, self.next_xact)
        self.result.inserted += new
        self.result.updated += updated
        self.result.unchanged += batch - new - updated
        self.next_xact += new + updated
        self.con.execute("DROP TABLE _flywheel_stage")

    def finish(self) -> UpsertResult:
        self.flush()
        return self.result

    def close(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        _LIVE_STAGES.discard(self.tmpdir)


IN_FLIGHT = "_fw_ingest"   # the object_type of rows a native load has written and not yet placed


def next_xact_id(con: duckdb.DuckDBPyConnection) -> int:
    """The first `_xact_id` a new write may number rows from: one past the store's highest (rows
    still in flight in a native load do not count)."""
    return int(con.execute("SELECT coalesce(max(_xact_id), 0) FROM spans WHERE object_type <> ?",
                           [IN_FLIGHT]).fetchone()[0]) + 1


def merge_staged(con: duckdb.DuckDBPyConnection, table: str, object_type: str, object_id: str,
                 next_xact: int) -> tuple[int, int]:
    """Write the rows of `table` (the record columns, one row per id) into `spans` for one object,
    set-wise: a row whose stored text is the same, or whose JSON content is the same after all,
    is left alone (keeping its `_xact_id`); new and changed rows are written, those without an
    `_xact_id` numbered from `next_xact`. Returns (inserted, updated)."""
    key = [object_type, object_id]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _flywheel_write AS SELECT s.id, t.id IS NOT NULL AS present "
        f"FROM {table} s LEFT JOIN spans t ON t.object_type = ? AND t.object_id = ? AND t.id = s.id "
        f"WHERE t.id IS NULL OR NOT ({_TEXT_SAME})", key)
    changed = [r[0] for r in con.execute("SELECT id FROM _flywheel_write WHERE present").fetchall()]
    same_after_all = _semantically_same(con, table, key, changed)
    if same_after_all:
        con.execute("DELETE FROM _flywheel_write WHERE id IN (SELECT unnest(?::VARCHAR[]))", [same_after_all])
    new = con.execute("SELECT count(*) FROM _flywheel_write WHERE NOT present").fetchone()[0]
    cols = ", ".join(_RECORD_COLUMNS)
    # a changed row replaces its stored version: delete, then insert with the new ones
    con.execute("DELETE FROM spans WHERE object_type = ? AND object_id = ? AND id IN "
                "(SELECT id FROM _flywheel_write WHERE present)", key)
    for present, first_xact in ((False, next_xact), (True, next_xact + new)):
        select = ", ".join(
            f"coalesce(s._xact_id, {first_xact} + row_number() OVER () - 1)" if c == "_xact_id" else f"s.{c}"
            for c in _RECORD_COLUMNS)
        con.execute(f"INSERT INTO spans (object_type, object_id, {cols}) SELECT ?, ?, {select} FROM {table} s "
                    f"SEMI JOIN (SELECT id FROM _flywheel_write WHERE present = {present}) w ON w.id = s.id", key)
    con.execute("DROP TABLE _flywheel_write")
    return new, len(changed) - len(same_after_all)


def _semantically_same(con: duckdb.DuckDBPyConnection, table: str, key: list[str], ids: list[str]) -> list[str]:
    """Of rows whose stored text differs, those whose JSON content is nonetheless equal."""
    if not ids:
        return []
    cols = [c for c in _RECORD_COLUMNS if c != "_xact_id"]
    select = ", ".join([*(f"s.{c}" for c in cols), *(f"t.{c}" for c in cols)])
    same = []
    for start in range(0, len(ids), 10_000):
        rows = con.execute(
            f"SELECT {select} FROM {table} s JOIN spans t ON t.object_type = ? AND t.object_id = ? "
            "AND t.id = s.id WHERE s.id IN (SELECT unnest(?::VARCHAR[]))", [*key, ids[start:start + 10_000]]
        ).fetchall()
        n = len(cols)
        same.extend(r[0] for r in rows if _same(r[n:], dict(zip(cols, r[:n], strict=True))))
    return same


def _stage_line(record: dict[str, Any]) -> dict[str, Any]:
    line = dict(record)
    created = line["created"]
    line["created"] = created.isoformat() if created is not None else None
    return line


def _record_as_row(record: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in record.items() if k != "extra"}
    if record.get("created") is not None:
        row["created"] = record["created"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    row.update(record.get("extra") or {})
    return row


def _same_record(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a[k] == b[k] for k in a if k != "_xact_id")
