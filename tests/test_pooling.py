"""`flywheel compare --pool` / `--pool-from`: one change's effect pooled across slices or across
comparison files with DerSimonian-Laird random effects, equal to statsmodels'
`combine_effects(method_re="dl")` to 1e-6 (tau^2 truncated at 0 as DerSimonian & Laird do)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fakes.comparisons import sliced_experiments
from statsmodels.stats.meta_analysis import combine_effects
from test_compare import make_pair

from bt_flywheel.verify.compare import compare_loaded, pool_comparisons
from bt_flywheel.verify.comparison_model import ComparisonDoc

TOL = 1e-6


def _check_against_statsmodels(pooled: dict, effects: np.ndarray, variances: np.ndarray) -> None:
    ref = combine_effects(effects, variances, method_re="dl")
    random = ref.tau2 > 0  # statsmodels keeps a negative moment estimate; DL truncate it to 0 (fixed effect)
    mean, se = (ref.mean_effect_re, ref.sd_eff_w_re) if random else (ref.mean_effect_fe, ref.sd_eff_w_fe)
    assert pooled["effect"] == pytest.approx(mean, abs=TOL) and pooled["se"] == pytest.approx(se, abs=TOL)
    assert pooled["ci"] == [pytest.approx(mean - 1.959963984540054 * se, abs=TOL),
                            pytest.approx(mean + 1.959963984540054 * se, abs=TOL)]
    assert pooled["tau2"] == pytest.approx(max(ref.tau2, 0.0), abs=TOL)
    assert pooled["i2"] == pytest.approx(max(ref.i2, 0.0), abs=TOL)
    assert pooled["q"] == pytest.approx(ref.q, abs=TOL)


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")  # statsmodels' sqrt(tau2 < 0)
@pytest.mark.parametrize("seed", [5, 12])
def test_pool_across_slices_matches_statsmodels(seed):
    base, cand = sliced_experiments(0.1, seed)
    doc = compare_loaded(base, cand, target="acc", guards=[], slice_key="metadata.length", n_resamples=0,
                         pool=True).to_dict()
    ComparisonDoc.from_dict(doc)
    (pooled,) = doc["pooled"]
    items = doc["slices"]["results"]
    assert pooled["k"] == 3 and pooled["sources"] == [f"metadata.length={i['value']}" for i in items]
    for item in items:  # each slice's SE is its paired t's
        assert item["se"] == pytest.approx(item["effect"] / _t(item), rel=1e-6) if item["effect"] else True
    _check_against_statsmodels(pooled, np.array([i["effect"] for i in items]), np.array([i["se"] ** 2 for i in items]))


def _t(item: dict) -> float:
    from scipy import stats as st

    return float(st.t.isf(item["p"] / 2, item["n"] - 1)) * math.copysign(1, item["effect"])


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")
def test_pool_from_comparison_files_matches_statsmodels():
    runs = [compare_loaded(*sliced_experiments(shift, seed), target="acc", guards=[], n_resamples=0).to_dict()
            for shift, seed in ((0.05, 6), (0.15, 7), (0.1, 8), (0.25, 9))]
    out = pool_comparisons([(f"run{i}.json", d) for i, d in enumerate(runs)])
    (pooled,) = out["pooled"]
    assert pooled["sources"] == ["run0.json", "run1.json", "run2.json", "run3.json"] and pooled["k"] == 4
    _check_against_statsmodels(pooled, np.array([d["scores"][0]["effect"] for d in runs]),
                               np.array([d["scores"][0]["se"] ** 2 for d in runs]))


def test_cli_pool_and_pool_from(tmp_path: Path, run_cli):
    make_pair(tmp_path)
    argv = ("compare", "baseline-v1", "candidate-v2", "--target", "Refusal", "--guard", "Factuality",
            "--resamples", "0")
    code, out, err = run_cli(*argv, "--slice", "metadata.facet", "--pool", "--json", "--out", "a.json")
    assert code == 0, err
    doc = json.loads(out)
    assert [p["score"] for p in doc["pooled"]] == ["Refusal", "Factuality"]
    refusal = doc["pooled"][0]
    assert refusal["i2"] > 0.5  # the change works on the refusal facet only: the slices disagree
    code, out, err = run_cli(*argv, "--slice", "metadata.facet", "--pool")
    assert code == 0 and "pooled across the slices of metadata.facet" in out and "I²" in out
    code, _, err = run_cli(*argv, "--seed", "1", "--out", "b.json", "--quiet")
    assert code == 0, err
    code, out, err = run_cli("compare", "--pool-from", "a.json", "--pool-from", "b.json", "--json")
    assert code == 0, err
    pooled = json.loads(out)
    assert pooled["files"] == ["a.json", "b.json"] and pooled["pooled"][0]["k"] == 2
    code, _, err = run_cli(*argv, "--pool")
    assert code == 2 and "--pool" in err and "--slice" in err
    code, _, err = run_cli("compare", "--pool-from", "a.json")
    assert code == 2 and "at least two" in err
    Path("c.json").write_text("{}")
    code, _, err = run_cli("compare", "--pool-from", "a.json", "--pool-from", "c.json")
    assert code == 2 and "c.json" in err
    code, _, err = run_cli("compare", "--target", "Refusal")
    assert code == 2 and "BASELINE and CANDIDATE" in err
