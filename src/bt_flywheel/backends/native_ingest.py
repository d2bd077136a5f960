"""Ingest at DuckDB speed (issue 12): DuckDB reads, checks and writes the JSONL itself, in one
pass per file on every core, and Python sees only the rows DuckDB cannot vouch for.

Per file, one statement (`_one_pass_sql`, over `read_ndjson_objects`, plain or gzip) parses each
row once, computes every stored column and inserts the row into `spans` for its object, except
two kinds of rows, which go under a marker object (`IN_FLIGHT`, object id "LOADER/FILE/state")
with their text: `flagged` (a check of `store.validate_row`, the one definition of a valid row,
might fail or decide differently: not an object, a field of an unexpected type, a `created` that
is not a plain ISO 8601 string, duplicate keys, JSON that DuckDB's parser accepts and Python's does
not such as trailing commas or `nan`/`inf` spellings) and `merge` (an `_is_merge` row). The insert
is a parallel batch insert, so rowid keeps file order: the loader keeps each file's rowid range,
which orders every row of the run and numbers those that come without an `_xact_id`, as
`_pagination_key` paging expects.

Flagged rows are checked by `validate_row` one by one; if one is bad, or DuckDB could not parse a
line, the file's rows are taken out again and the file is read line by line in Python
(`_scan_file`), so the error names FILE:LINE: field and --skip-bad skips exactly the rows the
row-by-row path skips. `_is_merge` rows are staged for the fold.

`finish` then sorts the written rows by id over the whole run: an id seen once and not stored for
this object before stays where it is and only gets its `_xact_id` (most rows of a load); an id
seen more than once, or already stored, or any experiment row, moves to the stage table, where
repeated ids are folded in Python with the `_is_merge` rows (Braintrust's merge semantics, as
`store.BulkLoader` does) and `store.merge_staged` compares and writes them set-wise.

Everything runs inside the caller's transaction, so nothing of a failed load outlives it. A failed
DuckDB statement would abort that transaction, so DuckDB reads with `ignore_errors` (a malformed
line becomes a NULL row) and a gzip file is first read through once on a separate connection.
"""

from __future__ import annotations

import functools
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
    IN_FLIGHT,
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
from bt_flywheel.core.sqltext import sql_string

_FIELDS = tuple(c for c in _RECORD_COLUMNS if c != "extra")   # the row keys with their own column
_PULLED = (*_FIELDS, "_is_merge")
_ISO_NAIVE = r"[1-9][0-9]{3}-[0-1][0-9]-[0-3][0-9]([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?)?"
_ISO_TZ = r"[1-9][0-9]{3}-[0-1][0-9]-[0-3][0-9][T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?" \
          r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
# Python's json rejects these, DuckDB's parser accepts them: a trailing comma, and nan/inf literals
# in any letter case other than Python's NaN/Infinity. Each regex starts with a literal character,
# which lets RE2 skip ahead to it: a character class first ([:,\[]) costs six times as much.
_NAN_OR_INF = r"\s*[-+]?(?i:nan|inf)"
_LENIENT_JSON = " OR ".join(f"regexp_matches(j, '{pattern}')" for pattern in (
    r",\s*([\]}]|[-+]?(?i:nan|inf))", ":" + _NAN_OR_INF, r"\[" + _NAN_OR_INF))
_META_COLUMNS = {"src": "INTEGER", "ord": "BIGINT", "line": "BIGINT", "nth": "BIGINT", "py": "BOOLEAN",
                 "is_merge": "BOOLEAN", "raw": "JSON"}
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
        # duplicate keys: a known key more than once (the known keys present, counted once each,
        # fall short of the keys that are not unknown), or an unknown key more than once
        f"len(k) - len(u) <> {_KNOWN_PRESENT}",
        "CASE WHEN len(u) > 1 THEN len(u) <> len(list_distinct(u)) ELSE false END",
        _LENIENT_JSON,
    ]


_UNKNOWN_KEYS = ("list_filter(k, lambda key: NOT list_contains(["
                 + ", ".join(f"'{k}'" for k in _PULLED) + "], key))")
_KNOWN_PRESENT = "(" + " + ".join(f"list_contains(k, '{k}')::INTEGER" for k in _PULLED) + ")"
# the `extra` column: the row without its known keys, when it has others
_EXTRA = ("CASE WHEN len(u) > 0 THEN json_merge_patch(j, '{"
          + ", ".join(f'"{k}": null' for k in _PULLED) + "}') END")


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
        "extra": _EXTRA,
    }
    for name in JSON_COLUMNS:
        cols[name] = _f(name)
    return {c: cols[c] for c in _STAGE_TYPES}




def _scan_sql(path: Path, compression: str) -> str:
    """The CTE chain over one file: `merges` has per row its text `j`, pulled fields `s`, keys
    `k` (`u`: those not pulled), parsed `created` (`cts`) and the `flagged` and `merge_row` bits."""
    spec = sql_string(json.dumps({k: "JSON" for k in _PULLED}))
    cts = (f"CASE WHEN regexp_full_match(cs, '{_ISO_TZ}') THEN try_cast(cs AS TIMESTAMPTZ) "
           f"WHEN regexp_full_match(cs, '{_ISO_NAIVE}') THEN timezone('UTC', try_cast(cs AS TIMESTAMP)) END")
    # a missing field makes a term NULL, which must read as "no problem"
    flagged = " OR ".join(["j IS NULL", *(f"coalesce({t}, false)" for t in _flag_terms())])
    is_merge = f"(coalesce({_f('_is_merge')}::VARCHAR = 'true', false) AND NOT flagged)"
    source = f"read_ndjson_objects({sql_string(str(path))}, compression='{compression}', ignore_errors=true)"
    return (
        f"WITH raw AS (SELECT json AS j, json_transform(json, {spec}) AS s, json_keys(json) AS k FROM {source}), "
        f"keyed AS (SELECT *, {_UNKNOWN_KEYS} AS u FROM raw), "
        f"pulled AS (SELECT *, CASE WHEN {_kind('created')} = '\"' THEN {_f('created')} ->> '$' END AS cs, "
        f"{_f('_xact_id')}::VARCHAR AS xt FROM keyed), "
        f"timed AS (SELECT *, {cts} AS cts FROM pulled), "
        f"flags AS (SELECT *, {flagged} AS flagged FROM timed), "
        f"merges AS (SELECT *, {is_merge} AS merge_row FROM flags) ")


def _one_pass_sql(path: Path, compression: str, tag: str) -> str:
    """Every row of the file into `spans` with each column computed: its object's (the two
    parameters), or for flagged and `_is_merge` rows the `IN_FLIGHT` object "TAG/state", with
    their text in `input` (see the module docstring)."""
    plain = _columns_sql()
    columns = {**plain, "input": f"CASE WHEN flagged OR merge_row THEN j ELSE {_f('input')} END",
               "id": f"coalesce({plain['id']}, '')"}    # spans.id is NOT NULL; a flagged row may have none
    odd = "flagged OR merge_row"
    return (f"INSERT INTO spans (object_type, object_id, {', '.join(_STAGE_TYPES)}) "
            + _scan_sql(path, compression)
            + f"SELECT CASE WHEN {odd} THEN '{IN_FLIGHT}' ELSE $1 END, "
            f"CASE WHEN flagged THEN '{tag}/flagged' WHEN merge_row THEN '{tag}/merge' ELSE $2 END, "
            + ", ".join(columns[c] for c in _STAGE_TYPES) + " FROM merges")


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
    """DuckDB can read the whole gzip stream (checked on a connection of its own, because a read
    error inside the ingest transaction would abort it)."""
    try:
        _probe().execute(f"SELECT count(*) FROM read_ndjson_objects({sql_string(str(path))}, compression='gzip', "
                         "ignore_errors=true)").fetchone()
        return True
    except duckdb.Error:
        return False


@functools.cache
def _probe() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB for the gzip checks of this process (opening one takes ~20 ms)."""
    return duckdb.connect()


class NativeLoader:
    """Write files for one object (`add_file`), then place, fold and merge their rows (`finish`);
    see the module docstring. `on_bad(message)` gets "FILE:LINE: field: problem" and may raise."""

    def __init__(self, store: Store, object_type: str, object_id: str, *,
                 on_bad: Callable[[str], None]) -> None:
        self.store = store
        self.con = store.con
        self.object_type = object_type
        self.object_id = object_id
        self.on_bad = on_bad
        self.paths: list[Path] = []
        n = next(_COUNTER)
        self.tag = f"{os.getpid()}.{n}"       # this loader's in-flight rows: object_id "TAG/FILE/state"
        self.rowids: dict[int, tuple[int, int]] = {}   # per file written by the one pass: its rowid range
        self.stage = f"_fw_native_{n}"
        self.tmpdir = Path(tempfile.mkdtemp(prefix=store.stage_prefix, dir=store.path.parent))
        _LIVE_STAGES.add(self.tmpdir)
        self.result = UpsertResult()
        cols = ", ".join(f"{c} {t}" for c, t in _STAGE_COLUMNS.items())
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {self.stage} ({cols})")

    def _in_flight(self, src: int) -> str:
        """SQL selecting one file's flagged and `_is_merge` rows."""
        return f"object_type = '{IN_FLIGHT}' AND object_id LIKE '{self.tag}/{src}/%'"

    def _written(self) -> str:
        """SQL selecting the rows the one pass wrote for this object and that are still there."""
        ranges, merged = sorted(self.rowids.values()), []
        for low, high in ranges:
            if merged and merged[-1][1] + 1 == low:
                merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        within = " OR ".join(f"rowid BETWEEN {low} AND {high}" for low, high in merged) or "false"
        return f"object_type = {sql_string(self.object_type)} AND object_id = {sql_string(self.object_id)} AND ({within})"

    def _src_of_rowid(self) -> str:
        if not self.rowids:
            return "NULL::INTEGER"
        return "CASE " + " ".join(f"WHEN rowid BETWEEN {low} AND {high} THEN {src}"
                                  for src, (low, high) in self.rowids.items()) + " END"

    def _last_rowid(self) -> int:
        return self.con.execute("SELECT coalesce(max(rowid), -1) FROM spans").fetchone()[0]

    # -- writing files ---------------------------------------------------------------------

    def add_file(self, path: Path) -> int:
        """Write `path`'s rows into `spans` in flight (one pass, every core); check its flagged
        rows in Python and stage its `_is_merge` rows now; `finish` places the rest. Returns the
        file's row count."""
        src = len(self.paths)
        self.paths.append(path)
        gz = _is_gzip(path)
        if _starts_with_bom(path, gz) or (gz and not _gzip_reads_cleanly(path)):
            return self._scan_file(src)
        compression = "gzip" if gz else "none"
        before = self._last_rowid()
        try:
            rows = self.con.execute(_one_pass_sql(path, compression, f"{self.tag}/{src}"),
                                    [self.object_type, self.object_id]).fetchone()[0]
        except duckdb.Error as exc:
            raise InputError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
        low, high = before + 1, self._last_rowid()
        if rows:
            self.rowids[src] = (low, high)
        odd = self.con.execute(
            "SELECT rowid, nth, object_id LIKE '%/merge', input, id FROM (SELECT rowid, object_type, object_id, "
            f"input, id, row_number() OVER (ORDER BY rowid) AS nth FROM spans WHERE rowid BETWEEN {low} AND {high}) "
            f"WHERE {self._in_flight(src)} ORDER BY rowid").fetchall() if self._has_odd(src) else []
        if odd:
            self.con.execute(f"DELETE FROM spans WHERE {self._in_flight(src)}")
            flagged = [(rowid, nth, raw) for rowid, nth, merge, raw, _ in odd if not merge]
            if not self._check_flagged(src, flagged):
                return self._scan_file(src)
            self._stage_python([{"src": src, "ord": rowid, "line": None, "nth": nth, "py": True, "is_merge": True,
                                 "raw": json.loads(raw), "id": row_id}
                                for rowid, nth, merge, raw, row_id in odd if merge])
        return rows

    def _has_odd(self, src: int) -> bool:
        return self.con.execute(f"SELECT count(*) FROM spans WHERE {self._in_flight(src)}").fetchone()[0] > 0

    def _check_flagged(self, src: int, flagged: list[tuple[int, int, Any]]) -> bool:
        """Validate the flagged rows in Python and stage them; False (nothing staged) if any is bad."""
        staged = []
        for rowid, nth, raw in flagged:
            if raw is None:
                return False
            row, problem = parse_line(raw)
            if problem is not None:
                return False
            entry = _stage_entry(row)
            if isinstance(entry, str):
                return False
            staged.append({**entry, "src": src, "ord": rowid, "line": None, "nth": nth})
        self._stage_python(staged)
        return True

    def _scan_file(self, src: int) -> int:
        """The row-by-row reading of one file: every bad row is reported by FILE:LINE."""
        path = self.paths[src]
        if src in self.rowids:
            low, high = self.rowids.pop(src)
            self.con.execute(f"DELETE FROM spans WHERE rowid BETWEEN {low} AND {high}")
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
        self.con.execute(f"INSERT INTO {self.stage} ({', '.join(_STAGE_COLUMNS)}) SELECT * FROM read_json("
                         f"{sql_string(str(stage_file))}, format='newline_delimited', columns={columns}, "
                         "maximum_object_size=67108864)")
        return len(entries)

    # -- placing, folding and merging -------------------------------------------------------

    def finish(self) -> UpsertResult:
        """Stage the new rows whose id repeats or is stored, place the rest; fold repeated and
        `_is_merge` ids, then merge the stage into `spans`."""
        self._stage_repeated_and_stored()
        self._place_new()
        if not self.con.execute(f"SELECT count(*) FROM {self.stage}").fetchone()[0]:
            return self.result     # every row was placed: nothing to fold or compare
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

    def _stage_repeated_and_stored(self) -> None:
        """Move the rows the one pass wrote whose id is seen more than once in this run (counting
        the rows already staged: flagged, `_is_merge` and Python-read ones), or was stored for
        this object before, into the stage, in file order; all of them for an experiment, whose
        roots are rolled up from the stage."""
        written = self._written()
        if self.object_type == "experiment":
            moving = written
        else:
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {self.stage}_ids AS "
                f"SELECT id FROM (SELECT id FROM spans WHERE {written} UNION ALL SELECT id FROM {self.stage}) "
                "GROUP BY id HAVING count(*) > 1 "
                f"UNION SELECT id FROM spans WHERE {written} AND id IN (SELECT id FROM spans WHERE "
                f"object_type = ? AND object_id = ? AND NOT ({written}))", [self.object_type, self.object_id])
            if not self.con.execute(f"SELECT count(*) FROM {self.stage}_ids").fetchone()[0]:
                return
            moving = f"{written} AND id IN (SELECT id FROM {self.stage}_ids)"
        self.con.execute(f"INSERT INTO {self.stage} ({', '.join(_STAGE_COLUMNS)}) "
                         f"SELECT {self._src_of_rowid()}, rowid, NULL, NULL, false, false, NULL, "
                         f"{', '.join(_STAGE_TYPES)} FROM spans WHERE {moving}")
        self.con.execute(f"DELETE FROM spans WHERE {moving}")

    def _place_new(self) -> None:
        """The rows the one pass wrote that stay (ids seen once, new to this object) count as
        inserted; those without an `_xact_id` are numbered in file order (by rowid) after every
        stored row."""
        written = self._written()
        placed, first_row = self.con.execute(f"SELECT count(*), min(rowid) FROM spans WHERE {written}").fetchone()
        if placed:
            first_xact = next_xact_id(self.con)
            self.con.execute(f"UPDATE spans SET _xact_id = {first_xact} + rowid - {first_row} "
                             f"WHERE {written} AND _xact_id IS NULL")
        self.result.inserted += placed

    def _fold(self, ids: list[str]) -> None:
        """One final record per id, applying its rows in file order like `BulkLoader.add`."""
        names = ["src", "ord", "line", "nth", "is_merge", "raw", *_STAGE_TYPES]
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
                final.append({**_stage_line(pending), "src": -1, "ord": 0, "line": None, "nth": None,
                              "is_merge": False, "py": False, "raw": None})
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
        self._stage_python([{**_stage_line(validate_row(r)), "src": -1, "ord": 0, "line": None, "nth": None,
                             "is_merge": False, "py": False, "raw": None} for r in changed])

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
        return f"{path}:{next(itertools.islice(lines, staged['nth'] - 1, None), '?')}"

    def close(self) -> None:
        for table in (self.stage, f"{self.stage}_ids"):
            try:
                self.con.execute(f"DROP TABLE IF EXISTS {table}")
            except duckdb.Error:
                break  # an aborted transaction drops its temp tables with it
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        _LIVE_STAGES.discard(self.tmpdir)


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
