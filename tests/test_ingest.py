"""`flywheel ingest`: JSONL, gzip, bt sync pull trees, idempotency, bad rows, --skip-bad."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from bt_flywheel.backends.ingest import ingest
from bt_flywheel.backends.store import Store
from bt_flywheel.backends.synth import generate_spans

STORE = ".flywheel/store.duckdb"


def _write(path: Path, rows: list[dict], *, gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _rows(n: int = 40, seed: int = 1) -> list[dict]:
    return list(generate_spans(n, seed=seed))


def _stored(project: str = "demo") -> list[dict]:
    with Store(STORE, read_only=True) as store:
        pid = store.find_project(project)
        return list(store.iter_rows("project_logs", pid)) if pid else []


def test_jsonl_ingest_is_idempotent_and_reports_counts(run_cli, tmp_path: Path) -> None:
    rows = _rows()
    src = _write(tmp_path / "spans.jsonl", rows)
    code, out, err = run_cli("ingest", str(src), "--project", "demo", "--json", "--quiet")
    assert code == 0, err
    report = json.loads(out)
    assert (report["inserted"], report["updated"], report["unchanged"], report["skipped"]) == (40, 0, 0, 0)
    code, out, _ = run_cli("ingest", str(src), "--project", "demo", "--json", "--quiet")
    assert json.loads(out)["unchanged"] == 40 and json.loads(out)["inserted"] == 0
    stored = {r["id"]: r for r in _stored()}
    assert len(stored) == 40
    original = rows[0]
    assert stored[original["id"]]["input"] == original["input"]
    assert stored[original["id"]]["scores"] == original["scores"]

    # one row changed, one with reordered keys (same content): 1 updated, 39 unchanged
    rows[0] = dict(rows[0], output={"content": "changed"})
    rows[1] = dict(reversed(list(rows[1].items())))
    _write(src, rows)
    code, out, _ = run_cli("ingest", str(src), "--project", "demo")
    assert code == 0
    assert "inserted 0, updated 1, unchanged 39, skipped 0" in out
    assert {r["id"]: r for r in _stored()}[rows[0]["id"]]["output"] == {"content": "changed"}


def test_gzip_and_directory_of_files(run_cli, tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    _write(folder / "a.jsonl.gz", _rows(10, seed=2), gz=True)
    _write(folder / "b.jsonl", _rows(15, seed=3))
    code, out, err = run_cli("ingest", str(folder), "--project", "demo", "--quiet")
    assert code == 0, err
    assert "ingested 25 rows from 2 file(s)" in out
    assert len(_stored()) == 25


def test_bad_row_names_file_and_line_and_stores_nothing(run_cli, tmp_path: Path) -> None:
    rows = _rows(5)
    src = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, json.dumps(dict(rows[0], id="x-1", scores={"Factuality": "high"})))
    lines.insert(4, "{not json")
    src.write_text("\n".join(lines) + "\n")
    code, out, err = run_cli("ingest", str(src), "--project", "demo")
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {src}:3: scores.Factuality: expected a number or null, got 'high'")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _stored() == []

    code, out, err = run_cli("ingest", str(src), "--project", "demo", "--skip-bad", "--json", "--quiet")
    assert code == 0
    report = json.loads(out)
    assert report["inserted"] == 5 and report["skipped"] == 2
    assert report["bad_rows"] == [f"{src}:3: scores.Factuality: expected a number or null, got 'high'",
                                  f"{src}:5: row: invalid JSON (Expecting property name enclosed in double quotes"
                                  " at column 2)"]
    assert len(_stored()) == 5


def test_bad_row_in_second_run_keeps_earlier_data(run_cli, tmp_path: Path) -> None:
    good = _write(tmp_path / "good.jsonl", _rows(8))
    assert run_cli("ingest", str(good), "--project", "demo", "--quiet")[0] == 0
    before = hashlib.sha256(json.dumps(_stored(), sort_keys=True).encode()).hexdigest()
    bad = _write(tmp_path / "bad.jsonl", [dict(_rows(8, seed=9)[0]), {"id": 7}])
    code, _, err = run_cli("ingest", str(bad), "--project", "demo")
    assert code == 2 and f"{bad}:2: id: missing or not a non-empty string" in err
    assert hashlib.sha256(json.dumps(_stored(), sort_keys=True).encode()).hexdigest() == before


def _sync_tree(root: Path, object_type: str, object_id: str, rows: list[dict]) -> Path:
    spec = {"schema_version": 1, "object_ref": f"{object_type}:{object_id}", "object_type": object_type,
            "object_name": object_id, "direction": "pull", "scope": "spans", "filter": None, "limit": None,
            "page_size": 1000}
    spec_hash = hashlib.sha256(json.dumps(spec, separators=(",", ":")).encode()).hexdigest()
    base = root / "bt-sync" / f"{object_type}_{object_id}" / spec_hash[:12]
    (base / "data").mkdir(parents=True)
    (base / "spec.json").write_text(json.dumps(spec))
    (base / "state.json").write_text(json.dumps({"schema_version": 1, "status": "completed"}))
    (base / "manifest.json").write_text(json.dumps({"schema_version": 1, "spec_hash": spec_hash, "spec": spec,
                                                    "status": "completed"}))
    half = len(rows) // 2
    for i, chunk in enumerate((rows[:half], rows[half:]), start=1):
        _write(base / "data" / f"part-{i:06d}.jsonl",
               [dict(sorted(r.items()), _xact_id=str(1000 + n), project_id=object_id) for n, r in enumerate(chunk)])
    return root / "bt-sync"


def test_bt_sync_pull_tree_project_logs_and_experiment(run_cli, tmp_path: Path) -> None:
    project_id = "0b6f6a43-2c43-4e55-9d2e-5f2a7f3c9e11"
    experiment_id = "7d1e3b9a-1111-4c2d-8e8e-0123456789ab"
    tree = _sync_tree(tmp_path, "project_logs", project_id, _rows(12))
    _sync_tree(tmp_path, "experiment", experiment_id, _rows(6, seed=4))
    code, out, err = run_cli("ingest", str(tree), "--project", "support-bot", "--json", "--quiet")
    assert code == 0, err
    report = json.loads(out)
    assert report["inserted"] == 18 and report["files"] == 4
    with Store(STORE, read_only=True) as store:
        # the project keeps its Braintrust id, so project_logs('<uuid>') and ('support-bot') both resolve
        assert store.find_project("support-bot") == project_id
        assert store.count_rows("project_logs", project_id) == 12
        assert store.count_rows("experiment", experiment_id) == 6
        row = next(store.iter_rows("project_logs", project_id))
        assert row["project_id"] == project_id  # unknown keys are kept
    code, out, _ = run_cli("sql", f"SELECT count(*) AS n FROM project_logs('{project_id}') "
                           "WHERE created >= NOW() - INTERVAL 30 day", "--jsonl")
    assert json.loads(out) == {"n": 12}


def test_missing_project_and_path(run_cli, tmp_path: Path) -> None:
    src = _write(tmp_path / "s.jsonl", _rows(2))
    code, _, err = run_cli("ingest", str(src))
    assert code == 2 and "--project" in err
    code, _, err = run_cli("ingest", str(tmp_path / "nope.jsonl"), "--project", "p")
    assert code == 2 and "nope.jsonl: file or directory not found" in err


def test_is_merge_rows_merge_into_the_stored_row(tmp_path: Path) -> None:
    rows = _rows(3)
    src = _write(tmp_path / "a.jsonl", rows)
    with Store(STORE) as store:
        ingest(store, src, project="demo")
        patch = {"id": rows[0]["id"], "_is_merge": True, "metadata": {"reviewed": True}}
        result = ingest(store, _write(tmp_path / "b.jsonl", [patch]), project="demo")
        assert result.updated == 1
        merged = next(store.iter_rows("project_logs", store.find_project("demo"), where="id = ?",
                                      params=[rows[0]["id"]]))
    assert merged["metadata"] == {**rows[0]["metadata"], "reviewed": True}
    assert merged["input"] == rows[0]["input"]


@pytest.mark.parametrize("bad,message", [
    ({"id": ""}, "id: missing or not a non-empty string"),
    ({"id": "a", "created": "yesterday"}, "created: not an ISO 8601 timestamp: 'yesterday'"),
    ({"id": "a", "is_root": "yes"}, "is_root: expected true/false, got 'yes'"),
    ({"id": "a", "span_id": 3}, "span_id: expected a string, got int"),
    ([1, 2], "expected a JSON object, got list"),
])
def test_store_validation_messages(tmp_path: Path, bad, message) -> None:
    src = _write(tmp_path / "x.jsonl", [bad])
    with Store(STORE) as store, pytest.raises(Exception) as info:
        ingest(store, src, project="demo")
    assert str(info.value) == f"{src}:1: {message}"


def test_experiment_name_is_per_project(tmp_path: Path) -> None:
    """The same --experiment name in two projects makes two experiments, not one shared one."""
    with Store(STORE) as store:
        ingest(store, _write(tmp_path / "a.jsonl", _rows(3, seed=5)), project="A", experiment="exp")
        ingest(store, _write(tmp_path / "b.jsonl", _rows(4, seed=6)), project="B", experiment="exp")
        counts = {store.project_name(o["project_id"]): store.count_rows("experiment", o["id"])
                  for o in store.list_objects("experiment")}
    assert counts == {"A": 3, "B": 4}
