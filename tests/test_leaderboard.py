"""The lazy-judge leaderboard: mean ± CI per cell, ranks tied where Holm-corrected paired tests
cannot separate cells. The constructed case has three cells: A clearly ahead, B and C drawn
from the same distribution (statistically tied)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as st

from bt_flywheel.backends.store import Store
from bt_flywheel.core.errors import InputError
from bt_flywheel.report.leaderboard import build_leaderboard, leaderboard_html

N_ROWS, TRIALS = 60, 3


def three_cells(seed: int = 7) -> dict[str, dict[str, list[float]]]:
    """cells[label][row_id] = trial scores. A = row difficulty + 0.25; B, C = difficulty + noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0.2, 0.6, N_ROWS)
    cells: dict[str, dict[str, list[float]]] = {}
    for label, shift in (("gpt-b · v1", 0.0), ("gpt-a · v3", 0.25), ("gpt-c · v2", 0.0)):
        cells[label] = {
            f"row-{i:03d}": [float(np.clip(difficulty[i] + shift + rng.normal(0, 0.08), 0, 1)) for _ in range(TRIALS)]
            for i in range(N_ROWS)
        }
    return cells


def test_ranks_one_cell_ahead_two_tied():
    cells = three_cells()
    board = build_leaderboard(cells, score="helpfulness", by=["metadata.model", "metadata.prompt_version"])
    ranks = {c.label: c.to_dict()["rank_label"] for c in board.cells}
    assert ranks == {"gpt-a · v3": "1", "gpt-b · v1": "=2", "gpt-c · v2": "=2"}
    assert [c.label for c in board.cells][0] == "gpt-a · v3"
    by_pair = {(p.a, p.b): p for p in board.comparisons}
    tied = by_pair[("gpt-b · v1", "gpt-c · v2")]
    assert not tied.significant and tied.p_holm >= 0.05
    assert by_pair[("gpt-a · v3", "gpt-b · v1")].significant
    assert by_pair[("gpt-a · v3", "gpt-c · v2")].significant
    top = board.cells[0]
    assert top.better_than == ["gpt-b · v1", "gpt-c · v2"] and top.tied_with == []
    assert board.cells[1].tied_with == [board.cells[2].label]


def test_cell_mean_ci_and_pair_p_agree_with_scipy():
    """Reference: scipy.stats.ttest_1samp / ttest_rel on the per-row trial means; tolerance 1e-9
    (same formula, floating-point only)."""
    cells = three_cells()
    board = build_leaderboard(cells, score="s")
    means = {label: np.array([np.mean(v) for _, v in sorted(rows.items())]) for label, rows in cells.items()}
    for cell in board.cells:
        ref = st.ttest_1samp(means[cell.label], 0.0).confidence_interval(0.95)
        assert cell.mean == pytest.approx(means[cell.label].mean(), abs=1e-9)
        assert (cell.ci_low, cell.ci_high) == pytest.approx((ref.low, ref.high), abs=1e-9)
        assert cell.n == N_ROWS and cell.trials == N_ROWS * TRIALS
    raw = []
    for pc in board.comparisons:
        ref = st.ttest_rel(means[pc.a], means[pc.b])
        assert pc.p == pytest.approx(ref.pvalue, rel=1e-9)
        raw.append(ref.pvalue)
    # Holm by hand for three p-values
    order = np.argsort(raw)
    adj = np.maximum.accumulate([(3 - k) * raw[i] for k, i in enumerate(order)])
    expected = dict(zip(order, np.minimum(adj, 1), strict=True))
    assert [pc.p_holm for pc in board.comparisons] == pytest.approx([expected[i] for i in range(3)], rel=1e-9)


def test_unpaired_rows_are_left_out_of_pair_tests():
    cells = three_cells()
    # C only scored half the rows: its comparisons use the 30 shared rows
    cells["gpt-c · v2"] = dict(list(sorted(cells["gpt-c · v2"].items()))[:30])
    board = build_leaderboard(cells, score="s")
    pairs = {(p.a, p.b): p.n for p in board.comparisons}
    assert pairs[("gpt-a · v3", "gpt-c · v2")] == 30 and pairs[("gpt-a · v3", "gpt-b · v1")] == N_ROWS


def test_no_cells_is_a_clear_error():
    with pytest.raises(InputError, match="no rows carry this score"):
        build_leaderboard({}, score="s")


def _store_experiment(store: Store, project_id: str, name: str, rows: dict[str, list[float]], *, model: str,
                      prompt: str | None, score: str = "helpfulness") -> None:
    """An experiment in DESIGN.md §4's shape (root rows only; the leaderboard reads nothing else).
    `model` goes into the experiment's params; `prompt` (if given) onto each root row's metadata."""
    object_id = store.create_object("experiment", name, project_id,
                                    metadata={"params": {"model": model}, "trials": TRIALS})
    out = []
    for row_id, trials in rows.items():
        for k, value in enumerate(trials):
            meta = {"trial": k, "dataset_row_id": row_id, "split": "validation"}
            if prompt:
                meta["prompt_version"] = prompt
            out.append({"id": f"{name}-{row_id}-{k}", "span_id": f"{name}-{row_id}-{k}",
                        "root_span_id": f"{name}-{row_id}-{k}", "is_root": True,
                        "created": "2026-01-01T00:00:00Z", "input": {"q": row_id}, "output": "answer",
                        "metadata": meta, "scores": {score: value, "format_ok": 1.0},
                        "span_attributes": {"name": "eval", "type": "eval"}})
    store.upsert_rows("experiment", object_id, out)


@pytest.fixture
def lazy_judge_store(tmp_path):
    cells = three_cells()
    with Store(tmp_path / ".flywheel" / "store.duckdb") as store:
        pid = store.ensure_project("tips")
        for label, rows in cells.items():
            model, prompt = label.split(" · ")
            _store_experiment(store, pid, f"bench-{model}-{prompt}", rows, model=model, prompt=prompt)
    return cells


def test_cli_leaderboard_json_by_model_and_prompt(run_cli, lazy_judge_store):
    code, out, err = run_cli("leaderboard", "bench-gpt-a-v3", "bench-gpt-b-v1", "bench-gpt-c-v2",
                             "--by", "metadata.model,metadata.prompt_version", "--score", "helpfulness", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["score"] == "helpfulness" and doc["correction"] == "holm"
    ranked = [(c["label"], c["rank_label"]) for c in doc["cells"]]
    assert ranked[0] == ("gpt-a · v3", "1")
    assert sorted(ranked[1:]) == [("gpt-b · v1", "=2"), ("gpt-c · v2", "=2")]
    first = doc["cells"][0]
    assert first["cell"] == {"metadata.model": "gpt-a", "metadata.prompt_version": "v3"}
    assert first["experiments"] == ["bench-gpt-a-v3"]
    assert first["ci"][0] < first["mean"] < first["ci"][1]


def test_cli_leaderboard_table(run_cli, lazy_judge_store):
    code, out, err = run_cli("leaderboard", "bench-gpt-a-v3", "bench-gpt-b-v1", "bench-gpt-c-v2",
                             "--by", "metadata.model", "--score", "helpfulness")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert lines[0].split("|")[1].strip() == "rank"
    assert lines[1].split("|")[1].strip() == "1" and "gpt-a" in lines[1]
    assert all(line.split("|")[1].strip() == "=2" for line in lines[2:])


def test_cli_leaderboard_needs_a_score_when_several(run_cli, lazy_judge_store):
    code, out, err = run_cli("leaderboard", "bench-gpt-a-v3", "bench-gpt-b-v1")
    assert code == 2 and out == ""
    assert err.strip() == "error: --score: the experiments carry 2 scores (format_ok, helpfulness); name one"


def test_cli_leaderboard_unknown_experiment(run_cli, lazy_judge_store):
    code, _, err = run_cli("leaderboard", "nope", "--score", "helpfulness")
    assert code == 2 and err.startswith("error: experiment 'nope': not found in the local store .flywheel/store.duckdb")


def test_leaderboard_section_html_escapes_cell_labels():
    cells = three_cells()
    cells["<script>alert(1)</script>"] = cells.pop("gpt-c · v2")
    html = leaderboard_html(build_leaderboard(cells, score="s", by=["metadata.model"]).to_dict())
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert ">=2<" in html and ">1<" in html


def test_store_rows_are_paired_by_origin_id_like_compare(tmp_path):
    """Root rows without metadata.dataset_row_id (a plain `braintrust eval` run, ingested) are
    keyed by origin.id, the dataset record, as `flywheel compare` keys them: the cells pair."""
    from bt_flywheel.report.leaderboard import leaderboard_from_store

    store_path = tmp_path / "s.duckdb"
    with Store(store_path) as store:
        pid = store.ensure_project("p")
        for name in ("one", "two"):
            oid = store.create_object("experiment", name, pid)
            store.upsert_rows("experiment", oid, [
                {"id": f"{name}-{i}", "is_root": True, "created": "2026-01-01T00:00:00Z", "input": {"q": i},
                 "metadata": {}, "origin": {"id": f"rec{i}"}, "scores": {"s": float(i % 2)},
                 "span_attributes": {"name": "eval", "type": "eval"}} for i in range(6)])
    board = leaderboard_from_store(store_path, ["one", "two"], score="s")
    assert [p.n for p in board.comparisons] == [6]
