"""Concurrent writers to one local store (issue 8): two `flywheel ingest` processes started together
either both succeed (one after the other) or the loser exits 3 with one line saying the store is in
use; either way the store is intact afterwards and holds exactly the rows of the runs that succeeded.
A reader racing a writer gets rows or the same clear "in use" line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
from fakes.checks import assert_one_line_error

from bt_flywheel.backends.synth import write_jsonl


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINTRUST_", "OPENAI_", "FLYWHEEL_"))}
    env.pop("CI", None)
    return env


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bt_flywheel", *args], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ids(path: Path) -> set[str]:
    return {json.loads(line)["id"] for line in path.read_text().splitlines()}


def _check(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=180)
    if proc.returncode != 0:
        line = assert_one_line_error(proc.returncode, err, expect_code=3, names=("store.duckdb", "in use"))
        assert "another flywheel process" in line
    return proc.returncode, out, err


def test_two_ingests_at_once_serialize_or_refuse_cleanly_and_the_store_stays_intact(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", 8000, seed=1)
    write_jsonl(tmp_path / "b.jsonl", 8000, seed=2)
    store = tmp_path / "store.duckdb"
    outcomes = []
    for _ in range(2):   # two rounds: the second races against a store that already exists
        procs = [_start(tmp_path, "ingest", name, "--project", "acme", "--store", str(store), "--quiet")
                 for name in ("a.jsonl", "b.jsonl")]
        outcomes.append([_check(p)[0] for p in procs])
    assert any(code == 0 for round_ in outcomes for code in round_)
    # finish whatever lost, then the store must hold exactly both files, each row once
    for name in ("a.jsonl", "b.jsonl"):
        done = subprocess.run([sys.executable, "-m", "bt_flywheel", "ingest", name, "--project", "acme", "--store",
                               str(store), "--json"], cwd=tmp_path, env=_env(), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    con = duckdb.connect(str(store), read_only=True)
    try:
        total, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM spans").fetchone()
        stored = {r[0] for r in con.execute("SELECT id FROM spans").fetchall()}
    finally:
        con.close()
    assert total == distinct == len(_ids(tmp_path / "a.jsonl") | _ids(tmp_path / "b.jsonl"))
    assert stored == _ids(tmp_path / "a.jsonl") | _ids(tmp_path / "b.jsonl")


def test_a_reader_racing_a_writer_gets_rows_or_a_clear_in_use_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", 300, seed=1)
    write_jsonl(tmp_path / "big.jsonl", 15000, seed=3)
    store = tmp_path / "store.duckdb"
    first = subprocess.run([sys.executable, "-m", "bt_flywheel", "ingest", "a.jsonl", "--project", "acme", "--store",
                            str(store)], cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    writer = _start(tmp_path, "ingest", "big.jsonl", "--project", "acme", "--store", str(store), "--quiet")
    reader = _start(tmp_path, "sql", "SELECT count(*) AS n FROM project_logs('acme')", "--force-ignore-linter",
                    "--store", str(store), "--json")
    code, out, err = _check(reader)
    if code == 0:
        assert json.loads(out)["data"][0]["n"] in (300, 15300)
    assert _check(writer)[0] in (0, 3)
