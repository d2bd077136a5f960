"""A handful of the bad inputs of tests/test_reliability.py through a real `python -m bt_flywheel`
subprocess: there, an uncaught exception would print a traceback to stderr. Each must exit non-zero
with exactly one `error:` line naming the file/field/row, and leave the store unchanged."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.checks import assert_one_line_error, store_state

REPO_ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINTRUST_", "OPENAI_", "FLYWHEEL_"))}
    env.pop("CI", None)
    return env


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad inputs and a store holding the good rows (ingested by a real process), made once."""
    tmp_path = tmp_path_factory.mktemp("prepared")
    rows = [{"id": f"r{i}", "is_root": True, "created": "2026-01-02T00:00:00Z", "input": {"q": i},
             "scores": {"resolution": i % 2}} for i in range(5)]
    (tmp_path / "good.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "bad_type.jsonl").write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[1], "id": 7}) + "\n")
    (tmp_path / "bad_time.jsonl").write_text(json.dumps({**rows[2], "id": "z", "created": 1e300}) + "\n")
    whole = gzip.compress((tmp_path / "good.jsonl").read_bytes() * 50)
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "facets.yaml").write_text("facets:\n  - name: issues\n    value_path: [output\n")
    (tmp_path / "handoff.json").write_text('{"contract_version": "bt-flywheel-handoff/v1", "outcome": ')
    (tmp_path / "labels.json").write_text(json.dumps({"contract": "bt-flywheel-labels/v1", "kind": "labels",
                                                      "labels": [{"id": "nope", "label": "maybe"}]}))
    (tmp_path / "dataset_rows.jsonl").write_text(json.dumps({"id": "a" * 32, "metadata": {}}) + "\n")
    (tmp_path / "rubric.yaml").write_text("version: r1\ninstructions: judge\nlabels: [pass, fail]\n")
    done = subprocess.run([sys.executable, "-m", "bt_flywheel", "ingest", "good.jsonl", "--project", "acme"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return tmp_path


@pytest.fixture
def workdir(prepared: Path, tmp_path: Path) -> Path:
    """This test's own copy of `prepared`."""
    return Path(shutil.copytree(prepared, tmp_path / "work"))


CASES = [
    (["ingest", "bad_type.jsonl", "--project", "acme"], 2, ("bad_type.jsonl:2:", "id")),
    (["ingest", "bad_time.jsonl", "--project", "acme"], 2, ("bad_time.jsonl:1:", "created")),
    (["ingest", "cut.jsonl.gz", "--project", "acme"], 2, ("cut.jsonl.gz",)),
    (["ingest", "missing.jsonl", "--project", "acme"], 2, ("missing.jsonl",)),
    (["curate", "--facets", "facets.yaml", "--labeler", "score", "--label-score", "resolution", "--project", "acme",
      "--out", "o", "--yes"], 2, ("facets.yaml", "YAML")),
    (["label", "apply", "labels.json", "--dataset-rows", "dataset_rows.jsonl", "--rubric", "rubric.yaml"], 2,
     ("labels.json", "bad row")),
    (["handoff", "validate", "handoff.json"], 2, ("handoff.json", "invalid JSON")),
    (["gate", "handoff.json"], 2, ("handoff.json",)),
    (["sql", "COPY spans TO 'leak.csv'"], 2, ("sql", "COPY")),
    (["sql", "SELECT * FROM project_logs('acme') WHERE created > '2000-01-01' AND id IN "
             "(SELECT * FROM read_csv('good.jsonl'))"], 2, ("sql", "not allowed")),
    (["sql", "SELECT 1 FROM project_logs('acme') WHERE created > '2000-01-01'; DROP TABLE spans"], 2, ("sql",)),
    (["sql", "SELECT 1 FROM project_logs('nobody') WHERE created > '2000-01-01'"], 2, ("nobody",)),
    (["sql", "SELECT * FROM project_logs('acme')"], 2, ("lint",)),
]


@pytest.mark.parametrize(("argv", "code", "names"), CASES, ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(CASES)])
def test_bad_input_through_a_real_process_has_no_traceback(workdir: Path, argv: list[str], code: int,
                                                             names: tuple[str, ...]) -> None:
    store = workdir / ".flywheel" / "store.duckdb"
    before = store_state(store)
    done = subprocess.run([sys.executable, "-m", "bt_flywheel", *argv], cwd=workdir, env=_env(),
                          capture_output=True, text=True, timeout=120)
    multiline_ok = argv[:2] == ["label", "apply"]            # apply also names each bad row on its own line
    assert_one_line_error(done.returncode, done.stderr, expect_code=code, names=names, only_line=not multiline_ok)
    if multiline_ok:
        assert "bad row: labels.json: labels[0] (id nope)" in done.stderr
    assert store_state(store) == before
    assert not (workdir / "leak.csv").exists()
