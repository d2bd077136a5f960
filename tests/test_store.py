"""Store.upsert_rows keeps its contract while loading set-wise: idempotent by id, unchanged rows
untouched (same _xact_id), invalid input rolls the whole call back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bt_flywheel.backends.sql import run_query
from bt_flywheel.backends.store import Store
from bt_flywheel.backends.synth import generate_spans
from bt_flywheel.core.errors import InputError, StoreBusy


def _xacts(store: Store, object_id: str) -> dict[str, int]:
    return {r["id"]: r["_xact_id"] for r in store.iter_rows("experiment", object_id)}


def test_upsert_is_idempotent_and_leaves_unchanged_rows_alone(tmp_path: Path) -> None:
    rows = list(generate_spans(300, seed=2))
    with Store(tmp_path / "s.duckdb") as store:
        pid = store.ensure_project("p")
        eid = store.create_object("experiment", "exp", pid, metadata={"trials": 1})
        first = store.upsert_rows("experiment", eid, rows)
        assert first.as_dict() == {"inserted": 300, "updated": 0, "unchanged": 0}
        before = _xacts(store, eid)
        rows[5] = dict(rows[5], tags=["edited"])
        second = store.upsert_rows("experiment", eid, rows + [dict(rows[7])])  # a duplicate id in one call
        assert second.as_dict() == {"inserted": 0, "updated": 1, "unchanged": 300}
        after = _xacts(store, eid)
        assert {k for k in after if after[k] != before[k]} == {rows[5]["id"]}
        assert store.count_rows("experiment", eid) == 300
        stored = {r["id"]: r for r in store.iter_rows("experiment", eid)}
        assert stored[rows[5]["id"]]["tags"] == ["edited"]
        assert stored[rows[0]["id"]]["metadata"] == rows[0]["metadata"]


def test_incoming_xact_id_is_kept_and_bad_row_rolls_back(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        pid = store.ensure_project("p")
        store.upsert_rows("project_logs", pid, [{"id": "a", "_xact_id": "1000192656880881099", "input": 1}])
        assert next(store.iter_rows("project_logs", pid))["_xact_id"] == 1000192656880881099
        with pytest.raises(ValueError, match="scores.x: expected a number or null"):
            store.upsert_rows("project_logs", pid, [{"id": "b"}, {"id": "c", "scores": {"x": "bad"}}])
        assert [r["id"] for r in store.iter_rows("project_logs", pid)] == ["a"]


def test_run_query_accepts_an_open_store_and_names_the_conflict(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        pid = store.ensure_project("p")
        store.upsert_rows("project_logs", pid, list(generate_spans(20, seed=1)))
        rows = run_query(store, "SELECT count(*) AS n FROM project_logs('p') WHERE created > NOW() - INTERVAL 40 day")
        assert rows.rows == [{"n": 20}]
        with pytest.raises(StoreBusy, match="already open in this process"):
            run_query(path, "SELECT id FROM project_logs('p') WHERE id = 'x'")
    assert run_query(path, "SELECT id FROM project_logs('p') WHERE id = 'x'").rows == []


def test_a_query_the_parser_or_linter_refuses_never_opens_the_store(tmp_path: Path) -> None:
    """A bad query is reported as bad even while another writer holds the store (so a CI job that
    retries on "store busy" does not retry a query that can never run), and costs no open."""
    path = tmp_path / "s.duckdb"
    with Store(path) as writer:
        writer.ensure_project("p")
        for bad, message in (("DROP TABLE spans", "sql: "), ("SELECT id FROM project_logs('p')", "lint"),
                             ("SELEC id FROM project_logs('p')", "sql: ")):
            with pytest.raises(InputError, match=message):
                run_query(path, bad)
        with pytest.raises(StoreBusy):
            run_query(path, "SELECT id FROM project_logs('p') WHERE id = 'x'")


_DAY_BUCKETS = """
import sys
from bt_flywheel.backends.sql import run_query
from bt_flywheel.backends.store import Store
path = sys.argv[1]
query = ("SELECT day(created) AS d, count(*) AS n FROM project_logs('p') "
         "WHERE created > '2026-01-01T00:00:00Z' GROUP BY 1 ORDER BY 1")
with Store(path, read_only=True, sandboxed=True) as first, Store(path, read_only=True, sandboxed=True) as second:
    print(run_query(first, query).rows, run_query(second, query).rows, run_query(path, query).rows)
"""


def test_every_sandboxed_open_buckets_days_in_utc_whatever_the_machine_zone(tmp_path: Path) -> None:
    """Queries bucket days in UTC, as Braintrust does, on a machine set to another zone: on the first
    sandboxed open of a store, on a second one sharing DuckDB's instance (its settings locked by
    the first), and on a query's own open."""
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        pid = store.ensure_project("p")
        store.upsert_rows("project_logs", pid, [{"id": "late", "created": "2026-03-01T02:00:00Z"},
                                                {"id": "early", "created": "2026-03-01T22:00:00Z"}])
    env = {**os.environ, "TZ": "America/New_York", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", _DAY_BUCKETS, str(path)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    utc = [{"d": "2026-03-01T00:00:00Z", "n": 2}]
    assert done.stdout.strip() == " ".join([str(utc)] * 3)


def test_stage_folders_of_a_killed_writer_are_removed_on_next_open(tmp_path) -> None:
    """A SIGKILLed bulk load leaves its staging folder; the next writer of the same store file
    (which holds DuckDB's lock) removes it, and never touches another store's folders."""
    from bt_flywheel.backends.store import Store

    store_path = tmp_path / "store.duckdb"
    Store(store_path).close()
    stale = tmp_path / ".store.duckdb.stage-abc123"
    stale.mkdir()
    (stale / "stage.jsonl").write_text("{}\n")
    other = tmp_path / ".other.duckdb.stage-xyz"
    other.mkdir()
    with Store(store_path, read_only=True):
        assert stale.exists()  # readers never clean up
    with Store(store_path) as store:
        project = store.ensure_project("p")
        store.upsert_rows("project_logs", project, [{"id": "a", "created": "2026-11-01T00:00:00Z"}])
    assert not stale.exists()
    assert other.exists()
    assert not list(tmp_path.glob(".store.duckdb.stage-*"))  # the load's own folder is gone too
