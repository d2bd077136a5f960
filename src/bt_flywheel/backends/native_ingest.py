"""Ingest at DuckDB speed (issue 12): DuckDB reads and checks the JSONL itself, and Python sees
only the rows DuckDB cannot vouch for.

Per file, a survey pass (`read_ndjson_objects`, plain or gzip) records each row's id and whether
it is flagged: a check of `store.validate_row` (the one definition of a valid row) might fail or
might decide differently (not an object, a field of an unexpected type, a `created` that is not a
plain ISO 8601 string, duplicate keys, JSON that DuckDB's parser accepts and Python's does not
such as trailing commas or `nan`/`inf` spellings), or it is an `_is_merge` row. Flagged rows are
checked by `validate_row` one by one; if one is bad, or DuckDB could not parse a line, the file is
read again line by line in Python (`_scan_file`), so the error names FILE:LINE: field and
--skip-bad skips exactly the rows the row-by-row path skips.

Then every other row is sorted by its id over the whole run (`NativeLoader._pick`): an id seen
once and not stored for this object goes straight into `spans` (most rows of a first load); an id
seen once and stored is staged and compared; an id seen more than once is staged in file order
and folded in Python with the `_is_merge` rows (Braintrust's merge semantics, as
`store.BulkLoader` does). `store.merge_staged` writes the staged rows set-wise. Line ordinals
(WITH ORDINALITY) make DuckDB run a pipeline on one thread, so only the passes over those rare
rows ask for them; the survey (a batch insert, parallel and in file order, so its rowid numbers
the rows that come without an `_xact_id` in file order, as `_pagination_key` paging expects) and
the writes of rows seen once run on every core.

Everything runs inside the caller's transaction. A failed DuckDB statement would abort that
transaction, so DuckDB reads with `ignore_errors` (a malformed line becomes a NULL row) and a
gzip file is first read through once on a separate connection.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from bt_flywheel.backends.experiment_rollup import roll_up
from bt_flywheel.backends.store import (
    _LIVE_STAGES,
    _RECORD_COLUMNS,
    _STAGE_TYPES,
    JSON_COLUMNS,
    Store,
    UpsertResult,
    _deep_merge,
    _record_as_row,
    _same_record,
    _stage_line,
    merge_staged,
    next_xact_id,
    validate_row,
)
from bt_flywheel.core.errors import InputError

_FIELDS = tuple(c for c in _RECORD_COLUMNS if c != "extra")   # the row keys with their own column
_PULLED = (*_FIELDS, "_is_merge")
_ISO_NAIVE = r"[1-9][0-9]{3}-[0-1][0-9]-[0-3][0-9]([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?)?"
_ISO_TZ = r"[1-9][0-9]{3}-[0-1][0-9]-[0-3][0-9][T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?" \
          r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
# Python's json rejects these, DuckDB's parser accepts them: a trailing comma, and nan/inf literals
# in any letter case other than Python's NaN/Infinity. Flags are computed as values, where DuckDB
# evaluates both sides of an OR, so the costly regex sits behind a CASE that runs it only on rows
# holding such a word (in any case: `lower` is the cheapest sound test for that).
_LENIENT_JSON = (r"regexp_matches(j, ',\s*[\]}]') OR CASE WHEN contains(lower(j), 'nan') "
                 r"OR contains(lower(j), 'inf') THEN regexp_matches(j, '[:,\[]\s*[-+]?(?i:nan|inf)') "
                 "ELSE false END")
_META_COLUMNS = {"src": "INTEGER", "ord": "BIGINT", "line": "BIGINT", "py": "BOOLEAN", "is_merge": "BOOLEAN",
                 "raw": "JSON"}
_STAGE_COLUMNS = {**_META_COLUMNS, **_STAGE_TYPES}
_COUNTER = itertools.count()
_SPAN_TYPE = "json_extract_string(span_attributes, '$.type')"


def _f(name: str) -> str:
    """A pulled field as JSON text (NULL when missing or null)."""
    return f's."{name}"'


def _kind(name: str) -> str:
    """The JSON kind of a pulled field by its first character ('"' string, '{' object, '[' array,
    't'/'f' boolean, else a number); NULL when missing or null. Cheaper than json_type."""
    return f"left({_f(name)}::VARCHAR, 1)"


def _flag_terms() -> list[str]:
    """Each true when a row must go through Python (see the module docstring)."""
    scores_bad = (f"list_has_any(json_type({_f('scores')}, '$.*'), ['BOOLEAN', 'VARCHAR', 'ARRAY', 'OBJECT'])")
    return [
        f"{_kind('id')} IS DISTINCT FROM '\"'", f"{_f('id')}::VARCHAR = '\"\"'",    # also: not an object
        *(f"{_kind(k)} <> '\"'" for k in ("span_id", "root_span_id")),
        f"{_kind('is_root')} NOT IN ('t', 'f')",
        f"({_kind('is_root')} IS NULL AND {_kind('span_parents')} <> '[')",
        f"{_kind('created')} <> '\"'",
        "(cs <> '' AND cts IS NULL)",
        # _xact_id: digits (number or string) that fit, a negative integer or a plain ASCII string
        # (Python ignores those), or an object/array/boolean; anything else is Python's call
        "NOT (xt IN ('true', 'false') OR left(xt, 1) IN ('{', '[') OR regexp_full_match(xt, "
        r"""'"?[0-9]+"?|-[0-9]+|"[ !#-\[\]-~]*"'))""",
        """(regexp_full_match(xt, '"?[0-9]+"?') AND try_cast(trim(xt, '"') AS BIGINT) IS NULL)""",
        f"CASE WHEN {_kind('scores')} = '{{' THEN {scores_bad} ELSE {_kind('scores')} <> '{{' END",
        "len(k) <> len(list_distinct(k))",
        _LENIENT_JSON,
    ]


_HAS_UNKNOWN_KEYS = ("len(list_filter(k, lambda key: NOT list_contains(["
                     + ", ".join(f"'{k}'" for k in _PULLED) + "], key))) > 0")


def _extra_sql(has_unknown_keys: str) -> str:
    """The `extra` column: the row without its known keys, when it has others."""
    drop_known = "{" + ", ".join(f'"{k}": null' for k in _PULLED) + "}"
    return f"CASE WHEN {has_unknown_keys} THEN json_merge_patch(j, '{drop_known}') END"


def _columns_sql() -> dict[str, str]:
    """Each stored column as SQL over the pulled fields (meaningful for rows not flagged)."""
    cols = {
        "id": f"{_f('id')} ->> '$'", "span_id": f"{_f('span_id')} ->> '$'",
        "root_span_id": f"{_f('root_span_id')} ->> '$'",
        "is_root": (f"CASE WHEN {_kind('is_root')} IN ('t', 'f') THEN {_kind('is_root')} = 't' "
                    f"WHEN NOT list_contains(k, 'span_parents') THEN NULL WHEN {_f('span_parents')} IS NULL "
                    f"THEN true ELSE json_array_length({_f('span_parents')}) = 0 END"),
        "created": "CASE WHEN cs <> '' THEN cts END",
        "_xact_id": """CASE WHEN regexp_full_match(xt, '"?[0-9]+"?') THEN try_cast(trim(xt, '"') AS BIGINT) END""",
        "extra": _extra_sql(_HAS_UNKNOWN_KEYS),
    }
    for name in JSON_COLUMNS:
        cols[name] = _f(name)
    return {c: cols[c] for c in _STAGE_TYPES}


_SMALL_FIELDS = ("id", "span_id", "root_span_id", "is_root", "span_parents", "created", "_xact_id", "scores",
                 "_is_merge")   # all the checks need; the survey leaves input/output/metadata unparsed
def _id_of(text: str) -> str:
    """A row's id as DuckDB reads it from the row's text (the key the passes join on)."""
    return f"json_extract_string({text}, '$.id')"


def _scan_sql(path: Path, compression: str, fields: tuple[str, ...], *, ordered: bool = False,
              ids: str | None = None, pick: str | None = None) -> str:
    """The CTE chain over one file: `merges` has per row its text `j`, pulled fields `s`, keys
    `k`, parsed `created`, the `flagged` and `merge_row` bits, and `ord`, its line ordinal, when
    `ordered` (WITH ORDINALITY runs single-threaded in DuckDB, so only passes that need file order
    ask for it; the rest run on every core). `ids` (a query of ids) keeps only rows with those
    ids; `pick` (a query with an `id` column) joins on the id and carries its columns as `o`."""
    spec = json.dumps({k: "JSON" for k in fields}).replace("'", "''")
    literal = str(path).replace("'", "''")
    created = "cs"
    cts = (f"CASE WHEN regexp_full_match({created}, '{_ISO_TZ}') THEN try_cast({created} AS TIMESTAMPTZ) "
           f"WHEN regexp_full_match({created}, '{_ISO_NAIVE}') "
           f"THEN timezone('UTC', try_cast({created} AS TIMESTAMP)) END")
    # a missing field makes a term NULL, which must read as "no problem"
    flagged = " OR ".join(["j IS NULL", *(f"coalesce({t}, false)" for t in _flag_terms())])
    is_merge = f"(coalesce({_f('_is_merge')}::VARCHAR = 'true', false) AND NOT flagged)"
    source = f"read_ndjson_objects('{literal}', compression='{compression}', ignore_errors=true)"
    ord_, carry, where = "NULL::BIGINT", "", ""
    if ordered:
        source, ord_ = f"{source} WITH ORDINALITY", "ordinality"
    if ids is not None:
        where = f" WHERE {_id_of('json')} IN ({ids})"
    if pick is not None:
        source, carry = f"{source} f JOIN ({pick}) o ON o.id = {_id_of('f.json')}", "o, "
    return (
        f"WITH raw AS (SELECT {ord_} AS ord, {carry}json AS j, json_transform(json, '{spec}') AS s, "
        f"json_keys(json) AS k FROM {source}{where}), "
        f"pulled AS (SELECT *, CASE WHEN {_kind('created')} = '\"' THEN {_f('created')} ->> '$' END AS cs, "
        f"{_f('_xact_id')}::VARCHAR AS xt FROM raw), "
        f"timed AS (SELECT *, {cts} AS cts FROM pulled), "
        f"flags AS (SELECT *, {flagged} AS flagged FROM timed), "
        f"merges AS (SELECT *, {is_merge} AS merge_row FROM flags) ")


_SURVEY_COLUMNS = {"src": "INTEGER", "id": "VARCHAR", "flagged": "BOOLEAN", "is_merge": "BOOLEAN",
                   "created": "TIMESTAMPTZ", "xact": "BIGINT", "is_root": "BOOLEAN", "has_extra": "BOOLEAN"}


def _survey_sql(survey: str, src: int, path: Path, compression: str) -> str:
    """Pass 1, on every core: each row's id, whether Python or a fold must see it, and the columns
    derived from its small fields, so the write pass need not parse them again."""
    columns = _columns_sql()
    return (f"INSERT INTO {survey} ({', '.join(_SURVEY_COLUMNS)}) "
            + _scan_sql(path, compression, _SMALL_FIELDS)
            + f"SELECT {src}, {_id_of('j')}, flagged, merge_row, {columns['created']}, "
            f"{columns['_xact_id']}, {columns['is_root']}, {_HAS_UNKNOWN_KEYS} FROM merges")


def _odd_rows_sql(path: Path, compression: str) -> str:
    """The flagged and `_is_merge` rows with their line ordinals and text (in file order)."""
    return (_scan_sql(path, compression, _SMALL_FIELDS, ordered=True)
            + "SELECT ord, j, flagged, s.\"id\" ->> '$' FROM merges WHERE flagged OR merge_row ORDER BY ord")


def _stage_rows_sql(stage: str, src: int, path: Path, compression: str, *, ids: str | None = None,
                    pick: str | None = None) -> str:
    """Every column of the chosen rows into the stage table: rows with an id from `ids` in file
    order (`ord`), or the rows `pick` names."""
    columns = _columns_sql()
    ordered = ids is not None
    return (f"INSERT INTO {stage} ({', '.join(_STAGE_COLUMNS)}) "
            + _scan_sql(path, compression, _PULLED, ordered=ordered, ids=ids, pick=pick)
            + f"SELECT {src}, {'ord' if ordered else 0}, NULL, false, false, NULL, "
            + ", ".join(columns[c] for c in _STAGE_TYPES) + " FROM merges WHERE NOT flagged AND NOT merge_row")


def _direct_rows_sql(path: Path, compression: str, pick: str, first_xact: int) -> str:
    """The picked rows straight into `spans` (each a new id seen once in the run, unflagged), with
    the columns the survey derived (`o`); those without an incoming `_xact_id` are numbered from
    `first_xact` by `seq`."""
    columns = {**_columns_sql(), "created": "o.created", "_xact_id": f"coalesce(o.xact, {first_xact} + o.seq)",
               "is_root": "o.is_root", "extra": _extra_sql("o.has_extra")}
    return (f"INSERT INTO spans (object_type, object_id, {', '.join(_STAGE_TYPES)}) "
            + _scan_sql(path, compression, _PULLED, pick=pick)
            + "SELECT ?, ?, " + ", ".join(columns[c] for c in _STAGE_TYPES) + " FROM merges")


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) for each non-blank line; gzip by magic number or .gz suffix."""
    import zlib

    opener: Callable[..., Any] = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


def parse_line(line: bytes | str) -> tuple[Any, str | None]:
    """(row, None) or (None, "row: problem") for one JSONL line, as the row-by-row path judges it."""
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        column = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        return None, f"row: invalid JSON ({detail}{column})"
    probe = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
    if (b"\\ud" in probe or b"\\uD" in probe) and _has_lone_surrogate(row):
        return None, "row: text contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), not valid Unicode"
    return row, None


def _has_lone_surrogate(row: Any) -> bool:
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as probe:
        return probe.read(2) == b"\x1f\x8b"


def _gzip_reads_cleanly(path: Path) -> bool:
    """DuckDB can read the whole gzip stream (checked on a throwaway connection, because a read
    error inside the ingest transaction would abort it)."""
    probe = duckdb.connect()
    try:
        literal = str(path).replace("'", "''")
        probe.execute(f"SELECT count(*) FROM read_ndjson_objects('{literal}', compression='gzip', "
                      "ignore_errors=true)").fetchone()
        return True
    except duckdb.Error:
        return False
    finally:
        probe.close()


class NativeLoader:
    """Stage files for one object (`add_file`), then fold and write them (`finish`); see the
    module docstring. `on_bad(message)` gets "FILE:LINE: field: problem" and may raise."""

    def __init__(self, store: Store, object_type: str, object_id: str, *,
                 on_bad: Callable[[str], None]) -> None:
        self.store = store
        self.con = store.con
        self.object_type = object_type
        self.object_id = object_id
        self.on_bad = on_bad
        self.paths: list[Path] = []
        self.compression: dict[int, str] = {}    # the files surveyed by DuckDB (the rest: Python)
        self.direct: dict[int, int] = {}         # rows per file that go straight into `spans`
        n = next(_COUNTER)
        self.stage = f"_fw_native_{n}"
        self.survey = f"_fw_survey_{n}"
        self.tmpdir = Path(tempfile.mkdtemp(prefix=store.stage_prefix, dir=store.path.parent))
        _LIVE_STAGES.add(self.tmpdir)
        self.result = UpsertResult()
        cols = ", ".join(f"{c} {t}" for c, t in _STAGE_COLUMNS.items())
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {self.stage} ({cols})")
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {self.survey} ("
                         + ", ".join(f"{c} {t}" for c, t in _SURVEY_COLUMNS.items()) + ")")

    # -- staging ---------------------------------------------------------------------------

    def add_file(self, path: Path) -> int:
        """Survey `path` (ids and checks, on every core); check its flagged rows in Python and
        stage its `_is_merge` rows now; `finish` writes the rest. Returns the file's row count."""
        src = len(self.paths)
        self.paths.append(path)
        gz = _is_gzip(path)
        if _starts_with_bom(path, gz) or (gz and not _gzip_reads_cleanly(path)):
            return self._scan_file(src)
        compression = "gzip" if gz else "none"
        try:   # keeps file order (a parallel batch insert), so the survey's rowid orders the file's rows
            self.con.execute(_survey_sql(self.survey, src, path, compression))
        except duckdb.Error as exc:
            raise InputError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
        self.compression[src] = compression
        rows, odd = self.con.execute(f"SELECT count(*), count(*) FILTER (flagged OR is_merge) FROM {self.survey} "
                                     "WHERE src = ?", [src]).fetchone()
        if odd:
            found = self.con.execute(_odd_rows_sql(path, compression)).fetchall()
            if not self._check_flagged(src, [(o, raw) for o, raw, flagged, _ in found if flagged]):
                return self._scan_file(src)
            self._stage_python([{"src": src, "ord": o, "line": None, "py": True, "is_merge": True,
                                 "raw": json.loads(raw), "id": row_id}
                                for o, raw, flagged, row_id in found if not flagged])
        return rows

    def _check_flagged(self, src: int, flagged: list[tuple[int, Any]]) -> bool:
        """Validate the flagged rows in Python and stage them; False (nothing staged) if any is bad."""
        staged = []
        for ord_, raw in flagged:
            if raw is None:
                return False
            row, problem = parse_line(raw)
            if problem is not None:
                return False
            entry = _stage_entry(row)
            if isinstance(entry, str):
                return False
            staged.append({**entry, "src": src, "ord": ord_, "line": None})
        self._stage_python(staged)
        return True

    def _scan_file(self, src: int) -> int:
        """The row-by-row reading of one file: every bad row is reported by FILE:LINE."""
        path = self.paths[src]
        self.compression.pop(src, None)
        self.con.execute(f"DELETE FROM {self.survey} WHERE src = ?", [src])
        self.con.execute(f"DELETE FROM {self.stage} WHERE src = ?", [src])
        batch: list[dict[str, Any]] = []
        staged = 0
        for number, line in iter_lines(path):
            row, problem = parse_line(line)
            entry = _stage_entry(row) if problem is None else problem
            if isinstance(entry, str):
                self.on_bad(f"{path}:{number}: {entry}")
                continue
            batch.append({**entry, "src": src, "ord": number, "line": number})
            if len(batch) >= 25_000:
                staged += self._stage_python(batch)
                batch = []
        return staged + self._stage_python(batch)

    def _stage_python(self, entries: list[dict[str, Any]]) -> int:
        if not entries:
            return 0
        stage_file = self.tmpdir / "python-rows.jsonl"
        with open(stage_file, "w", encoding="utf-8") as handle:
            for entry in entries:
                handle.write(_ENCODE(entry) + "\n")
        columns = "{" + ", ".join(f"'{c}': '{t}'" for c, t in _STAGE_COLUMNS.items()) + "}"
        literal = str(stage_file).replace("'", "''")
        self.con.execute(f"INSERT INTO {self.stage} ({', '.join(_STAGE_COLUMNS)}) SELECT * FROM read_json("
                         f"'{literal}', format='newline_delimited', columns={columns}, "
                         "maximum_object_size=67108864)")
        return len(entries)

    # -- folding and writing ---------------------------------------------------------------

    def finish(self) -> UpsertResult:
        """Write new ids seen once straight into `spans`; stage the rest, fold repeated and
        `_is_merge` ids, then merge the stage into `spans`."""
        self._pick()
        self._write_direct()
        ids = [r[0] for r in self.con.execute(
            f"SELECT id FROM {self.stage} GROUP BY id HAVING count(*) > 1 OR bool_or(is_merge) ORDER BY id"
        ).fetchall()]
        for start in range(0, len(ids), 5_000):
            self._fold(ids[start:start + 5_000])
        if self.object_type == "experiment":
            self._roll_up()
        total = self.con.execute(f"SELECT count(*) FROM {self.stage}").fetchone()[0]
        next_xact = next_xact_id(self.con)
        new, updated = merge_staged(self.con, self.stage, self.object_type, self.object_id, next_xact)
        self.result.inserted += new
        self.result.updated += updated
        self.result.unchanged += total - new - updated
        return self.result

    def _pick(self) -> None:
        """Sort the surveyed rows that are neither flagged nor `_is_merge` by their id: `direct`
        (seen once in this run, not stored for this object: straight into `spans`), `stored` (seen
        once, stored: staged to compare) or `multi` (seen more than once: staged in file order to
        fold). Experiment rows are never `direct`: their roots are rolled up from the stage."""
        experiment = "true" if self.object_type == "experiment" else "false"
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {self.survey}_pick AS "
            f"WITH counts AS (SELECT id, count(*) AS n FROM (SELECT id FROM {self.survey} WHERE id IS NOT NULL "
            f"UNION ALL SELECT id FROM {self.stage} WHERE py AND NOT is_merge) GROUP BY id), "
            "stored AS (SELECT id FROM spans WHERE object_type = ? AND object_id = ?) "
            "SELECT s.src, s.id, CASE WHEN c.n > 1 THEN 'multi' "
            f"WHEN {experiment} OR s.id IN (SELECT id FROM stored) THEN 'stored' ELSE 'direct' END AS kind, "
            "(row_number() OVER (ORDER BY s.src, s.rowid) - 1)::BIGINT AS seq, s.created, s.xact, s.is_root, "
            "s.has_extra "
            f"FROM {self.survey} s JOIN counts c ON c.id = s.id WHERE NOT s.flagged AND NOT s.is_merge",
            [self.object_type, self.object_id])
        kinds = {(src, kind): n for src, kind, n in self.con.execute(
            f"SELECT src, kind, count(*) FROM {self.survey}_pick GROUP BY ALL").fetchall()}
        for src, compression in self.compression.items():
            path = self.paths[src]
            if kinds.get((src, "stored")):
                with _hash_the_pick(self.con):
                    self.con.execute(_stage_rows_sql(self.stage, src, path, compression, pick=(
                        f"SELECT id, seq FROM {self.survey}_pick WHERE src = {src} AND kind = 'stored'")))
            if kinds.get((src, "multi")):
                self.con.execute(_stage_rows_sql(self.stage, src, path, compression, ids=(
                    f"SELECT id FROM {self.survey}_pick WHERE src = {src} AND kind = 'multi'")))
        self.direct = {src: n for (src, kind), n in kinds.items() if kind == "direct"}

    def _write_direct(self) -> None:
        _room_for_ids(self.con, sum(self.direct.values()))
        first_xact = next_xact_id(self.con)
        for src, compression in self.compression.items():
            if self.direct.get(src):
                pick = f"SELECT * FROM {self.survey}_pick WHERE src = {src} AND kind = 'direct'"
                with _hash_the_pick(self.con):
                    self.con.execute(_direct_rows_sql(self.paths[src], compression, pick, first_xact),
                                     [self.object_type, self.object_id])
        self.result.inserted += sum(self.direct.values())

    def _fold(self, ids: list[str]) -> None:
        """One final record per id, applying its rows in file order like `BulkLoader.add`."""
        names = ["src", "ord", "line", "is_merge", "raw", *_STAGE_TYPES]
        cursor = self.con.execute(f"SELECT {', '.join(names)} FROM {self.stage} WHERE id IN "
                                  "(SELECT unnest(?::VARCHAR[])) ORDER BY id, src, ord", [ids])
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        stored = {r["id"]: r for r in self.store.iter_rows(
            self.object_type, self.object_id, where="id IN (SELECT unnest(?::VARCHAR[]))", params=[ids])}
        final = []
        for row_id, group in itertools.groupby(rows, key=lambda r: r["id"]):
            pending = None
            for staged in group:
                record = self._record_of(staged, pending, stored.get(row_id))
                if record is None:
                    continue
                if pending is not None and staged["is_merge"]:
                    pending = record     # the rest of the same row (`_is_merge`), not another version
                    continue
                if pending is not None:
                    if _same_record(pending, record):
                        self.result.unchanged += 1
                        continue
                    self.result.updated += 1
                pending = record
            if pending is not None:
                final.append({**_stage_line(pending), "src": -1, "ord": 0, "line": None, "is_merge": False,
                              "py": False, "raw": None})
        self.con.execute(f"DELETE FROM {self.stage} WHERE id IN (SELECT unnest(?::VARCHAR[]))", [ids])
        self._stage_python(final)

    def _roll_up(self) -> None:
        """Experiment roots get their scorer spans' scores, dataset_row_id, split and trial, as
        `flywheel eval` gives them (backends/experiment_rollup.py): what the SDK logs has none."""
        wanted = f"(is_root OR {_SPAN_TYPE} IN ('eval', 'score'))"
        names = list(_STAGE_TYPES)
        staged = [self._record_of({**dict(zip(names, values, strict=True)), "is_merge": False}, None, None)
                  for values in self.con.execute(f"SELECT {', '.join(names)} FROM {self.stage} "
                                                 f"WHERE {wanted}").fetchall()]
        rows = [_record_as_row(r) for r in staged if r is not None]
        rows += list(self.store.iter_rows(self.object_type, self.object_id, where=f"{wanted} AND id NOT IN "
                                          f"(SELECT id FROM {self.stage})"))
        if not rows:
            return
        by_root: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_root.setdefault(row.get("root_span_id") or row["id"], []).append(row)
        roots = [r for r in rows if r.get("is_root") or (r.get("span_attributes") or {}).get("type") == "eval"]
        staged_ids = {r["id"] for r in staged if r is not None}
        roll_up(roots, by_root)
        changed = [r for r in roots if r["id"] in staged_ids]
        self.con.execute(f"DELETE FROM {self.stage} WHERE id IN (SELECT unnest(?::VARCHAR[]))",
                         [[r["id"] for r in changed]])
        self._stage_python([{**_stage_line(validate_row(r)), "src": -1, "ord": 0, "line": None, "is_merge": False,
                             "py": False, "raw": None} for r in changed])

    def _record_of(self, staged: dict[str, Any], pending: dict[str, Any] | None,
                   stored: dict[str, Any] | None) -> dict[str, Any] | None:
        if not staged["is_merge"]:
            record = {c: staged[c] for c in _STAGE_TYPES}
            for name in (*JSON_COLUMNS, "extra"):
                if isinstance(record[name], str):
                    record[name] = json.loads(record[name])
            return record
        update = {k: v for k, v in json.loads(staged["raw"]).items() if k != "_is_merge"}
        base = _record_as_row(pending) if pending is not None else stored
        try:
            return validate_row(update if base is None else _deep_merge(base, update))
        except ValueError as exc:
            self.on_bad(f"{self._where(staged)}: {exc}")
            return None

    def _where(self, staged: dict[str, Any]) -> str:
        path = self.paths[staged["src"]]
        if staged["line"] is not None:
            return f"{path}:{staged['line']}"
        lines = (number for number, _ in iter_lines(path))
        return f"{path}:{next(itertools.islice(lines, staged['ord'] - 1, None), '?')}"

    def close(self) -> None:
        for table in (self.stage, self.survey, f"{self.survey}_pick"):
            try:
                self.con.execute(f"DROP TABLE IF EXISTS {table}")
            except duckdb.Error:
                break  # an aborted transaction drops its temp tables with it
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        _LIVE_STAGES.discard(self.tmpdir)


_BYTES_PER_PICKED_ID = 160   # the hash table of picked ids with the columns they carry, measured


def _room_for_ids(con: duckdb.DuckDBPyConnection, ids: int) -> None:
    """Raise DuckDB's memory limit, if need be, to hold the picked ids' hash table (it cannot spill
    enough of it): the ingest's base limit plus about 160 bytes an id, at most half the machine's
    memory. About 1.1 GB for 10M new ids; a 1M-span load stays at the base limit's neighbourhood."""
    base = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    wanted = _bytes(base) + ids * _BYTES_PER_PICKED_ID
    ceiling = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    limit = min(wanted, max(ceiling, _bytes(base)))
    if limit > _bytes(base):
        con.execute(f"SET memory_limit = '{limit // 2**20}MB'")


def _bytes(setting: str) -> int:
    """DuckDB's memory setting as it reports it ('488.2 MiB', '1.5 GiB') in bytes."""
    number, unit = setting.split()
    return int(float(number) * 2 ** (10 * ("KiB", "MiB", "GiB", "TiB").index(unit) + 10))


@contextlib.contextmanager
def _hash_the_pick(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Join a file to its picked ids with the ids as the hash table, as the query is written.
    DuckDB guesses a JSON file holds a few dozen rows and would otherwise hash the file: all of
    its text in memory (at 10M spans, past the ingest's memory limit) and built on one thread.
    The joined rows may land in any order: each carries its own `seq`."""
    con.execute("SET disabled_optimizers = 'build_side_probe_side'")
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):   # an aborted transaction refuses even a RESET
            con.execute("RESET disabled_optimizers")
            con.execute("RESET preserve_insertion_order")


def _stage_entry(row: Any) -> dict[str, Any] | str:
    """A parsed row as stage columns, or the problem ("field: problem") that makes it bad."""
    if isinstance(row, dict) and row.get("_is_merge") is True:
        row_id = row.get("id")
        if not isinstance(row_id, str) or not row_id:
            return "id: missing or not a non-empty string"
        return {"id": row_id, "py": True, "is_merge": True, "raw": row}
    try:
        record = validate_row(row)
    except ValueError as exc:
        return str(exc)
    return {**_stage_line(record), "py": False, "is_merge": False, "raw": None}


def _starts_with_bom(path: Path, gz: bool) -> bool:
    opener: Callable[..., Any] = gzip.open if gz else open
    try:
        with opener(path, "rb") as handle:
            return handle.read(3) == b"\xef\xbb\xbf"
    except (OSError, EOFError):
        return True   # let the row-by-row reader name the problem


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
