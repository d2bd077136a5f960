"""The `facets` and `classifications` columns Braintrust's Topics puts on log rows: stored from
input rows, NULL by default, readable with dotted paths and 0-based subscripts, and added to
stores made before they existed (a read-only open of such a store reads them as NULL)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from bt_flywheel.backends.ingest import ingest
from bt_flywheel.backends.sql import run_query
from bt_flywheel.backends.store import Store

BOUND = "created >= '2020-01-01'"
ROWS = [
    {"id": "a", "created": "2026-01-01T00:00:00Z", "input": "cancel my plan",
     "facets": {"Task": "The user wants to cancel a subscription"},
     "classifications": {"Task": [{"id": "c1", "label": "Billing", "score": 0.91},
                                  {"id": "c2", "label": "Account", "score": 0.4}]}},
    {"id": "b", "created": "2026-01-02T00:00:00Z", "input": "where is my order",
     "facets": {"Task": "Order tracking"},
     "classifications": {"Task": [{"id": "c3", "label": "Shipping", "score": 0.8}]}},
    {"id": "c", "created": "2026-01-03T00:00:00Z", "input": "hello"},
]


def _store(tmp_path: Path) -> Path:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    path = tmp_path / "store.duckdb"
    with Store(path) as store:
        ingest(store, source, project="p")
    return path


def test_ingest_keeps_topics_columns_and_rows_round_trip(tmp_path: Path) -> None:
    path = _store(tmp_path)
    with Store(path, read_only=True) as store:
        rows = {r["id"]: r for r in store.iter_rows("project_logs", store.find_project("p"))}
    assert rows["a"]["facets"] == ROWS[0]["facets"]
    assert rows["a"]["classifications"] == ROWS[0]["classifications"]
    assert "facets" not in rows["c"] and "classifications" not in rows["c"]   # NULL: left out, not {}


def test_dotted_paths_and_subscripts_read_the_topics_columns(tmp_path: Path) -> None:
    path = _store(tmp_path)
    data = run_query(path, "SELECT id, facets.Task AS task, classifications.Task[0].label AS label, "
                           "classifications.Task[1].score AS second FROM project_logs('p') "
                           f"WHERE {BOUND} ORDER BY id").rows
    assert data == [
        {"id": "a", "task": "The user wants to cancel a subscription", "label": "Billing", "second": 0.4},
        {"id": "b", "task": "Order tracking", "label": "Shipping", "second": None},
        {"id": "c", "task": None, "label": None, "second": None},
    ]
    billing = run_query(path, "SELECT id FROM project_logs('p') WHERE classifications.Task[0].label = 'Billing' "
                              f"AND {BOUND}").rows
    assert billing == [{"id": "a"}]
    grouped = run_query(path, "SELECT classifications.Task[0].label AS label, count(*) AS n FROM project_logs('p') "
                              f"WHERE {BOUND} AND facets.Task IS NOT NULL GROUP BY 1 ORDER BY label").rows
    assert grouped == [{"label": "Billing", "n": 1}, {"label": "Shipping", "n": 1}]


def test_a_store_made_before_the_columns_existed_reads_them_as_null_then_migrates(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with Store(path) as store:
        store.upsert_rows("project_logs", store.ensure_project("p"), [ROWS[2]])
        store.con.execute("ALTER TABLE spans DROP COLUMN facets")
        store.con.execute("ALTER TABLE spans DROP COLUMN classifications")
    query = f"SELECT id, facets.Task AS task, classifications FROM project_logs('p') WHERE {BOUND}"
    assert run_query(path, query).rows == [{"id": "c", "task": None, "classifications": None}]
    with Store(path) as store:   # a writable open migrates
        store.upsert_rows("project_logs", store.find_project("p"), [ROWS[0]])
    con = duckdb.connect(str(path), read_only=True)
    columns = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                         "WHERE table_name = 'spans'").fetchall()}
    con.close()
    assert {"facets", "classifications"} <= columns
    assert run_query(path, query + " ORDER BY id").rows[0]["task"] == "The user wants to cancel a subscription"
