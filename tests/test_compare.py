"""`flywheel compare` end to end on a temporary local store.

Experiments are written straight into the store in the shape DESIGN.md §4 gives (a root `eval`
span per (row, trial) with metadata.trial/dataset_row_id and rolled-up scores, a `task` child
and one `score` child per scorer), so these tests do not depend on the eval runner.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import statsmodels.stats.multitest as statsmodels_multitest
from scipy import stats as st

from bt_flywheel.backends.store import Store
from bt_flywheel.core.schemas import schema_errors
from bt_flywheel.verify.compare import compare_experiments
from bt_flywheel.verify.comparison_model import ComparisonDoc

STORE = ".flywheel/store.duckdb"


def write_experiment(store: Path, name: str, scores: dict[str, dict[str, list[float | None]]], *,
                     metadata: dict[str, dict] | None = None, project: str = "support-bot",
                     split: str = "validation") -> str:
    """scores: {scorer: {row_id: [trial values]}} -> an experiment in the §4 span shape."""
    metadata = metadata or {}
    rows = []
    row_ids = sorted({r for per in scores.values() for r in per})
    with Store(store) as s:
        project_id = s.ensure_project(project)
        exp_id = s.create_object("experiment", name, project_id,
                                 metadata={"trials": max(len(v) for per in scores.values() for v in per.values()),
                                           "split": split, "dataset_id": "ds-1", "git_sha": "abc123"})
        for row_id in row_ids:
            trials = max(len(per.get(row_id, [])) for per in scores.values())
            for trial in range(trials):
                root = f"{name}-{row_id}-{trial}"
                rolled = {k: per[row_id][trial] for k, per in scores.items()
                          if row_id in per and trial < len(per[row_id])}
                meta = {"trial": trial, "dataset_row_id": row_id, "split": split, **metadata.get(row_id, {})}
                rows.append({"id": root, "span_id": root, "root_span_id": root, "span_parents": None,
                             "is_root": True, "created": "2026-01-01T00:00:00Z", "input": {"q": row_id},
                             "output": "answer", "expected": None, "metadata": meta, "scores": rolled,
                             "span_attributes": {"name": "eval", "type": "eval"}})
                rows.append({"id": root + "-task", "span_id": root + "-task", "root_span_id": root,
                             "span_parents": [root], "is_root": False, "created": "2026-01-01T00:00:00Z",
                             "span_attributes": {"name": "task", "type": "task"}})
                for scorer, value in rolled.items():
                    sid = f"{root}-{scorer}"
                    rows.append({"id": sid, "span_id": sid, "root_span_id": root, "span_parents": [root],
                                 "is_root": False, "created": "2026-01-01T00:00:00Z",
                                 "input": {"input": {"q": row_id}, "expected": None, "metadata": meta,
                                           "output": "answer", "id": row_id, "tags": None},
                                 "output": {"score": value}, "scores": {scorer: value},
                                 "span_attributes": {"name": scorer, "type": "score", "purpose": "scorer"}})
        s.upsert_rows("experiment", exp_id, rows)
    return exp_id


def make_pair(tmp_path: Path):
    """Baseline vs candidate over 120 rows x 3 trials: the candidate fixes refusals
    (Refusal pass rate +0.25) and leaves Factuality alone; facets 'billing'/'refusal'/'other'."""
    rng = np.random.default_rng(7)
    n, k = 120, 3
    ids = [f"row-{i:03d}" for i in range(n)]
    facets = {r: {"facet": ["billing", "refusal", "other"][i % 3], "conversation": f"c{i // 4}"}
              for i, r in enumerate(ids)}
    p = rng.uniform(0.2, 0.7, n)
    fact = rng.uniform(0.5, 0.9, n)
    base = {"Refusal": {r: (rng.random(k) < p[i]).astype(float).tolist() for i, r in enumerate(ids)},
            "Factuality": {r: np.clip(fact[i] + rng.normal(0, 0.02, k), 0, 1).round(4).tolist()
                           for i, r in enumerate(ids)}}
    lift = np.where(np.array([facets[r]["facet"] for r in ids]) == "refusal", 0.6, 0.05)
    cand = {"Refusal": {r: (rng.random(k) < np.clip(p[i] + lift[i], 0, 1)).astype(float).tolist()
                        for i, r in enumerate(ids)},
            "Factuality": {r: np.clip(fact[i] + rng.normal(0, 0.02, k), 0, 1).round(4).tolist()
                           for i, r in enumerate(ids)}}
    cand["Refusal"]["row-000"] = [0.0, 0.0, 0.0]  # a planted regression
    base["Refusal"]["row-000"] = [1.0, 1.0, 1.0]
    store = tmp_path / STORE
    write_experiment(store, "baseline-v1", base, metadata=facets)
    write_experiment(store, "candidate-v2", cand, metadata=facets)
    return store, base, cand


@pytest.fixture
def pair(tmp_path: Path):
    return make_pair(tmp_path)


def _row_means(scores: dict[str, list[float]]) -> np.ndarray:
    return np.array([np.mean(scores[r]) for r in sorted(scores)])


def test_compare_json_matches_scipy_on_row_means(pair, run_cli):
    store, base, cand = pair
    code, out, err = run_cli("compare", "baseline-v1", "candidate-v2", "--target", "Refusal",
                             "--guard", "Factuality", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["contract"] == "bt-flywheel-comparison/v1"
    assert schema_errors(doc, "comparison.schema.json") == []
    assert ComparisonDoc.from_dict(doc).target_score.ci.as_list() == doc["scores"][0]["ci"]
    assert doc["experiments"]["baseline"]["name"] == "baseline-v1"
    assert doc["experiments"]["candidate"]["rows"] == 120
    target, guard = doc["scores"]
    assert (target["name"], target["role"], guard["name"], guard["role"]) == (
        "Refusal", "target", "Factuality", "guard")
    d = _row_means(cand["Refusal"]) - _row_means(base["Refusal"])
    ref = st.ttest_1samp(d, 0.0)
    ci = ref.confidence_interval(0.95)
    assert target["n"] == 120
    assert target["effect"] == pytest.approx(d.mean(), abs=1e-9)
    assert target["ci"] == pytest.approx([ci.low, ci.high], abs=1e-6)
    assert target["p"] == pytest.approx(ref.pvalue, abs=1e-6)
    assert target["verdict"] == "improved" and target["binary"] and target["mcnemar"]["gained"] > 0
    assert target["bootstrap"]["n_resamples"] == 10_000
    assert guard["verdict"] == "non_inferior" and guard["noninferiority"]["lower_bound"] > -0.02
    assert doc["keep"] is True and doc["status"] == "passed" and doc["guards_ok"] is True
    assert doc["multiplicity"]["method"] == "holm"
    assert doc["regressions"][0] == {"score": "Refusal", "row_id": "row-000", "baseline": 1.0,
                                     "candidate": 0.0, "drop": 1.0}
    drops = [r["drop"] for r in doc["regressions"]]
    assert drops == sorted(drops, reverse=True) and min(drops) > 0.25


def test_compare_table_output(pair, run_cli):
    code, out, err = run_cli("compare", "baseline-v1", "candidate-v2", "--target", "Refusal",
                             "--guard", "Factuality", "--slice", "metadata.facet", "--resamples", "2000")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("baseline: baseline-v1 (") and "120 rows, 360 row-trials" in lines[0]
    header = next(line for line in lines if "| score" in line)
    for column in ("role", "n", "baseline mean", "candidate mean", "effect", "95% CI", "p", "method", "verdict"):
        assert f" {column} " in header
    refusal = next(line for line in lines if line.startswith("| Refusal") and "improved" in line)
    assert "paired t on row means" in refusal
    assert any(line.startswith("| Factuality") and "non_inferior" in line for line in lines)
    assert "status: passed - target Refusal improved; guards ok; keep the candidate" in out
    assert "regressions (score dropped by more than 0.2500):" in out
    assert "| Refusal | row-000 |" in out
    assert "slices by metadata.facet (Benjamini-Hochberg across 6 slice tests" in out
    assert "yes, up" in out


def test_slices_use_benjamini_hochberg(pair):
    store, base, cand = pair
    comp = compare_experiments(store, "baseline-v1", "candidate-v2", target="Refusal", guards=["Factuality"],
                               slice_key="metadata.facet", n_resamples=0)
    doc = comp.to_dict()
    results = doc["slices"]["results"]
    assert doc["slices"]["correction"] == "benjamini_hochberg" and doc["slices"]["tests"] == 6
    assert {(r["score"], r["value"]) for r in results} == {
        (s, f) for s in ("Refusal", "Factuality") for f in ("billing", "other", "refusal")}
    _, q, _, _ = statsmodels_multitest.multipletests([r["p"] for r in results], method="fdr_bh")
    assert [r["q"] for r in results] == pytest.approx(list(q), abs=1e-9)
    refusal = next(r for r in results if r["score"] == "Refusal" and r["value"] == "refusal")
    assert refusal["n"] == 40 and refusal["significant"] and refusal["direction"] == "up"
    ids = [f"row-{i:03d}" for i in range(120) if i % 3 == 1]
    d = np.array([np.mean(cand["Refusal"][r]) - np.mean(base["Refusal"][r]) for r in ids])
    assert refusal["effect"] == pytest.approx(d.mean(), abs=1e-9)
    assert refusal["p"] == pytest.approx(st.ttest_1samp(d, 0.0).pvalue, abs=1e-6)


def test_cluster_key_gives_cluster_robust_se(pair):
    store, _, _ = pair
    comp = compare_experiments(store, "baseline-v1", "candidate-v2", target="Refusal",
                               cluster_key="metadata.conversation", n_resamples=500)
    target = comp.to_dict()["scores"][0]
    assert target["n_clusters"] == 30 and target["df"] == 29
    assert target["method"] == "paired t on row means, cluster-robust SE"


def test_missing_rows_are_reported(tmp_path, run_cli):
    store = tmp_path / STORE
    write_experiment(store, "b", {"acc": {f"r{i}": [1.0, 0.0] for i in range(40)}})
    write_experiment(store, "c", {"acc": {f"r{i}": [1.0, float(i % 2)] for i in range(36)}})
    code, out, err = run_cli("compare", "b", "c", "--target", "acc", "--json")
    assert code == 0, err
    target = json.loads(out)["scores"][0]
    assert target["n"] == 36 and target["missing"]["baseline_only"] == 4
    assert target["missing"]["exceeds_limit"] is True
    assert "10.0% of rows are scored on one side only" in target["notes"][0]


def test_inconclusive_reports_required_rows(tmp_path, run_cli):
    store = tmp_path / STORE
    # 30 rows x 2 trials, baseline 1/2 everywhere; candidate: 10 rows up to 2/2, 8 down to 0/2
    cand_trials = [[1.0, 1.0]] * 10 + [[0.0, 0.0]] * 8 + [[1.0, 0.0]] * 12
    write_experiment(store, "b", {"acc": {f"r{i:02d}": [1.0, 0.0] for i in range(30)}})
    write_experiment(store, "c", {"acc": {f"r{i:02d}": t for i, t in enumerate(cand_trials)}})
    code, out, err = run_cli("compare", "b", "c", "--target", "acc", "--json")
    assert code == 0, err
    doc = json.loads(out)
    target = doc["scores"][0]
    assert target["verdict"] == "inconclusive" and doc["status"] == "inconclusive" and not doc["keep"]
    d = np.array([0.5] * 10 + [-0.5] * 8 + [0.0] * 12)
    from statsmodels.stats.power import TTestPower
    expected = TTestPower().solve_power(effect_size=d.mean() / d.std(ddof=1), alpha=0.05, power=0.8)
    assert target["power"]["required_n"] == int(np.ceil(expected))
    # every baseline row splits 1/2, so no row has a majority there: McNemar has nothing to test
    assert target["mcnemar"]["ties"] == 30 and target["mcnemar"]["p"] == 1.0


def test_regressed_guard_fails_the_comparison(tmp_path):
    store = tmp_path / STORE
    ids = [f"r{i}" for i in range(200)]
    write_experiment(store, "b", {"acc": {r: [0.0] for r in ids}, "fact": {r: [0.9] for r in ids}})
    write_experiment(store, "c", {"acc": {r: [float(i % 2)] for i, r in enumerate(ids)},
                                  "fact": {r: [0.9 - 0.1 * (i % 2)] for i, r in enumerate(ids)}})
    doc = compare_experiments(store, "b", "c", target="acc", guards=["fact"], n_resamples=0).to_dict()
    assert doc["target_verdict"] == "improved"
    assert doc["scores"][1]["verdict"] == "regressed" and doc["guards_ok"] is False
    assert doc["keep"] is False and doc["status"] == "failed"


def test_stuck_scorer_is_flagged(tmp_path):
    store = tmp_path / STORE
    ids = [f"r{i}" for i in range(30)]
    write_experiment(store, "b", {"acc": {r: [1.0] for r in ids}})
    write_experiment(store, "c", {"acc": {r: [1.0] for r in ids}})
    doc = compare_experiments(store, "b", "c", target="acc", n_resamples=0).to_dict()
    assert doc["health"]["stuck_scores"] == ["acc"]
    assert any("check the scorer" in note for note in doc["notes"])
    json.dumps(doc, allow_nan=False)


def test_out_file_and_errors(pair, run_cli, tmp_path):
    code, out, err = run_cli("compare", "baseline-v1", "candidate-v2", "--target", "Refusal",
                             "--out", "cmp/compare.json", "--resamples", "0")
    assert code == 0, err
    saved = json.loads((tmp_path / "cmp/compare.json").read_text())
    assert saved["scores"][0]["bootstrap"] is None and saved["target"] == "Refusal"

    code, out, err = run_cli("compare", "baseline-v1", "candidate-v2", "--target", "Helpfulness")
    assert code == 2 and out == ""
    assert err.startswith("error: score 'Helpfulness': not found in experiment 'baseline-v1' "
                          "(hint: scores there: Factuality, Refusal)")
    code, _, err = run_cli("compare", "baseline-v1", "nope", "--target", "Refusal")
    assert code == 2 and err.startswith("error: experiment 'nope': not found in the local store")
    code, _, err = run_cli("compare", "baseline-v1", "candidate-v2", "--target", "Refusal", "--alpha", "2")
    assert code == 2 and "`alpha` must be a number strictly between 0 and 1" in err
    code, _, err = run_cli("compare", "a", "b", "--target", "x", "--store", str(tmp_path / "none.duckdb"))
    assert code == 2 and "no local store here yet" in err


# A Braintrust-style Eval file whose task quality is set by an env-free module constant; the
# candidate file differs by one line (the "agent change").
EVAL_TEMPLATE = '''\
from braintrust import Eval, EvalCase

FIXED = {fixed}


def data():
    return [EvalCase(input=f"q{{i}}", expected="ok", id=f"row-{{i:02d}}",
                     metadata={{"split": "validation", "facet": "even" if i % 2 == 0 else "odd"}})
            for i in range(40)]


def task(input, hooks):
    i = int(input[1:])
    return "ok" if i % 5 < FIXED else "bad"


def correct(output, expected):
    return 1 if output == expected else 0


def polite(output):
    return 0.9


Eval("cmp-e2e", data=data, task=task, scores=[correct, polite], trial_count=2)
'''


def test_compare_on_experiments_from_flywheel_eval(tmp_path, run_cli):
    """Both experiments come from `flywheel eval` (the Braintrust SDK run locally); compare
    pairs its rows by dataset_row_id across 2 trials each."""
    (tmp_path / "eval_base.py").write_text(EVAL_TEMPLATE.format(fixed=2))
    (tmp_path / "eval_cand.py").write_text(EVAL_TEMPLATE.format(fixed=4))
    ids = []
    for name, path in (("base", "eval_base.py"), ("cand", "eval_cand.py")):
        code, out, err = run_cli("eval", path, "--name", name, "--json", "--silent")
        assert code == 0, err
        ids.append(json.loads(out)["experiment_id"])
    code, out, err = run_cli("compare", ids[0], "cand", "--target", "correct", "--guard", "polite",
                             "--slice", "metadata.facet", "--margin", "0.1", "--json")
    assert code == 0, err
    doc = json.loads(out)
    target, guard = doc["scores"]
    assert doc["experiments"]["baseline"]["root_rows"] == 80 and target["n"] == 40
    assert target["trials"] == {"baseline": {"min": 2, "max": 2}, "candidate": {"min": 2, "max": 2}}
    assert target["baseline_mean"] == pytest.approx(0.4) and target["candidate_mean"] == pytest.approx(0.8)
    assert target["effect"] == pytest.approx(0.4) and target["verdict"] == "improved"
    assert target["mcnemar"]["gained"] == 16 and target["mcnemar"]["lost"] == 0
    # the guard is identical on all 40 rows: the exact bound is 1 - 0.025**(1/40) = 0.088, inside
    # a 0.1 margin (with the default 0.02 margin it would take 183 unchanged rows)
    assert guard["method"].startswith("exact bound") and guard["ci"][0] == pytest.approx(-(1 - 0.025 ** (1 / 40)))
    assert guard["verdict"] == "non_inferior" and doc["keep"] is True
    assert {r["value"] for r in doc["slices"]["results"]} == {"even", "odd"}
    assert schema_errors(doc, "comparison.schema.json") == []


def test_comparison_feeds_the_handoff_builder(pair):
    """The handoff helper maps Comparison.to_dict() into verification.scores[] as is."""
    from bt_flywheel.handoff import contract as handoff

    store, _, _ = pair
    doc = compare_experiments(store, "baseline-v1", "candidate-v2", target="Refusal", guards=["Factuality"],
                              n_resamples=1000).to_dict()
    builder = handoff.HandoffBuilder(goal="improve refusals", project="support-bot", mode="autonomous",
                                     mode_reason="test")
    builder.set_verification(doc)
    v = builder.verification
    assert v["status"] == "passed" and v["baseline"] == doc["baseline"] and v["target"] == "Refusal"
    assert [(s["name"], s["role"], s["verdict"]) for s in v["scores"]] == [
        ("Refusal", "target", "improved"), ("Factuality", "guard", "non_inferior")]
    assert v["scores"][0]["ci"] == doc["scores"][0]["ci"] and v["guards"]["passed"] is True
    assert v["multiplicity"]["method"] == "holm" and v["regressions"][0]["row_id"] == "row-000"
