"""Bad input at every entry point (issue 8, DESIGN.md §10), property-based with hypothesis.

Each property feeds a generated bad file or query to the CLI in-process and checks the error
contract: a non-zero exit (2 = invalid input), one `error:` line on stderr naming the file, field
or row, no traceback, and nothing already stored changed (`store_state` before and after: the
same bytes, or the same tables where the bytes moved). tests/test_reliability_subprocess.py repeats a handful through a real
subprocess, where a traceback would reach stderr uncaught.
"""

from __future__ import annotations

import copy
import gzip
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.checks import assert_one_line_error, store_snapshot, store_state
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bt_flywheel.label.agent import export_pending
from bt_flywheel.label.base import Rubric, mark_pending

REPO_ROOT = Path(__file__).resolve().parents[1]
HANDOFFS = sorted((REPO_ROOT / "examples" / "handoffs").glob("*.json"))
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FEW = settings(PROPERTY, max_examples=15)

JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                     max_size=3),
                       max_leaves=6)


def good_row(i: int) -> dict[str, Any]:
    return {"id": f"row-{i}", "span_id": f"row-{i}", "root_span_id": f"row-{i}", "span_parents": [],
            "is_root": True, "created": f"2026-01-0{1 + i % 9}T00:00:00Z", "input": {"q": f"question {i}"},
            "output": f"answer {i}", "scores": {"resolution": i % 2}, "metadata": {"channel": "email"}}


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory, run_cli_once) -> Path:
    """12 spans of project 'acme' ingested through the CLI, once for this module."""
    folder = tmp_path_factory.mktemp("base-store")
    src = folder / "base.jsonl"
    src.write_text("".join(json.dumps(good_row(i)) + "\n" for i in range(12)))
    code, _, err = run_cli_once("ingest", str(src), "--project", "acme", "--store", str(folder / "base.duckdb"),
                                "--quiet", cwd=folder)
    assert code == 0, err
    assert not (folder / "base.duckdb.wal").exists()
    return folder / "base.duckdb"


@pytest.fixture
def store(tmp_path: Path, base_store: Path) -> Path:
    """A local store holding 12 spans of project 'acme' (this test's own copy of `base_store`), the
    thing no failed command may change."""
    path = tmp_path / "base.duckdb"
    shutil.copyfile(base_store, path)
    return path


def test_store_state_sees_a_changed_row(tmp_path: Path, run_cli, store: Path) -> None:
    """`store_state` (the check below) compares bytes first and the tables when the bytes differ."""
    before = store_state(store)
    assert store_state(store) == before and before.tables() == store_snapshot(store)
    (tmp_path / "one.jsonl").write_text(json.dumps({**good_row(0), "output": "changed"}) + "\n")
    assert run_cli("ingest", str(tmp_path / "one.jsonl"), "--project", "acme", "--store", str(store))[0] == 0
    after = store_state(store)
    assert after != before and after.tables() == store_snapshot(store) != before.tables()


# -- ingest: malformed JSONL, wrong types, truncated gzip -----------------------------------------

def _not_an_object(text: str) -> bool:
    try:
        return not isinstance(json.loads(text), dict)
    except ValueError:
        return True


INVALID_JSON = st.one_of(
    st.sampled_from(['{"id": "x"', '{"id": "x",}', "{'id': 'x'}", '{"id": x}', "[1, 2", "nul", "{}}",
                     '{"id": "x" "span_id": "y"}', "\x00\x01", '{"id": "\\x41"}']),
    st.text(min_size=1, max_size=30).map(lambda t: "{" + t),
).filter(lambda t: "\n" not in t and t.strip() != "" and _not_an_object(t))
NOT_AN_OBJECT = st.one_of(st.lists(JSONISH, max_size=3), st.integers(), st.text(max_size=10), st.just(None),
                          st.booleans()).map(json.dumps)


def _bad_created(value: Any) -> bool:
    if isinstance(value, str):
        if value == "":
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return True
        return False
    return not isinstance(value, int | float) and value is not None


# field -> values of the wrong type for it (each must be rejected naming the field)
WRONG_TYPES: dict[str, st.SearchStrategy[Any]] = {
    "id": st.one_of(st.integers(), st.just(""), st.lists(st.text(max_size=3), max_size=2), st.booleans(),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    "span_id": st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2)),
    "root_span_id": st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), min_size=1)),
    "is_root": st.one_of(st.integers(), st.text(max_size=5), st.lists(st.booleans(), min_size=1)),
    "created": st.one_of(st.text(max_size=25).filter(_bad_created), st.lists(st.integers(), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                         st.sampled_from([1e20, -1e20, 1e300])),
    "scores": st.one_of(st.lists(st.integers(), max_size=2), st.text(max_size=5), st.integers(),
                        st.dictionaries(st.text(min_size=1, max_size=5),
                                        st.one_of(st.text(max_size=3), st.booleans(), st.lists(st.integers())),
                                        min_size=1, max_size=2)),
    "_xact_id": st.integers(min_value=2**63, max_value=2**80),
}


@st.composite
def wrong_type_line(draw: st.DrawFn) -> tuple[str, str]:
    field = draw(st.sampled_from(sorted(WRONG_TYPES)))
    row = good_row(99)
    row[field] = draw(WRONG_TYPES[field])
    return field, json.dumps(row)


@st.composite
def bad_jsonl(draw: st.DrawFn) -> tuple[list[str], int, str | None]:
    """(lines, 1-based number of the bad line, field it must name or None)."""
    lines = [json.dumps(good_row(100 + i)) for i in range(draw(st.integers(0, 4)))]
    kind = draw(st.sampled_from(["invalid", "not_object", "wrong_type"]))
    field = None
    if kind == "invalid":
        bad = draw(INVALID_JSON)
    elif kind == "not_object":
        bad = draw(NOT_AN_OBJECT)
    else:
        field, bad = draw(wrong_type_line())
    at = draw(st.integers(0, len(lines)))
    lines.insert(at, bad)
    return lines, at + 1, field


@PROPERTY
@given(case=bad_jsonl(), gz=st.booleans())
def test_ingest_rejects_a_bad_row_by_file_line_and_field_and_stores_nothing(
        tmp_path: Path, run_cli, store: Path, case: tuple[list[str], int, str | None], gz: bool) -> None:
    lines, number, field = case
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    path = tmp_path / ("bad.jsonl.gz" if gz else "bad.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    before = store_state(store)
    code, out, err = run_cli("ingest", str(path), "--project", "acme", "--store", str(store))
    line = assert_one_line_error(code, err, names=(f"{path}:{number}:",))
    if field:
        assert field in line
    assert store_state(store) == before


@FEW
@given(cut=st.floats(0.0, 1.0), keep_going=st.booleans())
def test_ingest_of_truncated_gzip_fails_naming_the_file_and_stores_nothing(
        tmp_path: Path, run_cli, store: Path, cut: float, keep_going: bool) -> None:
    rows = "".join(json.dumps(good_row(200 + i)) + "\n" for i in range(40)).encode()
    whole = gzip.compress(rows)
    size = 2 + int(cut * (len(whole) - 3))      # keep the magic number, drop at least one byte
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[:size])
    before = store_state(store)
    args = ["ingest", str(path), "--project", "acme", "--store", str(store)]
    code, out, err = run_cli(*args, *(["--skip-bad"] if keep_going else []))
    assert_one_line_error(code, err, names=(str(path),), only_line=not keep_going)
    assert store_state(store) == before


def test_ingest_skip_bad_keeps_good_rows_and_names_each_bad_one(tmp_path: Path, run_cli, store: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([json.dumps(good_row(300)), "{oops", json.dumps({**good_row(301), "is_root": "yes"}),
                               json.dumps(good_row(302))]) + "\n")
    code, out, err = run_cli("ingest", str(path), "--project", "acme", "--store", str(store), "--skip-bad")
    assert code == 0, err
    assert "inserted 2" in out and "skipped 2" in out
    assert f"{path}:2: row: invalid JSON" in err and f"{path}:3: is_root" in err
    assert "Traceback" not in err


# -- curate --facets: invalid YAML and schema violations ------------------------------------------

BROKEN_YAML = st.sampled_from([
    "facets: [\n", "facets:\n  - name: a\n   bad-indent: 1\n", "facets: {name: a\n", "\tfacets: []\n",
    "facets:\n- name: \"unterminated\n", "? [a\n", "facets: *nope\n", "%YAML 9.9\n---\nfacets: []\n",
    "facets:\n  - name: a\n    name: b\n  - { ]\n", "@facets: 1\n",
])


@st.composite
def schema_violation(draw: st.DrawFn) -> str:
    import yaml

    good = {"facets": [{"name": "issues", "prompt": "what went wrong", "value_path": "output"}]}
    kind = draw(st.sampled_from(["no_facets", "facets_not_list", "empty", "no_name", "bad_name", "extra_key",
                                 "wrong_type", "duplicate", "negative_limit", "top_not_mapping"]))
    doc: Any = copy.deepcopy(good)
    facet = doc["facets"][0]
    if kind == "no_facets":
        doc = {"version": 1}
    elif kind == "facets_not_list":
        doc["facets"] = draw(st.one_of(st.text(max_size=5), st.integers(), st.just({"name": "x"})))
    elif kind == "empty":
        doc["facets"] = []
    elif kind == "no_name":
        del facet["name"]
    elif kind == "bad_name":
        facet["name"] = draw(st.one_of(st.just(""), st.text(max_size=6).map(lambda t: "-" + t), st.integers()))
    elif kind == "extra_key":
        facet[draw(st.sampled_from(["colour", "span-filter", "valuepath"]))] = draw(JSONISH)
    elif kind == "wrong_type":
        key = draw(st.sampled_from(["prompt", "value_path", "span_filter", "positive_limit", "input_from"]))
        facet[key] = draw(st.one_of(st.lists(st.integers(), min_size=1), st.dictionaries(
            st.text(min_size=1, max_size=3), st.integers(), min_size=1), st.floats(0.5, 9.5)))
    elif kind == "duplicate":
        doc["facets"].append(dict(facet))
    elif kind == "negative_limit":
        facet["negative_limit"] = draw(st.integers(max_value=-1))
    else:
        doc = draw(st.one_of(st.lists(st.integers(), max_size=2), st.text(min_size=1, max_size=8).filter(
            lambda t: not t.strip().startswith(("{", "[", "&", "*", "!", "%", "@", "`", "|", ">", "'", '"', "?", "-"))
            and ":" not in t and "#" not in t)))
    return yaml.safe_dump(doc) if not isinstance(doc, str) else doc


@PROPERTY
@given(text=st.one_of(BROKEN_YAML, schema_violation()))
def test_curate_rejects_invalid_facet_files_naming_the_file(tmp_path: Path, run_cli, store: Path, text: str) -> None:
    import yaml

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    assume(not (isinstance(parsed, dict) and isinstance(parsed.get("facets"), list) and parsed["facets"]
                and all(isinstance(f, dict) and set(f) <= {"name", "prompt", "value_path"} and
                        isinstance(f.get("name"), str) and f["name"][:1].isalnum() for f in parsed["facets"])
                and len({f["name"] for f in parsed["facets"]}) == len(parsed["facets"])))
    facets = tmp_path / "facet_definitions.yaml"
    facets.write_text(text)
    before = store_state(store)
    out_dir = tmp_path / "curated"
    code, out, err = run_cli("curate", "--facets", str(facets), "--labeler", "score", "--label-score", "resolution", "--project", "acme",
                             "--store", str(store), "--out", str(out_dir), "--yes")
    assert_one_line_error(code, err, names=(str(facets),))
    assert store_state(store) == before
    assert not (out_dir / "dataset_rows.jsonl").exists()


@FEW
@given(span_filter=st.sampled_from([
    "1=1; DROP TABLE spans", "true) UNION SELECT * FROM read_csv('/etc/passwd') --",
    "id IN (SELECT content FROM read_text('/etc/hostname'))", "getenv('HOME') <> ''",
    "1=1); COPY spans TO 'leak.csv'; SELECT (1", "EXISTS (SELECT * FROM glob('*'))",
]))
def test_curate_runs_facet_span_filters_as_read_only_select_only(tmp_path: Path, run_cli, store: Path,
                                                                  span_filter: str) -> None:
    facets = tmp_path / "facets.yaml"
    facets.write_text(json.dumps({"facets": [{"name": "issues", "span_filter": span_filter, "value_path": "output"}]}))
    before = store_state(store)
    code, out, err = run_cli("curate", "--facets", str(facets), "--labeler", "score", "--label-score", "resolution", "--project", "acme",
                             "--store", str(store), "--out", str(tmp_path / "o"), "--yes", "--window-days", "3650")
    assert_one_line_error(code, err, names=("sql", "facet 'issues'"), only_line=False)
    assert store_state(store) == before
    assert not (tmp_path / "leak.csv").exists()


# -- label apply: missing / extra / out-of-range rows ----------------------------------------------

RUBRIC = Rubric(version="refusal-v1", text="fail when the bot should have refused", labels=["pass", "fail"])


def _dataset_rows(tmp_path: Path, n: int = 6) -> Path:
    rows = []
    for i in range(n):
        row = {"id": f"{i:032x}", "input": {"message": f"message {i}"}, "expected": None, "tags": [],
               "metadata": {"split": None, "source": {"trace_id": f"t{i}", "span_id": f"s{i}", "project_id": "p",
                                                      "created": "2026-01-01T00:00:00Z"},
                            "curation": {"strategy": "score-balanced", "bucket": "failing", "facet": None,
                                         "selection_query": "q", "seed": "flywheel-v1", "validation_fraction": 0.2}}}
        rows.append(mark_pending(row, rubric_version=RUBRIC.version))
    path = tmp_path / "dataset_rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@PROPERTY
@given(kind=st.sampled_from(["out_of_range", "unknown_id", "wrong_type", "missing_id", "duplicate", "not_a_row",
                             "bad_contract", "bad_kind", "rows_not_list", "not_json", "top_not_object"]),
       index=st.integers(0, 5), value=JSONISH, filled=st.lists(st.booleans(), min_size=6, max_size=6))
def test_label_apply_rejects_bad_rows_by_name_and_changes_nothing(
        tmp_path: Path, run_cli, kind: str, index: int, value: Any, filled: list[bool]) -> None:
    rows_path = _dataset_rows(tmp_path)
    export = tmp_path / "export.json"
    export_pending(rows_path, RUBRIC, export)
    doc = json.loads(export.read_text())
    for i, row in enumerate(doc["rows"]):
        row["label"] = ["pass", "fail"][i % 2] if filled[i] else None
    doc["labeler_model"] = "claude-code-session"
    target = doc["rows"][index]
    must_name = str(export)
    if kind == "out_of_range":
        label = value if isinstance(value, str) and value.strip().lower() not in ("pass", "fail") else "maybe"
        assume(label.strip() != "")
        target["label"] = label
        must_name = target["id"]
    elif kind == "unknown_id":
        target["id"] = "f" * 32
        must_name = "f" * 32
    elif kind == "wrong_type":
        target["label"] = value if not isinstance(value, str | type(None)) else 7
        must_name = f"rows[{index}]"
    elif kind == "missing_id":
        del target["id"]
        must_name = f"rows[{index}]"
    elif kind == "duplicate":
        other = doc["rows"][(index + 1) % 6]
        target["id"] = other["id"]
        target["label"] = other["label"] = "pass"
        must_name = other["id"]
    elif kind == "not_a_row":
        doc["rows"][index] = value if not isinstance(value, dict) else [value]
        must_name = f"rows[{index}]"
    elif kind == "bad_contract":
        doc["contract"] = "bt-flywheel-labels/v0"
    elif kind == "bad_kind":
        doc["kind"] = "labelz"
    elif kind == "rows_not_list":
        doc["rows"] = {"0": doc["rows"][0]}
    text = json.dumps(doc)
    if kind == "not_json":
        text = text[: len(text) // 2]
    elif kind == "top_not_object":
        text = json.dumps(doc["rows"])
    export.write_text(text)
    before = rows_path.read_bytes()
    code, out, err = run_cli("label", "apply", str(export), "--dataset-rows", str(rows_path))
    assert code == 2, (kind, err)
    line = assert_one_line_error(code, err, names=(str(export),), only_line=False)
    assert must_name in err, (must_name, err)
    assert all(row.startswith(("error: ", "bad row: ")) for row in err.splitlines() if row.strip()), err
    assert line
    assert rows_path.read_bytes() == before


# -- handoff validate / gate: random mutations ------------------------------------------------------

def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(_paths(item, (*prefix, i)))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def _delete(doc: Any, path: tuple[Any, ...]) -> None:
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]


REQUIRED_TOP = ["contract_version", "run_id", "started_at", "finished_at", "mode", "goal", "project", "outcome",
                "severity", "blocking", "confidence", "summary", "findings", "changes", "verification", "loops",
                "links", "artifacts", "next_steps"]


@st.composite
def mutated_handoff(draw: st.DrawFn) -> tuple[str, bool]:
    """(file text, surely_invalid): a random mutation of a valid example handoff."""
    doc = json.loads(draw(st.sampled_from(HANDOFFS)).read_text())
    kind = draw(st.sampled_from(["drop_required", "wrong_type_top", "unknown_top", "bad_enum", "truncate",
                                 "replace_anywhere", "delete_anywhere", "not_object"]))
    if kind == "drop_required":
        del doc[draw(st.sampled_from(REQUIRED_TOP))]
        return json.dumps(doc), True
    if kind == "wrong_type_top":
        key = draw(st.sampled_from(["blocking", "findings", "loops", "next_steps", "verification", "mode"]))
        doc[key] = draw(st.one_of(st.text(max_size=5), st.floats(allow_nan=False)))
        return json.dumps(doc), True
    if kind == "unknown_top":
        doc[draw(st.text(min_size=1, max_size=8).filter(lambda k: not k.startswith("x-") and k not in doc))] = 1
        return json.dumps(doc), True
    if kind == "bad_enum":
        key = draw(st.sampled_from(["outcome", "severity"]))
        doc[key] = draw(st.text(max_size=8).filter(lambda t: t not in ("healthy", "improved", "needs_work", "blocked",
                                                                          "no_convergence", "none", "low", "medium",
                                                                          "high", "critical")))
        return json.dumps(doc), True
    if kind == "truncate":
        text = json.dumps(doc, indent=1)
        return text[: draw(st.integers(0, len(text) - 2))], True
    if kind == "not_object":
        return json.dumps(draw(st.one_of(st.lists(JSONISH, max_size=2), st.integers(), st.text(max_size=5)))), True
    paths = [p for p in _paths(doc) if p]
    path = draw(st.sampled_from(paths))
    if kind == "delete_anywhere":
        _delete(doc, path)
    else:
        _set(doc, path, draw(JSONISH))
    return json.dumps(doc), False


@settings(PROPERTY, max_examples=40)
@given(case=mutated_handoff())
def test_handoff_validate_and_gate_never_crash_and_reject_invalid_files(tmp_path: Path, run_cli,
                                                                        case: tuple[str, bool]) -> None:
    text, surely_invalid = case
    path = tmp_path / "bt-flywheel-summary.json"
    path.write_text(text)
    code, out, err = run_cli("handoff", "validate", str(path))
    assert code in (0, 2), err
    if surely_invalid:
        assert code == 2
    if code == 2:
        assert_one_line_error(code, err, names=(str(path),))
    else:
        assert err == ""
    gate_code, gate_out, gate_err = run_cli("gate", str(path))
    if code == 2:
        assert_one_line_error(gate_code, gate_err, names=(str(path),))
        assert gate_out == ""
    else:
        assert gate_code in (0, 1) and gate_out.startswith("gate: ") and gate_out.count("\n") == 1
    render_code, _, render_err = run_cli("handoff", "render", str(path), "--out", str(tmp_path / "n.md"))
    if code == 2:
        assert_one_line_error(render_code, render_err, names=(str(path),))
    else:
        assert render_code == 0, render_err


def test_gate_on_a_missing_handoff_is_exit_2_naming_it(run_cli, tmp_path: Path) -> None:
    code, out, err = run_cli("gate", str(tmp_path / "nope.json"))
    assert_one_line_error(code, err, names=("nope.json",))


# -- flywheel sql: hostile queries -------------------------------------------------------------------

SOURCE = "project_logs('acme')"
BOUND = "created >= '2000-01-01'"
HOSTILE_TABLE_FUNCTIONS = [
    "read_csv('{f}')", "read_csv_auto('{f}')", "read_parquet('{f}')", "read_json('{f}')", "read_json_auto('{f}')",
    "read_text('{f}')", "read_blob('{f}')", "glob('*')", "sniff_csv('{f}')", "parquet_metadata('{f}')",
    "duckdb_settings()", "duckdb_secrets()", "duckdb_extensions()", "pragma_database_list()",
    "query('SELECT 1')", "query_table('spans')", "sqlite_scan('{f}', 't')", "iceberg_scan('{f}')",
]
HOSTILE_STATEMENTS = [
    "SELECT 1 FROM {src} WHERE {b}; DROP TABLE spans", "DROP TABLE spans", "DELETE FROM spans",
    "UPDATE spans SET id = 'x'", "INSERT INTO projects VALUES ('x', 'y', now())", "CREATE TABLE t (a INT)",
    "ALTER TABLE spans ADD COLUMN z INT", "ATTACH '{f}' AS other", "ATTACH ':memory:' AS m", "DETACH base",
    "COPY spans TO '{out}'", "COPY (SELECT * FROM spans) TO '{out}' (FORMAT csv)", "COPY spans FROM '{f}'",
    "PRAGMA database_list", "PRAGMA enable_profiling", "INSTALL httpfs", "LOAD httpfs", "FORCE INSTALL json",
    "SET enable_external_access = true", "RESET lock_configuration", "SET threads = 1",
    "CREATE MACRO leak(x) AS x", "CREATE OR REPLACE MACRO m() AS TABLE SELECT 1", "EXPORT DATABASE '{outdir}'",
    "IMPORT DATABASE '{outdir}'", "CHECKPOINT", "VACUUM", "CALL pragma_version()", "USE base",
    "SELECT * FROM spans", "SELECT * FROM projects", "SELECT * FROM information_schema.tables",
    "SELECT * FROM duckdb_tables()", "WITH x AS (SELECT 1) SELECT * FROM x", "SELECT 1 INTO t FROM {src}",
    "SELECT * FROM {src} WHERE {b} AND id IN (SELECT * FROM read_csv('{f}'))",
    "SELECT (SELECT content FROM read_text('{f}')) AS c FROM {src} WHERE {b}",
    "SELECT getenv('HOME') FROM {src} WHERE {b}", "SELECT current_setting('threads') FROM {src} WHERE {b}",
    "SELECT * FROM {src} WHERE {b} UNION ALL SELECT * FROM read_json('{f}')",
    "SELECT * FROM {src} AS a JOIN read_csv('{f}') AS b ON true WHERE {b}",
    "SELECT * FROM '{f}'", "FROM '{f}'", "SELECT * FROM \"{f}\"",
    "DESCRIBE spans", "SUMMARIZE spans", "SHOW TABLES", "EXPLAIN SELECT 1", "BEGIN TRANSACTION", "COMMIT",
    "SELECT 1; SELECT 2", ";", "",
]


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.csv"
    path.write_text("a,b\nTOPSECRET-FILE-CONTENT,2\n")
    return path


def _fill(template: str, tmp_path: Path, secret_file: Path) -> str:
    return template.format(src=SOURCE, b=BOUND, f=secret_file, out=tmp_path / "leak.csv",
                           outdir=tmp_path / "exported")


@pytest.mark.parametrize("template", HOSTILE_STATEMENTS)
def test_sql_refuses_hostile_statements(tmp_path: Path, run_cli, store: Path, secret_file: Path,
                                        template: str) -> None:
    query = _fill(template, tmp_path, secret_file)
    before = store_state(store)
    code, out, err = run_cli("sql", query, "--store", str(store), "--project", "acme", "--json")
    assert_one_line_error(code, err, names=("sql",))
    assert out == "" and "TOPSECRET" not in err
    assert store_state(store) == before
    assert not (tmp_path / "leak.csv").exists() and not (tmp_path / "exported").exists()


@PROPERTY
@given(func=st.sampled_from(HOSTILE_TABLE_FUNCTIONS),
       where=st.sampled_from(["from", "join", "subquery_in", "scalar_subquery", "exists", "union", "lateral",
                              "nested_from", "cte_like"]))
def test_sql_refuses_file_and_catalog_functions_wherever_they_hide(tmp_path: Path, run_cli, store: Path,
                                                                     secret_file: Path, func: str, where: str) -> None:
    f = func.format(f=secret_file)
    query = {
        "from": f"SELECT * FROM {f}",
        "join": f"SELECT * FROM {SOURCE} AS a JOIN {f} AS b ON true WHERE a.{BOUND}",
        "subquery_in": f"SELECT id FROM {SOURCE} WHERE {BOUND} AND id IN (SELECT * FROM {f})",
        "scalar_subquery": f"SELECT (SELECT count(*) FROM {f}) AS n FROM {SOURCE} WHERE {BOUND}",
        "exists": f"SELECT id FROM {SOURCE} WHERE {BOUND} AND EXISTS (SELECT 1 FROM {f})",
        "union": f"SELECT id FROM {SOURCE} WHERE {BOUND} UNION SELECT * FROM {f}",
        "lateral": f"SELECT * FROM {SOURCE} AS a, LATERAL (SELECT * FROM {f}) AS b WHERE a.{BOUND}",
        "nested_from": f"SELECT * FROM (SELECT * FROM (SELECT * FROM {f}) AS x) AS y",
        "cte_like": f"SELECT * FROM (SELECT * FROM {SOURCE} WHERE {BOUND}) AS a, (SELECT * FROM {f}) AS b",
    }[where]
    before = store_state(store)
    code, out, err = run_cli("sql", query, "--store", str(store), "--project", "acme")
    assert_one_line_error(code, err, names=("sql",))
    assert "TOPSECRET" not in out + err
    assert store_state(store) == before


@FEW
@given(first=st.sampled_from(["SELECT id FROM project_logs('acme') WHERE created >= '2000-01-01'"]),
       second=st.sampled_from([s for s in HOSTILE_STATEMENTS if s and s != ";"]),
       sep=st.sampled_from([";", ";\n", " ; ", ";--\n", ";/* x */"]))
def test_sql_refuses_any_second_statement(tmp_path: Path, run_cli, store: Path, secret_file: Path, first: str,
                                          second: str, sep: str) -> None:
    query = first + sep + _fill(second, tmp_path, secret_file)
    before = store_state(store)
    code, out, err = run_cli("sql", query, "--store", str(store), "--project", "acme")
    assert_one_line_error(code, err, names=("sql",))
    assert store_state(store) == before
    assert not (tmp_path / "leak.csv").exists()


@PROPERTY
@given(query=st.text(max_size=60))
def test_sql_on_arbitrary_text_is_a_clean_answer_or_a_clean_error(run_cli, store: Path, query: str) -> None:
    assume("\x00" not in query)
    before = store_state(store)
    code, out, err = run_cli("sql", query, "--store", str(store), "--project", "acme", "--force-ignore-linter")
    if code != 0:
        assert_one_line_error(code, err, names=("sql",))
    assert store_state(store) == before


def test_a_plain_select_still_works_after_all_that(run_cli, store: Path) -> None:
    code, out, err = run_cli("sql", f"SELECT count(*) AS n FROM {SOURCE} WHERE {BOUND}", "--store", str(store),
                             "--json")
    assert code == 0, err
    assert json.loads(out)["data"] == [{"n": 12}]
