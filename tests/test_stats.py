"""bt_flywheel.verify.stats against SciPy and statsmodels on the same data (DESIGN.md §8).

Tolerances: closed-form results (t, CI, p, McNemar, TOST, Holm/BH, power) must agree to 1e-6,
since both sides evaluate the same formulas in double precision. Bootstrap results are random:
they are compared within a multiple of their Monte-Carlo error, derived next to each test.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar  # noqa: E402
from statsmodels.stats.multitest import multipletests  # noqa: E402
from statsmodels.stats.power import TTestPower  # noqa: E402
from statsmodels.stats.weightstats import ttost_paired  # noqa: E402

from bt_flywheel.verify import stats as S
from bt_flywheel.verify import verdict as V

TOL = 1e-6


def _trials(rng: np.random.Generator, n: int, k: int, p_base: np.ndarray, shift: float = 0.0):
    """Binary trial scores: row i passes each trial with prob p_i (+ shift on the candidate)."""
    base = (rng.random((n, k)) < p_base[:, None]).astype(float)
    cand = (rng.random((n, k)) < np.clip(p_base + shift, 0, 1)[:, None]).astype(float)
    ids = [f"row-{i:04d}" for i in range(n)]
    return dict(zip(ids, base.tolist(), strict=True)), dict(zip(ids, cand.tolist(), strict=True))


@pytest.fixture
def continuous():
    rng = np.random.default_rng(20240501)
    a = rng.uniform(0, 1, 150)
    b = np.clip(a + rng.normal(0.04, 0.15, 150), 0, 1)
    return a, b


# --------------------------------------------------------------------- against SciPy / statsmodels

def test_paired_ttest_against_scipy(continuous):
    a, b = continuous
    ours = S.paired_ttest(b, a)
    ref = st.ttest_rel(b, a)
    assert ours.statistic == pytest.approx(ref.statistic, abs=TOL)
    assert ours.pvalue == pytest.approx(ref.pvalue, abs=TOL)
    assert ours.df == ref.df
    for level in (0.9, 0.95, 0.99):
        lo, hi = ours.confidence_interval(level)
        ref_ci = ref.confidence_interval(confidence_level=level)
        assert (lo, hi) == pytest.approx((ref_ci.low, ref_ci.high), abs=TOL)


def test_compare_uses_row_means_against_scipy_ttest_1samp():
    """With 3 trials per row, the effect, CI and p equal ttest_1samp on per-row mean differences."""
    rng = np.random.default_rng(7)
    base, cand = _trials(rng, 120, 3, rng.uniform(0.2, 0.9, 120), shift=0.08)
    res = V.compare_paired(base, cand, n_resamples=0)
    d = np.array([np.mean(cand[i]) - np.mean(base[i]) for i in sorted(base)])
    ref = st.ttest_1samp(d, 0.0)
    ref_ci = ref.confidence_interval(0.95)
    assert res.n == 120
    assert res.effect == pytest.approx(d.mean(), abs=TOL)
    assert res.p == pytest.approx(ref.pvalue, abs=TOL)
    assert (res.ci.low, res.ci.high) == pytest.approx((ref_ci.low, ref_ci.high), abs=TOL)


def test_trial_order_never_matters():
    """Trials are averaged per row, never paired trial i with trial i: shuffling one side's
    trial order within rows leaves every number unchanged."""
    rng = np.random.default_rng(11)
    base, cand = _trials(rng, 80, 4, rng.uniform(0.1, 0.9, 80), shift=0.05)
    shuffled = {k: list(rng.permutation(v)) for k, v in cand.items()}
    one = V.compare_paired(base, cand, n_resamples=0).to_dict()
    two = V.compare_paired(base, shuffled, n_resamples=0).to_dict()
    assert one == two


def test_cluster_robust_se_against_statsmodels(continuous):
    a, b = continuous
    d = b - a
    clusters = [f"c{i % 17}" for i in range(d.size)]
    ours = S.ttest_differences(d, clusters=clusters)
    import statsmodels.api as sm_api  # here: its import (pandas, patsy) costs every test worker a second

    fit = sm_api.OLS(d, np.ones_like(d)).fit(cov_type="cluster", cov_kwds={"groups": np.arange(d.size) % 17},
                                             use_t=True)
    assert ours.n_clusters == 17 and ours.df == 16
    assert ours.se == pytest.approx(fit.bse[0], abs=TOL)
    assert ours.pvalue == pytest.approx(fit.pvalues[0], abs=TOL)
    lo, hi = ours.confidence_interval(0.95)
    assert (lo, hi) == pytest.approx(tuple(fit.conf_int(alpha=0.05)[0]), abs=TOL)


def test_mcnemar_exact_against_statsmodels():
    rng = np.random.default_rng(3)
    base = (rng.random(200) < 0.6).astype(float)
    cand = np.where(rng.random(200) < 0.15, 1 - base, base)
    cand[:12] = 1.0  # a few extra gains
    res = S.mcnemar_exact(base, cand)
    table = [[np.sum((base == 1) & (cand == 1)), np.sum((base == 1) & (cand == 0))],
             [np.sum((base == 0) & (cand == 1)), np.sum((base == 0) & (cand == 0))]]
    ref = sm_mcnemar(table, exact=True)
    assert res.lost == table[0][1] and res.gained == table[1][0]
    assert res.pvalue == pytest.approx(ref.pvalue, abs=TOL)


def test_mcnemar_on_majority_excludes_ties_and_handles_no_discordance():
    res = S.mcnemar_exact(S.majority([1.0, 0.5, 0.0, 2 / 3]), S.majority([0.0, 1.0, 0.0, 1 / 3]))
    assert (res.lost, res.gained, res.both_fail, res.ties) == (2, 0, 1, 1)
    same = S.mcnemar_exact([1, 0, 1], [1, 0, 1])
    assert same.pvalue == 1.0 and same.lost == same.gained == 0


def test_compare_reports_mcnemar_for_binary_scores_only(continuous):
    rng = np.random.default_rng(5)
    base, cand = _trials(rng, 60, 3, rng.uniform(0.2, 0.8, 60), shift=0.1)
    binary = V.compare_paired(base, cand, n_resamples=0)
    assert binary.binary and binary.mcnemar is not None
    maj_b = S.majority([np.mean(base[i]) for i in sorted(base)])
    maj_c = S.majority([np.mean(cand[i]) for i in sorted(cand)])
    keep = ~(np.isnan(maj_b) | np.isnan(maj_c))
    table = [[np.sum((maj_b == 1) & (maj_c == 1) & keep), np.sum((maj_b == 1) & (maj_c == 0) & keep)],
             [np.sum((maj_b == 0) & (maj_c == 1) & keep), np.sum((maj_b == 0) & (maj_c == 0) & keep)]]
    assert binary.mcnemar.pvalue == pytest.approx(sm_mcnemar(table, exact=True).pvalue, abs=TOL)
    a, b = continuous
    cont = V.compare_paired({str(i): x for i, x in enumerate(a)}, {str(i): x for i, x in enumerate(b)},
                            n_resamples=0)
    assert not cont.binary and cont.mcnemar is None


@pytest.mark.parametrize("margin", [0.02, 0.05, 0.1])
def test_tost_against_statsmodels(continuous, margin):
    a, b = continuous
    ours = S.tost(b - a, margin=margin, alpha=0.05)
    p, lower, upper = ttost_paired(b, a, -margin, margin)
    assert ours.pvalue == pytest.approx(p, abs=TOL)
    assert ours.p_lower == pytest.approx(lower[1], abs=TOL)
    assert ours.p_upper == pytest.approx(upper[1], abs=TOL)
    assert ours.equivalent == (p < 0.05)


def test_tost_equivalence_when_differences_are_small():
    rng = np.random.default_rng(9)
    a = rng.uniform(0, 1, 2000)
    b = a + rng.normal(0, 0.05, 2000)
    res = S.tost(b - a, margin=0.02)
    assert res.equivalent
    assert res.pvalue == pytest.approx(ttost_paired(b, a, -0.02, 0.02)[0], abs=TOL)


def test_holm_and_bh_against_statsmodels():
    rng = np.random.default_rng(13)
    p = np.concatenate([rng.uniform(0, 0.05, 6), rng.uniform(0, 1, 20), [0.01, 0.01, 1.0]])
    for ours, method in ((S.holm(p), "holm"), (S.benjamini_hochberg(p), "fdr_bh")):
        reject, ref, _, _ = multipletests(p, alpha=0.05, method=method)
        np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)
        assert np.array_equal(ours < 0.05, reject)


def test_multiplicity_leaves_nan_out_of_the_family():
    out = S.holm([0.01, math.nan, 0.04])
    ref = multipletests([0.01, 0.04], method="holm")[1]
    assert math.isnan(out[1]) and out[[0, 2]] == pytest.approx(ref, abs=TOL)


@pytest.mark.parametrize(("effect", "sd"), [(0.05, 0.2), (0.1, 0.3), (0.02, 0.15), (0.4, 0.5)])
def test_required_n_against_statsmodels(effect, sd):
    ref_n = TTestPower().solve_power(effect_size=effect / sd, alpha=0.05, power=0.8, alternative="two-sided")
    n = S.required_n(effect, sd, alpha=0.05, power=0.8)
    assert n == math.ceil(ref_n - 1e-9)
    for m in (n - 1, n, 2 * n):
        ref_power = TTestPower().power(effect_size=effect / sd, nobs=m, alpha=0.05, alternative="two-sided")
        assert S.paired_power(effect, sd, m, alpha=0.05) == pytest.approx(ref_power, abs=TOL)
    assert S.paired_power(effect, sd, n) >= 0.8 > S.paired_power(effect, sd, n - 1)


def test_required_n_degenerate_inputs():
    assert S.required_n(0.0, 0.2) is None
    assert S.required_n(0.1, 0.0) == 2
    assert S.required_n(1e-9, 1.0) is None  # beyond max_n


# --------------------------------------------------------------------- bootstrap

def test_bootstrap_against_scipy_within_monte_carlo_error(continuous):
    """Percentile CIs from two independent 10,000-resample bootstraps differ by Monte-Carlo
    noise only. The MC SE of a 2.5% quantile is sqrt(q(1-q)/B)/f(x_q) ~ 0.027*se for a normal
    bootstrap distribution; the difference of two has SE ~0.038*se; we allow 4 SE (0.16*se)."""
    a, b = continuous
    d = b - a
    ours = S.paired_bootstrap(d, n_resamples=10_000, rng=1)
    ref = st.bootstrap((d,), np.mean, n_resamples=10_000, method="percentile", rng=np.random.default_rng(2))
    se = ref.standard_error
    assert ours.se == pytest.approx(se, rel=0.05)
    assert abs(ours.low - ref.confidence_interval.low) < 0.16 * se
    assert abs(ours.high - ref.confidence_interval.high) < 0.16 * se
    t_ci = S.ttest_differences(d).confidence_interval(0.95)  # near-normal data: bootstrap ~ t interval
    assert abs(ours.low - t_ci.low) < 0.25 * se and abs(ours.high - t_ci.high) < 0.25 * se


def test_bootstrap_is_seedable_and_chunking_does_not_change_results(continuous):
    a, b = continuous
    d = b - a
    one = S.bootstrap_means(d, n_resamples=2_000, rng=42)
    two = S.bootstrap_means(d, n_resamples=2_000, rng=42)
    small = S.bootstrap_means(d, n_resamples=2_000, rng=42, chunk_elements=7 * d.size)
    assert np.array_equal(one, two)
    assert one.mean() == pytest.approx(small.mean(), abs=4 * d.std() / math.sqrt(d.size * 2000))


def test_cluster_bootstrap_se_matches_cluster_robust_se(continuous):
    """Resampling 40 clusters: bootstrap SE agrees with the CR1 SE within 15% (the CR1 factor
    sqrt(G/(G-1)) ~1.013 plus MC error of an SE from 10,000 resamples, ~0.7%)."""
    rng = np.random.default_rng(17)
    effects = rng.normal(0.03, 0.1, 40)
    labels = np.repeat(np.arange(40), 5)
    d = effects[labels] + rng.normal(0, 0.05, labels.size)
    boot = S.paired_bootstrap(d, clusters=labels, rng=3)
    t = S.ttest_differences(d, clusters=labels)
    assert boot.se == pytest.approx(t.se, rel=0.15)


# --------------------------------------------------------------------- verdicts

def _normal_pairs(n, mean, sd, seed):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.7, n)
    cand = base + mean + rng.normal(0, sd, n)
    ids = [f"r{i}" for i in range(n)]
    return dict(zip(ids, base.tolist(), strict=True)), dict(zip(ids, cand.tolist(), strict=True))


def test_target_verdicts():
    base, cand = _normal_pairs(400, 0.05, 0.1, 1)
    assert V.compare_paired(base, cand, n_resamples=0).verdict == "improved"
    assert V.compare_paired(base, cand, n_resamples=0, min_effect=0.2).verdict == "inconclusive"
    base, cand = _normal_pairs(400, -0.05, 0.1, 2)
    assert V.compare_paired(base, cand, n_resamples=0).verdict == "regressed"
    base, cand = _normal_pairs(3000, 0.0, 0.05, 3)
    eq = V.compare_paired(base, cand, n_resamples=0, margin=0.02)
    assert eq.verdict == "equivalent" and eq.tost.equivalent
    base, cand = _normal_pairs(30, 0.02, 0.2, 4)
    inc = V.compare_paired(base, cand, n_resamples=0)
    assert inc.verdict == "inconclusive"
    assert inc.power is not None and inc.power.required_n > 30
    sd = float(np.std(np.array(list(cand.values())) - np.array(list(base.values())), ddof=1))
    assert inc.power.required_n == S.required_n(abs(inc.effect), sd)


def test_guard_verdicts_use_noninferiority():
    base, cand = _normal_pairs(2000, -0.005, 0.05, 5)
    ok = V.compare_paired(base, cand, role="guard", margin=0.02, n_resamples=0)
    assert ok.verdict == "non_inferior" and ok.ok and ok.noninferiority.lower_bound > -0.02
    assert ok.noninferiority.lower_bound == pytest.approx(ok.ci.low)
    base, cand = _normal_pairs(2000, -0.05, 0.05, 6)
    bad = V.compare_paired(base, cand, role="guard", margin=0.02, n_resamples=0)
    assert bad.verdict == "regressed" and not bad.ok
    base = {f"r{i}": 0.5 for i in range(20)}
    cand = {f"r{i}": 0.5 + (0.1 if i % 2 else -0.1) for i in range(20)}  # mean 0, CI about +-0.047
    unsure = V.compare_paired(base, cand, role="guard", margin=0.02, n_resamples=0)
    assert unsure.verdict == "not_enough_rows" and not unsure.ok and unsure.power.required_n > 20
    # the power figure is for the bound the verdict uses: lower bound of the 95% CI above -margin
    p = unsure.power
    assert (p.bound, p.side) == (-0.02, "lower") and p.effect == pytest.approx(unsure.effect + 0.02)
    assert S.bound_power(p.effect, p.sd, p.required_n) >= 0.8 > S.bound_power(p.effect, p.sd, p.required_n - 1)
    assert p.power_at_n == pytest.approx(S.bound_power(p.effect, p.sd, 20)) and p.power_at_n < 0.8


def _pairs_with_t(n, t, seed):
    """Row differences with exactly the t statistic `t` (standardized noise, shifted)."""
    z = np.random.default_rng(seed).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    d = 0.1 * z + t * 0.1 / math.sqrt(n)
    ids = [f"r{i}" for i in range(n)]
    return dict.fromkeys(ids, 0.5), dict(zip(ids, (0.5 + d).tolist(), strict=True))


def test_apply_holm_needs_corrected_significance_for_a_regression_claim():
    base, cand = _pairs_with_t(200, -2.3, 8)  # two-sided p ~ 0.022: significant alone, not after Holm
    results = [V.compare_paired(base, cand, name="weak", n_resamples=0)]
    for i in range(4):
        b2, c2 = _normal_pairs(200, 0.0, 0.1, 100 + i)
        results.append(V.compare_paired(b2, c2, name=f"other{i}", role="guard", n_resamples=0))
    assert results[0].p < 0.05 and results[0].verdict == "regressed"
    V.apply_holm(results)
    ref = multipletests([r.p for r in results], method="holm")[1]
    assert [r.p_holm for r in results] == pytest.approx(list(ref), abs=TOL)
    assert results[0].p_holm >= 0.05
    assert results[0].verdict == "inconclusive" and "Holm" in results[0].notes[-1]


def test_missing_rows_are_reported_and_flagged_over_five_percent():
    base = {f"r{i}": [1.0] for i in range(100)}
    cand = {f"r{i}": [1.0 if i % 3 else 0.0] for i in range(4, 106)}
    res = V.compare_paired(base, cand, n_resamples=0)
    assert res.n == 96
    assert res.missing["baseline_only"] == 4 and res.missing["candidate_only"] == 6
    assert res.missing["exceeds_limit"] and "excluded" in res.notes[0]
    few = V.compare_paired(base, {f"r{i}": [float(i % 2)] for i in range(1, 100)}, n_resamples=0)
    assert few.missing["baseline_only"] == 1 and not few.missing["exceeds_limit"]


def test_rows_with_only_null_scores_count_as_missing():
    paired = S.pair_rows({"a": [1.0, None], "b": [None], "c": 0.5}, {"a": [0.0], "b": [1.0], "c": [None, 0.5]})
    assert paired.ids == ["a", "c"] and paired.candidate_only == ["b"]
    assert paired.baseline.tolist() == [1.0, 0.5]


def test_regressions_are_drops_not_low_scores():
    base = {"steady-low": [0.2], "big-drop": [1.0], "small-drop": [0.9], "mid-drop": [0.8], "gain": [0.1]}
    cand = {"steady-low": [0.2], "big-drop": [0.0], "small-drop": [0.8], "mid-drop": [0.4], "gain": [0.9]}
    regs = S.row_regressions(S.pair_rows(base, cand), threshold=0.25)
    assert [(r.id, r.drop) for r in regs] == [("big-drop", 1.0), ("mid-drop", pytest.approx(0.4))]


# --------------------------------------------------------------------- degenerate data and validation

def test_degenerate_data_warns_and_never_crashes():
    with pytest.warns(S.DegenerateDataWarning, match="fewer than 2 rows"):
        res = V.compare_paired({"a": [1.0]}, {"a": [0.0]}, n_resamples=100)
    assert res.verdict == "inconclusive" and math.isnan(res.p)
    with pytest.warns(S.DegenerateDataWarning, match="no paired rows"):
        empty = V.compare_paired({"a": [1.0]}, {"b": [0.0]}, n_resamples=100)
    assert empty.n == 0 and empty.verdict == "inconclusive"
    json.dumps(empty.to_dict(), allow_nan=False)


def test_all_equal_differences_use_exact_bounds():
    """Zero variance: the t-test is undefined; equivalence needs enough rows for the
    Clopper-Pearson bound (1 - 0.05**(1/n) < 0.02 needs n >= 149), improvement needs a
    significant sign test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", S.DegenerateDataWarning)
        few = V.compare_paired({f"r{i}": 1.0 for i in range(10)}, {f"r{i}": 1.0 for i in range(10)})
        many = V.compare_paired({f"r{i}": 1.0 for i in range(149)}, {f"r{i}": 1.0 for i in range(149)})
        two_up = V.compare_paired({"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0})
        six_up = V.compare_paired({f"r{i}": 0.0 for i in range(6)}, {f"r{i}": 1.0 for i in range(6)})
    assert few.verdict == "inconclusive" and many.verdict == "equivalent"
    assert few.method.startswith("exact bound")
    assert two_up.verdict == "inconclusive" and two_up.p == 0.5
    assert six_up.verdict == "improved" and six_up.p == pytest.approx(2 * 0.5 ** 6)
    json.dumps(many.to_dict(), allow_nan=False)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alpha": 1.5}, "`alpha` must be a number strictly between 0 and 1"),
    ({"margin": -0.1}, "`margin` must be a finite number >= 0"),
    ({"min_effect": math.inf}, "`min_effect` must be a finite number"),
    ({"n_resamples": -1}, "`n_resamples` must be an integer >= 0"),
    ({"role": "primary"}, "`role` must be 'target' or 'guard'"),
    ({"threshold": "x"}, "`threshold` must be a finite number >= 0"),
])
def test_input_validation_names_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        V.compare_paired({"a": 1.0}, {"a": 1.0}, **kwargs)


def test_data_validation_names_the_row():
    with pytest.raises(S.StatsInputError, match="`candidate`: row 'x' has a non-numeric score 'high'"):
        S.pair_rows({"x": 1.0}, {"x": ["high"]})
    with pytest.raises(S.StatsInputError, match="`baseline`: row 'y' has a non-numeric score '0.5'"):
        S.pair_rows({"y": "0.5"}, {"y": 1.0})
    paired = S.pair_rows({"g": (v for v in [1.0, 0.0])}, {"g": iter([1.0])})  # any iterable of trials
    assert paired.baseline.tolist() == [0.5] and paired.baseline_trials.tolist() == [2]
    with pytest.raises(ValueError, match="`d` must be finite"):
        S.ttest_differences([0.1, math.inf])


def test_to_dict_is_strict_json(continuous):
    a, b = continuous
    res = V.compare_paired({str(i): x for i, x in enumerate(a)}, {str(i): x for i, x in enumerate(b)}, rng=0)
    doc = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert doc["ci"][0] < doc["effect"] < doc["ci"][1]
    assert doc["bootstrap"]["n_resamples"] == 10_000
    assert set(doc) >= {"name", "role", "n", "effect", "ci", "p", "verdict", "method"}


# --------------------------------------------------------------------- simulations

def test_aa_false_positive_rate_with_trials(monkeypatch):
    """2,000 A/A comparisons (60 rows x 3 binary trials, row pass rates ~ Beta(2, 2), both
    sides drawn from the same process) at alpha = 0.05: the share claiming a difference must
    lie in [3%, 7%] (expected 5%, binomial SE 0.49%).

    compare_paired also computes the reported figures (verify.reported: permutation p, Cohen's
    d_z, minimum detectable effect), which sit beside the verdict and never vote in it; they are
    nine tenths of its cost. The first 50 comparisons run whole and the figures are then left out
    (None) for the rest; the verdicts of those 50 must not change without them."""
    rng = np.random.default_rng(2024)
    sims, n, k = 2000, 60, 3
    p = rng.beta(2, 2, size=(sims, n, 1))
    base = (rng.random((sims, n, k)) < p).astype(float)
    cand = (rng.random((sims, n, k)) < p).astype(float)
    ids = [f"row-{i}" for i in range(n)]

    def verdict(m: int) -> str:
        return V.compare_paired(dict(zip(ids, base[m].tolist(), strict=True)),
                                dict(zip(ids, cand[m].tolist(), strict=True)), n_resamples=0).verdict

    whole = [verdict(m) for m in range(50)]
    monkeypatch.setattr(V, "reported_figures", lambda *args, **kwargs: None)
    assert [verdict(m) for m in range(50)] == whole
    claims = sum(v in ("improved", "regressed") for v in whole + [verdict(m) for m in range(50, sims)])
    assert 0.03 <= claims / sims <= 0.07


def test_true_effect_detected_at_predicted_power():
    """Rows with 4 binary trials whose pass rate rises by 0.06 on the candidate. The SD of row
    differences comes from a large pilot; required_n gives the rows for 80% power; 2,000
    simulated experiments of that size detect ('improved') at the predicted power +-5 points."""
    rng = np.random.default_rng(99)
    k, shift = 4, 0.06

    def diffs(shape):
        p = rng.uniform(0.2, 0.7, size=(*shape, 1))
        b = (rng.random((*shape, k)) < p).mean(axis=-1)
        c = (rng.random((*shape, k)) < p + shift).mean(axis=-1)
        return c - b

    pilot = diffs((200_000,))
    n = S.required_n(shift, float(pilot.std(ddof=1)))
    predicted = S.paired_power(shift, float(pilot.std(ddof=1)), n)
    sims = diffs((2000, n))
    hits = 0
    for row in sims:
        res = S.ttest_differences(row)
        hits += res.confidence_interval(0.95).low > 0
    assert 0.8 <= predicted < 0.82
    assert abs(hits / 2000 - predicted) <= 0.05
