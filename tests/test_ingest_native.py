"""The DuckDB-native ingest path (backends/native_ingest.py) against the row-by-row path it
replaced (`ingest_rowwise`): on generated JSONL, good, odd and bad, both store the same rows,
report the same counts, and reject the same input naming the same FILE:LINE: field."""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bt_flywheel.backends.ingest import ingest, ingest_rowwise
from bt_flywheel.backends.store import Store
from bt_flywheel.backends.synth import generate_spans
from bt_flywheel.core.errors import InputError

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

IDS = ["a", "b", "c", "d", "e", "f", "g", "h"]   # few enough to repeat, enough to be unique
CREATED = st.sampled_from([
    "2026-01-02T03:04:05Z", "2026-01-02T03:04:05.123456Z", "2026-01-02T03:04:05.1+02:00", "2026-01-02 03:04",
    "2026-01-02", "2026-01-02T03:04:05", "2026-01-02T03:04:05+0530", "2026-01-02T03Z", "20260102T030405",
    "2026-02-30T00:00:00Z", "2026-13-01", "0999-01-01T00:00:00Z", "2026-01-02T24:00:00", "", "yesterday",
    "2026-01-02T03:04:05.1234567Z", "2026-01-02x03:04:05", 1767225600, 1767225600.5, 1e20, None, True, [1],
])
XACT = st.sampled_from(["1000192656880881099", "0007", "", "abc", "١٢", "²", 5, -5, 2**63, 2**64 + 1, 1.5,
                        True, None, "99999999999999999999", {"a": 1}])
JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True)
                       | st.text(max_size=6), lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=5)
SCORES = st.one_of(st.none(), st.dictionaries(st.sampled_from(["f", "g"]), st.one_of(
    st.none(), st.floats(0, 1), st.integers(0, 1), st.booleans(), st.text(max_size=2)), max_size=2), JSONISH)


@st.composite
def a_row(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {"id": draw(st.sampled_from(IDS))}
    for key, strategy in (("created", CREATED), ("_xact_id", XACT), ("scores", SCORES),
                          ("span_parents", st.one_of(st.none(), st.lists(st.sampled_from(IDS), max_size=2),
                                                     st.just("x"), st.just({}))),
                          ("is_root", st.one_of(st.none(), st.booleans(), st.just("yes"))),
                          ("span_id", st.one_of(st.sampled_from(IDS), st.none(), st.integers())),
                          ("input", JSONISH), ("metadata", JSONISH), ("output", JSONISH),
                          ("project_id", JSONISH), ("extra", JSONISH)):
        if draw(st.booleans()):
            row[key] = draw(strategy)
    if draw(st.integers(0, 4)) == 0:
        row["_is_merge"] = draw(st.sampled_from([True, True, False, "true"]))
    if draw(st.integers(0, 9)) == 0:
        row["id"] = draw(st.sampled_from(["", 7, None]))
    return row


ODD_LINES = st.sampled_from(['{"id": "a",}', '{"id": "a", "x": nan}', '{"id": "a", "x": NaN}',
                             '{"id": "a", "x": -Infinity}', '{"id": "a", "x": inf}', '{"id": "a", "x": Nan}',
                             '{"id": "a", "x": [iNf]}', '{"id": "a", "x": -InFiNiTy}', '{"id": "a", "id": "b"}',
                             '{"id": "\\ud800"}', "[1, 2]", '"a"', "{oops", '{"id": "a"} x',
                             '{"id": "a", "t": "a,}"}', '{"id": "a", "t": ": nan"}', '\ufeff{"id": "a"}',
                             '{"id": "a", "n": 123456789012345678901234567890}', "   ",
                             '{"id": "a", "x": 1, "x": 2}', '{"id": "a", "x": 1, "y": 2, "id": "a"}',
                             '{"id": "a", "x": [1 ,]}', '{"id": "a", "x": [ nAn]}', '{"id": "a", "x":-Inf}'])


@st.composite
def a_file(draw: st.DrawFn) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(ODD_LINES))
        else:
            lines.append(json.dumps(draw(a_row()), ensure_ascii=draw(st.booleans())))
    return lines


def _run(fn: Any, store: Store, project: str, files: list[Path], skip_bad: bool) -> tuple[Any, list[dict[str, Any]]]:
    outcomes = []
    for path in files:
        try:
            outcomes.append(fn(store, path, project=project, skip_bad=skip_bad).as_dict())
        except InputError as exc:
            outcomes.append(f"error: {exc}")
    pid = store.find_project(project)
    rows = list(store.iter_rows("project_logs", pid)) if pid else []
    for row in rows:
        row.pop("_xact_id")   # numbered per write; both paths keep incoming ones (checked below)
    return outcomes, rows


def _for_compare(outcomes: list[Any], base: Path) -> list[Any]:
    return [json.loads(json.dumps(o).replace(str(base), "")) for o in outcomes]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """A store for each path, open for the whole property. Each example loads into a project of its
    own, which starts empty as a new store would (rows are keyed by project), so examples cannot
    see each other's rows; opening two new DuckDB files per example cost most of the test's time."""
    with Store(tmp_path / "native.duckdb") as native, Store(tmp_path / "rowwise.duckdb") as rowwise:
        yield native, rowwise


_EXAMPLES = itertools.count()


@PROPERTY
@given(files=st.lists(a_file(), min_size=1, max_size=3), skip_bad=st.booleans(), gz=st.booleans())
def test_native_and_rowwise_ingest_agree(tmp_path_factory: pytest.TempPathFactory, stores: tuple[Store, Store],
                                         files: list[list[str]], skip_bad: bool, gz: bool) -> None:
    base = tmp_path_factory.mktemp("agree")
    project = f"p{next(_EXAMPLES)}"
    paths = []
    for i, lines in enumerate(files):
        data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
        path = base / f"f{i}.jsonl{'.gz' if gz else ''}"
        path.write_bytes(gzip.compress(data) if gz else data)
        paths.append(path)
    native = _run(ingest, stores[0], project, paths, skip_bad)
    rowwise = _run(ingest_rowwise, stores[1], project, paths, skip_bad)
    assert native[1] == rowwise[1]
    assert len({r["id"] for r in native[1]}) == len(native[1])   # no primary key: the loaders keep ids unique
    got, want = _for_compare(native[0], base), _for_compare(rowwise[0], base)
    if skip_bad:
        # the native path checks `_is_merge` rows after the file's other rows, so the list of bad
        # rows may come in another order; it must be the same rows
        for outcome in (*got, *want):
            outcome["bad_rows"].sort()
    assert [isinstance(o, str) for o in got] == [isinstance(o, str) for o in want]
    for mine, theirs, path in zip(got, want, paths, strict=True):
        if isinstance(mine, str) and mine != theirs:
            # also an error, but maybe another bad row of the same file: it must be one the
            # row-by-row path also rejects
            bad = _run(ingest_rowwise, stores[1], f"{project}-all-bad-{path.name}", [path], True)[0][0]["bad_rows"]
            assert mine.removeprefix("error: ") in _for_compare(bad, base), (mine, bad)
        else:
            assert mine == theirs


def test_incoming_xact_ids_and_unknown_keys_survive(tmp_path: Path) -> None:
    rows = [dict(r, _xact_id=str(1000 + i), project_id="P", _pagination_key=f"p{i}")
            for i, r in enumerate(generate_spans(30, seed=3))]
    src = tmp_path / "a.jsonl.gz"
    src.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    with Store(tmp_path / "s.duckdb") as store:
        assert ingest(store, src, project="p").inserted == 30
        stored = {r["id"]: r for r in store.iter_rows("project_logs", store.find_project("p"))}
    for row in rows:
        assert stored[row["id"]]["_xact_id"] == int(row["_xact_id"])
        assert stored[row["id"]]["_pagination_key"] == row["_pagination_key"]
        assert stored[row["id"]]["input"] == row["input"]


def test_a_store_loaded_row_by_row_reingests_natively_as_unchanged(tmp_path: Path) -> None:
    """Both paths store the same text, so switching paths costs no rewrite."""
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in generate_spans(200, seed=4)))
    with Store(tmp_path / "s.duckdb") as store:
        assert ingest_rowwise(store, src, project="p").inserted == 200
        again = ingest(store, src, project="p")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 200)


def test_topics_columns_are_carried_by_the_native_path(tmp_path: Path) -> None:
    """`facets` and `classifications` (Braintrust Topics' columns) land in their own columns."""
    rows = list(generate_spans(4, seed=5))
    rows[0]["facets"] = {"issues": "refusal"}
    rows[0]["classifications"] = {"topic": [{"id": "t1", "label": "billing", "score": 0.9}]}
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with Store(tmp_path / "s.duckdb") as store:
        ingest(store, src, project="p")
        got = store.con.execute("SELECT facets, classifications, extra FROM spans WHERE id = ?",
                                [rows[0]["id"]]).fetchone()
        stored = {r["id"]: r for r in store.iter_rows("project_logs", store.find_project("p"))}
    assert json.loads(got[0]) == rows[0]["facets"] and json.loads(got[1]) == rows[0]["classifications"]
    assert got[2] is None
    assert stored[rows[0]["id"]]["facets"] == rows[0]["facets"]
    assert "facets" not in stored[rows[1]["id"]]


def test_each_kind_of_row_takes_its_path_and_matches_the_row_by_row_result(tmp_path: Path) -> None:
    """One run over two files holding every case the native path sorts rows into: new ids seen
    once (written straight into `spans`), stored ids seen once (staged and compared: one changed,
    one the same), ids repeated across files (folded, last wins), a row only Python can judge
    (epoch `created`) and an `_is_merge` row."""
    spans = list(generate_spans(40, seed=6))
    first, second = spans[:20], spans[20:]
    changed = dict(first[0], output={"text": "edited"})
    odd = dict(second[5], created=1767225600)
    merge = {"id": second[6]["id"], "_is_merge": True, "metadata": {"reviewed": True}}
    repeated = dict(second[7], tags=["again"])
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    files[0].write_text("".join(json.dumps(r) + "\n" for r in [changed, first[1], *second[:5], second[7]]))
    files[1].write_text("".join(json.dumps(r) + "\n" for r in [odd, *second[6:], merge, repeated]))
    results = {}
    for name, fn in (("native", ingest), ("rowwise", ingest_rowwise)):
        with Store(tmp_path / f"{name}.duckdb") as store:
            fn(store, _jsonl(tmp_path / f"{name}-seed.jsonl", first), project="p")
            outcome = [fn(store, path, project="p").as_dict() for path in files]
            rows = sorted(store.iter_rows("project_logs", store.find_project("p")), key=lambda r: r["id"])
        for row in rows:
            row.pop("_xact_id")
        results[name] = ([{k: o[k] for k in ("inserted", "updated", "unchanged")} for o in outcome], rows)
    assert results["native"] == results["rowwise"]
    rows = {r["id"]: r for r in results["native"][1]}
    assert rows[first[0]["id"]]["output"] == {"text": "edited"}
    assert rows[second[6]["id"]]["metadata"]["reviewed"] is True
    assert rows[second[7]["id"]]["tags"] == ["again"]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_one_pass_runs_on_every_core(tmp_path: Path) -> None:
    """Line ordinals (WITH ORDINALITY) or a window make DuckDB run a pipeline on one thread: the
    pass that reads, checks and writes every row must ask for neither (rowid keeps file order)."""
    from bt_flywheel.backends import native_ingest as native

    src = _jsonl(tmp_path / "a.jsonl", list(generate_spans(3, seed=7)))
    with Store(tmp_path / "s.duckdb") as store:
        plan = str(store.con.execute("EXPLAIN " + native._one_pass_sql(src, "none", "t/0"),
                                      ["project_logs", "x"]).fetchall()).upper()
    assert "READ_NDJSON_OBJECTS" in plan
    assert "WINDOW" not in plan.replace(" ", "_") and "ORDINALITY" not in plan


def test_a_store_made_with_the_old_primary_key_loses_it_and_loads_repeated_ids(tmp_path: Path) -> None:
    """Stores written before the key was dropped: their rows survive the rebuild, and a file that
    repeats an id (which the key would refuse while the row is in flight) loads like row by row."""
    import duckdb

    from bt_flywheel.backends.store import SCHEMA

    path = tmp_path / "old.duckdb"
    spans = list(generate_spans(6, seed=8))
    with Store(path) as store:
        ingest(store, _jsonl(tmp_path / "seed.jsonl", spans[:3]), project="p")
        before = sorted(store.iter_rows("project_logs", store.find_project("p")), key=lambda r: r["id"])
    con = duckdb.connect(str(path))
    keyed = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS spans"):].replace(
        "CREATE TABLE IF NOT EXISTS spans", "CREATE TABLE keyed").replace(
        "facets JSON, classifications JSON", "facets JSON, classifications JSON, PRIMARY KEY (object_type, object_id, id)")
    con.execute(keyed)
    con.execute("INSERT INTO keyed SELECT * FROM spans")
    con.execute("DROP TABLE spans")
    con.execute("ALTER TABLE keyed RENAME TO spans")
    con.close()
    repeated = [spans[3], dict(spans[3], tags=["again"]), spans[4]]
    results = {}
    for name, fn in (("native", ingest), ("rowwise", ingest_rowwise)):
        copy = tmp_path / f"{name}.duckdb"
        copy.write_bytes(path.read_bytes())
        with Store(copy) as store:
            keys = store.con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'spans' "
                                     "AND constraint_type = 'PRIMARY KEY'").fetchone()[0]
            outcome = fn(store, _jsonl(tmp_path / f"{name}.jsonl", repeated), project="p").as_dict()
            rows = sorted(store.iter_rows("project_logs", store.find_project("p")), key=lambda r: r["id"])
        assert keys == 0
        for row in rows:
            row.pop("_xact_id")
        results[name] = ({k: outcome[k] for k in ("inserted", "updated", "unchanged")}, rows)
    assert results["native"] == results["rowwise"]
    assert {r["id"] for r in before} <= {r["id"] for r in results["native"][1]}
    assert {r["id"]: r for r in results["native"][1]}[spans[3]["id"]]["tags"] == ["again"]


@pytest.mark.parametrize("literal", ["nan", "NaN", "Nan", "naN", "nAn", "inf", "iNf", "-InFiNiTy", "+inf",
                                     "Infinity", "-Infinity"])
def test_nan_and_inf_words_in_any_case_are_judged_like_the_row_by_row_path(tmp_path: Path, literal: str) -> None:
    """DuckDB's parser takes nan/inf words in any letter case; Python's json takes only NaN,
    Infinity and -Infinity, so the native path must accept exactly those and reject the rest."""
    src = _jsonl(tmp_path / "a.jsonl", list(generate_spans(2, seed=8)))
    with open(src, "a") as handle:
        handle.write('{"id": "odd", "metrics": {"x": ' + literal + "}}\n")
    outcomes = []
    for fn in (ingest, ingest_rowwise):
        with Store(tmp_path / f"{fn.__name__}.duckdb") as store:
            try:
                fn(store, src, project="p")
                outcomes.append(sorted(r["id"] for r in store.iter_rows("project_logs", store.find_project("p"))))
            except InputError as exc:
                outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    python_reads_it = literal in ("NaN", "Infinity", "-Infinity")
    assert isinstance(outcomes[0], list) == python_reads_it, outcomes[0]


@pytest.mark.parametrize("line", [
    '{"id": "odd", "metrics": {"x": [1, nAn]}}', '{"id": "odd", "metrics": {"x": [ -inf]}}',
    '{"id": "odd", "metrics": {"x":\tINF}}', '{"id": "odd", "tags": ["a" ,]}', '{"id": "odd", "metrics": {"x": 1 , }}',
    '{"id": "odd", "id": "odd"}', '{"id": "odd", "tags": [], "tags": ["a"]}',
    '{"id": "odd", "project_id": "p1", "project_id": "p2"}', '{"id": "odd", "a": 1, "b": 2, "a": 3}',
    '{"id": "odd", "project_id": "p1", "log_id": "g"}'])
def test_rows_only_python_can_judge_are_judged_like_the_row_by_row_path(tmp_path: Path, line: str) -> None:
    """Lenient JSON wherever it sits and duplicate keys, known or not: the native path must store
    exactly what the row-by-row path stores (Python keeps a repeated key's last value)."""
    src = _jsonl(tmp_path / "a.jsonl", list(generate_spans(2, seed=8)))
    with open(src, "a") as handle:
        handle.write(line + "\n")
    outcomes = []
    for fn in (ingest, ingest_rowwise):
        with Store(tmp_path / f"{fn.__name__}.duckdb") as store:
            try:
                fn(store, src, project="p")
                rows = sorted(store.iter_rows("project_logs", store.find_project("p")), key=lambda r: r["id"])
                outcomes.append([{k: v for k, v in r.items() if k != "_xact_id"} for r in rows])
                texts = store.con.execute("SELECT extra::VARCHAR, metrics::VARCHAR, tags::VARCHAR FROM spans").fetchall()
            except InputError as exc:
                outcomes.append(str(exc).replace(fn.__name__, ""))
                continue
            # what DuckDB's own queries read: a repeated key there would answer with its first value
            for text in (t for row in texts for t in row if t is not None):
                json.loads(text, object_pairs_hook=_no_repeated_keys)
    assert outcomes[0] == outcomes[1]


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"stored JSON repeats a key: {keys}"
    return dict(pairs)


def test_rows_without_an_xact_id_are_numbered_in_file_order_after_every_stored_row(tmp_path: Path) -> None:
    """`_pagination_key` paging reads `_xact_id` order: a load's rows that come without one are
    numbered in file order across its files, after what the store held, on both paths."""
    spans = list(generate_spans(300, seed=9))
    for i, span in enumerate(spans[:5]):
        span["_xact_id"] = str(10_000 + i)           # a first load that brings its own ids
    files = [_jsonl(tmp_path / "a.jsonl", spans[5:150]), _jsonl(tmp_path / "b.jsonl", spans[150:])]
    for fn in (ingest, ingest_rowwise):
        with Store(tmp_path / f"{fn.__name__}.duckdb") as store:
            fn(store, _jsonl(tmp_path / "seed.jsonl", spans[:5]), project="p")
            for path in files:
                fn(store, path, project="p")
            order = store.con.execute("SELECT id, _xact_id FROM spans ORDER BY _xact_id").fetchall()
        assert [row_id for row_id, _ in order] == [s["id"] for s in spans], fn.__name__
        assert order[5][1] > 10_004
