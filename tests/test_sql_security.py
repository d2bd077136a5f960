"""Hostile SQL is refused with a one-line error (exit 2) and the store is unchanged; and even SQL that
got past the parser cannot touch files, because DuckDB runs with external access disabled."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bt_flywheel.backends import sql as sql_module
from bt_flywheel.backends.local import LocalBackend
from bt_flywheel.backends.sql import run_query
from bt_flywheel.backends.sql_translate import Translation
from bt_flywheel.backends.store import Store
from bt_flywheel.backends.synth import generate_spans
from bt_flywheel.core.errors import InputError

HOSTILE = [
    "SELECT 1 FROM project_logs('demo') WHERE id = 'x'; DROP TABLE spans",
    "DROP TABLE spans",
    "CREATE TABLE x AS SELECT 1",
    "INSERT INTO spans SELECT * FROM spans",
    "DELETE FROM spans",
    "UPDATE spans SET id = 'x'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_parquet('x.parquet')",
    "SELECT * FROM read_json_auto('/etc/hosts')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM glob('*')",
    "ATTACH 'other.duckdb' AS other",
    "COPY spans TO 'out.csv'",
    "COPY (SELECT 1) TO 'out.csv'",
    "EXPORT DATABASE 'dump'",
    "PRAGMA database_list",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "SELECT * FROM spans",
    "SELECT * FROM projects",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM duckdb_settings()",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "SELECT id FROM project_logs('demo') WHERE id = 'x' UNION SELECT * FROM read_csv('/etc/passwd')",
    "SELECT (SELECT count(*) FROM read_text('/etc/passwd')) FROM project_logs('demo') WHERE id = 'x'",
    "SELECT getenv('HOME') FROM project_logs('demo') WHERE id = 'x'",
    "SELECT current_setting('enable_external_access') FROM project_logs('demo') WHERE id = 'x'",
    "SELECT * FROM project_logs('demo') WHERE id IN (SELECT column0 FROM read_csv('/etc/passwd'))",
    "CALL pragma_version()",
    "SELECT 1 INTO t FROM project_logs('demo') WHERE id = 'x'",
    "",
    "   ;  ",
]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, run_cli_once) -> Path:
    """A folder whose default store holds 30 spans of project 'demo', ingested once for this module."""
    folder = tmp_path_factory.mktemp("ingested")
    (folder / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in generate_spans(30, seed=5)))
    assert run_cli_once("ingest", "s.jsonl", "--project", "demo", "--quiet", cwd=folder)[0] == 0
    return folder


@pytest.fixture
def store(ingested: Path, tmp_path: Path) -> Path:
    """This test's own copy of the ingested store, at the default place in its working folder."""
    shutil.copytree(ingested / ".flywheel", tmp_path / ".flywheel")
    return tmp_path / ".flywheel" / "store.duckdb"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_sql_is_refused_and_store_unchanged(run_cli, store: Path, query: str) -> None:
    before = _digest(store)
    code, out, err = run_cli("sql", query)
    assert code == 2, (query, out, err)
    assert out == ""
    assert err.startswith("error: sql: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert _digest(store) == before
    assert not Path("out.csv").exists() and not Path("dump").exists() and not Path("other.duckdb").exists()


@pytest.mark.parametrize("opened", ["per query", "sandboxed store", "backend reading"])
def test_duckdb_sandbox_blocks_files_even_if_the_parser_missed_it(store: Path, monkeypatch, opened: str) -> None:
    """Defense in depth: feed DuckDB file-reading SQL directly; the read-only, external-access-disabled
    connection refuses it, whether the query opens its own connection or runs on one a command holds
    open for many queries (`Store(sandboxed=True)`, `LocalBackend.reading()`)."""
    with contextlib.ExitStack() as stack:
        target: Any = store
        if opened == "sandboxed store":
            target = stack.enter_context(Store(store, read_only=True, sandboxed=True))
        if opened == "backend reading":
            backend = LocalBackend(store)
            stack.enter_context(backend.reading())
        for evil in ("SELECT * FROM read_csv('/etc/passwd')", "COPY (SELECT 1) TO 'leak.csv'",
                     "ATTACH 'x.duckdb' AS x", "SET enable_external_access = true", "RESET lock_configuration",
                     "SET TimeZone = 'America/New_York'", "INSTALL httpfs"):
            monkeypatch.setattr(sql_module, "translate", lambda *a, _evil=evil, **k: Translation(sql=_evil))
            with pytest.raises(InputError):
                if opened == "backend reading":
                    backend.query("SELECT 1")
                else:
                    run_query(target, "SELECT 1")
    assert not Path("leak.csv").exists() and not Path("x.duckdb").exists()


def test_the_linter_override_variable_is_read_when_the_command_runs(run_cli, store: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """BRAINTRUST_SQL_FORCE_IGNORE_LINTER=1 does what --force-ignore-linter does. The CLI builds its
    parser once per process, so the variable is read when `sql` runs, not when the parser is built."""
    query = "SELECT count(*) AS n FROM project_logs('demo')"
    code, out, err = run_cli("sql", query, "--json")
    assert code == 2 and out == "" and "lint" in err
    monkeypatch.setenv("BRAINTRUST_SQL_FORCE_IGNORE_LINTER", "1")
    code, out, err = run_cli("sql", query, "--json")
    assert code == 0, err
    assert json.loads(out)["data"] == [{"n": 30}]
