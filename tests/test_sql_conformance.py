"""Conformance with Braintrust's documented SQL: every query and filter in
tests/conformance/braintrust_docs.jsonl (copied from Braintrust's documentation pages, source
address kept; project and placeholder values filled in as each entry's `filled` says) runs on a
generated store. Each either answers exactly what a Python reference computed from the same rows
answers, or is refused where Braintrust refuses it, with a message in Braintrust's terms and no
database-engine text. Filters from filter boxes (`wrap`) run as `SELECT id ... WHERE <filter>`,
with the UI's time range (30 days) added unless the filter bounds `created` itself."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bt_flywheel.backends.ingest import ingest
from bt_flywheel.backends.sql import run_query
from bt_flywheel.backends.store import Store
from bt_flywheel.core.errors import InputError
from tests.conformance.generate import PROJECT, generate
from tests.conformance.reference import REFERENCES, World, created

SUITE = Path(__file__).parent / "conformance" / "braintrust_docs.jsonl"
ENTRIES = [json.loads(line) for line in SUITE.read_text(encoding="utf-8").splitlines() if line.strip()]
ENGINE_WORDS = ("Binder Error", "Catalog Error", "Parser Error", "Conversion Error", "Invalid Input Error",
                "Not implemented Error", "LINE 1:", "duckdb", "DuckDB")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    return build_world(tmp_path_factory.mktemp("conformance"))


@pytest.fixture(scope="module")
def reader(world: tuple[Path, World]) -> Iterator[Store]:
    """The world's store opened once, sandboxed, for every query of the module (as a command that
    runs many queries holds it); `run_query(path)` opening its own is covered by the CLI tests."""
    with Store(world[0], read_only=True, sandboxed=True) as store:
        yield store


def build_world(root: Path) -> tuple[Path, World]:
    """The generated rows ingested (with `flywheel ingest`'s library call) into a store under root."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = generate(now)
    store = root / "store.duckdb"
    with Store(store) as st:
        for name, object_rows in rows.items():
            source = root / f"{name}.jsonl"
            source.write_text("".join(json.dumps(r) + "\n" for r in object_rows), encoding="utf-8")
            if name == "logs":
                ingest(st, source, project=PROJECT)
            else:
                ingest(st, source, project=PROJECT, experiment=name)
    return store, World(now=now, rows=rows)


def query_text(entry: dict[str, Any]) -> str:
    wrap = entry.get("wrap")
    if wrap == "filter":
        return (f"SELECT id FROM project_logs('{PROJECT}') WHERE ({entry['query']}) "
                "AND created > now() - interval 30 day")
    if wrap == "bare_filter":
        return f"SELECT id FROM project_logs('{PROJECT}') WHERE {entry['query']}"
    return entry["query"]


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def _rows(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    return [{k: _norm(r.get(k)) for k in keys} for r in rows]


def run_entry(store: Path | Store, entry: dict[str, Any]) -> Any:
    return run_query(store, query_text(entry), force_ignore_linter=bool(entry.get("force_ignore_linter")))


def check_paging(store: Path | Store, w: World, entry: dict[str, Any]) -> None:
    seen: list[str] = []
    query = query_text(entry)
    result = run_query(store, query)
    pages = 0
    while True:
        seen += [r["id"] for r in result.rows]
        pages += 1
        if not result.cursor:
            break
        result = run_query(store, query.replace(" LIMIT 25", f" LIMIT 25 OFFSET '{result.cursor}'"))
        assert pages < 100
    cut = w.now.timestamp() - 7 * 86400
    expected = [r["id"] for r in reversed(w.logs) if created(r).timestamp() > cut]
    assert seen == expected
    assert pages == len(expected) // 25 + 1


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_documented_query_conforms(world: tuple[Path, World], reader: Store, entry: dict[str, Any]) -> None:
    check_entry(reader, world[1], entry)


def check_entry(store: Path | Store, w: World, entry: dict[str, Any]) -> None:
    """Raises AssertionError (wrong answer or wrong refusal) or InputError (refused, not expected)."""
    if entry.get("refused"):
        with pytest.raises(InputError) as refused:
            run_entry(store, entry)
        text = f"{refused.value} {refused.value.hint or ''}"
        assert entry["refusal"] in text
        assert not any(word in text for word in ENGINE_WORDS), text
        return
    check = entry["check"]
    if check["ref"] == "paging":
        check_paging(store, w, entry)
        return
    expected = REFERENCES[check["ref"]](w)
    result = run_entry(store, entry)
    keys = list(expected[0]) if expected else (result.columns or ["id"])
    got, want = _rows(result.rows, keys), _rows(expected, keys)
    if not check.get("ordered"):
        got, want = sorted(got, key=_sort_key), sorted(want, key=_sort_key)
    assert len(got) == len(want), (len(got), len(want))
    for a, b in zip(got, want, strict=True):
        assert _same(a, b), (a, b)


def _sort_key(row: dict[str, Any]) -> str:
    return json.dumps({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}, sort_keys=True)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_the_suite_covers_the_documented_pages() -> None:
    sources = {e["source"].split("/docs/")[1].removesuffix(".md") for e in ENTRIES}
    for page in ("reference/sql/query-structure", "reference/sql/functions", "reference/sql/examples",
                 "reference/sql/best-practices", "reference/cli/sql", "observe/filter"):
        assert page in sources
    assert sum(1 for e in ENTRIES if e.get("refused")) >= 5
    assert len({e["id"] for e in ENTRIES}) == len(ENTRIES)


def test_cli_json_returns_a_cursor_that_offset_accepts(world: tuple[Path, World], run_cli) -> None:
    """`flywheel sql --json` prints {data, schema, cursor} like `bt sql --json`; the cursor, sent back
    as OFFSET '<cursor>', continues with the next page and the hidden paging column never shows."""
    store, w = world
    query = (f"SELECT id, created FROM project_logs('{PROJECT}') WHERE created > now() - interval 7 day "
             "ORDER BY _pagination_key DESC LIMIT 5")
    code, out, err = run_cli("sql", "--store", str(store), "--json", query)
    assert code == 0, err
    first = json.loads(out)
    assert first["cursor"] and len(first["data"]) == 5 and set(first["data"][0]) == {"id", "created"}
    code, out, err = run_cli("sql", "--store", str(store), "--json", f"{query} OFFSET '{first['cursor']}'")
    assert code == 0, err
    second = json.loads(out)
    newest = [r["id"] for r in reversed(w.logs) if created(r).timestamp() > w.now.timestamp() - 7 * 86400]
    assert [r["id"] for r in first["data"] + second["data"]] == newest[:10]
    code, _, err = run_cli("sql", "--store", str(store), "--json", f"{query} OFFSET 'not-a-cursor'")
    assert code == 2 and "not a cursor" in err


def test_a_select_alias_may_be_any_name(world: tuple[Path, World], reader: Store) -> None:
    """Aliases such as `t` or `x` are the user's: the source subquery's own alias never shadows them."""
    store, w = reader, world[1]
    for alias in ("t", "x", "_all"):
        rows = run_query(store, f"SELECT span_attributes.type AS {alias}, count(*) AS n FROM project_logs('{PROJECT}') "
                                f"WHERE created > now() - interval 30 day GROUP BY {alias}").rows
        expected: dict[str, int] = {}
        for r in w.within(30):
            expected[r["span_attributes"]["type"]] = expected.get(r["span_attributes"]["type"], 0) + 1
        assert {r[alias]: r["n"] for r in rows} == expected
